"""`decoupling gain`: known answers on a small labelled dataset that ships with the tests.

tests/fixtures/topics.py writes 600 one-line descriptions of made-up software in four topics (games,
science, sound, mail; 150 each), composed from topic words and shared filler: not one of the book's tasks,
written by the tests (no third-party text), and a topical task a sentence encoder should read.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from decoupling.core import intervals, measures
from decoupling.experiments import gain as G
from decoupling.gain_cli import main_gain, main_score



@pytest.fixture(scope="module")
def topics_csv(tmp_path_factory):
    import sys
    sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
    import topics
    return str(topics.write(tmp_path_factory.mktemp("data") / "topics.csv"))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An empty results store for this module (the second `gain` call must find the first's record)."""
    from decoupling import paths
    old = paths.STORE_DIR
    paths.STORE_DIR = tmp_path_factory.mktemp("store")
    yield paths.STORE_DIR
    paths.STORE_DIR = old


def test_h_score_known_answer():
    """f = μ_y + N(0, σ²I): cov(f) = Σ_b + σ²I, cov(E[f|y]) = Σ_b, so H = tr((Σ_b + σ²I)⁻¹ Σ_b) = Σ_i λ_i/(λ_i+σ²)."""
    rng = np.random.default_rng(0)
    K, d, n, sigma = 3, 2, 200_000, 0.5
    mu = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0]])
    y = rng.integers(0, K, n)
    f = mu[y] + sigma * rng.standard_normal((n, d))
    centred = mu - mu.mean(0)
    lam = np.linalg.eigvalsh(centred.T @ centred / K)
    expected = float(np.sum(lam / (lam + sigma ** 2)))
    assert measures.h_score(f, y) == pytest.approx(expected, rel=0.01)
    assert measures.h_score(rng.standard_normal((5000, 4)), rng.integers(0, 2, 5000)) < 0.01  # no signal


@pytest.mark.slow  # end to end, ten seeds: about a minute
def test_minilm_gains_bits_and_controls_hold(store, topics_csv):
    s = G.gain("minilm", topics_csv, max_examples=400, seeds=tuple(range(10)))
    assert s["dL"]["lo"] > 0, s["dL"]  # a sentence encoder reads package topics: CI above 0
    assert s["control_equivalent"], s["control_dL"]  # θ0 vs θ0': within ±DELTA_BITS per label
    again = G.gain("minilm", topics_csv, max_examples=400, seeds=tuple(range(10)))
    assert again["cache_hit"] and again["dL"] == s["dL"]


@pytest.mark.slow  # end to end, ten seeds: about a minute
def test_shuffled_labels_give_no_gain(store, tmp_path, topics_csv):
    import pandas as pd
    df = pd.read_csv(topics_csv)
    df["label"] = np.random.default_rng(1).permutation(df["label"].to_numpy())
    path = tmp_path / "shuffled.csv"
    df.to_csv(path, index=False)
    s = G.gain("minilm", path, max_examples=400, seeds=tuple(range(10)))
    lo, hi = s["dL"]["per_label_lo"], s["dL"]["per_label_hi"]
    assert -G.DELTA_BITS <= lo and hi <= G.DELTA_BITS, s["dL"]


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """A decoder saved as a Hugging Face directory: random weights, so it is 'pretrained' on nothing."""
    from decoupling import data
    from decoupling.core import models
    d = tmp_path_factory.mktemp("tiny-gpt2")
    import dataclasses
    tok = data.tokenizer()
    lm = models.build_lm(dataclasses.replace(models.PRESETS["test"], vocab_size=len(tok)), seed=123)
    lm.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.mark.slow  # end to end, ten seeds: about a minute
def test_cli_end_to_end_on_a_decoder_directory(store, tiny_gpt2, tmp_path, capsys, topics_csv):
    out = tmp_path / "out"
    assert main_gain(["--model", str(tiny_gpt2), "--data", topics_csv, "--max-examples", "400", "--seeds", "10",
                      "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ΔL = L(θ0) − L(θP)" in text and "TF-IDF" in text
    body = json.loads((out / "gain.json").read_text())
    assert (out / "gain.png").stat().st_size > 10_000
    # θ0 and θ0' are both drawn afresh for every seed from the same distribution: their difference has mean 0,
    # so the control must not come out biased. (The "pretrained" model is one fixed random draw, which may
    # be luckier or unluckier than the average random init: its ΔL has no known value.)
    assert body["control_verdict"] in ("equivalent", "undecided"), body["control_dL"]
    assert np.isfinite(body["dL"]["bits"]) and set(body["L_bits"]) == {"pretrained", "scratch", "scratch-seed",
                                                                         "tfidf-logreg"}


def _bad(tmp_path, **cols):
    import pandas as pd
    p = tmp_path / "bad.csv"
    pd.DataFrame(cols).to_csv(p, index=False)
    return str(p)


@pytest.mark.parametrize("case,needle", [
    ("missing-file", "no such file"), ("unknown-column", "no column 'text'"), ("one-class", "one class only"),
    ("too-few-rows", "the protocol needs at least"), ("float-labels", "must be integers or strings"),
    ("no-model-dir", "not a directory"), ("no-config", "no config.json"), ("no-weights", "no weights"),
    ("no-tokenizer", "no tokenizer"), ("unknown-body", "unknown book body"),
    ("unknown-model-type", "model_type 'klingon' is not an architecture"),
    ("no-last-hidden-state", "no last_hidden_state to mean-pool"), ("not-a-text-model", "reads no token ids"),
    ("tokenizer-does-not-load", "the tokenizer does not load"),
])
def test_bad_input_is_one_line_and_exit_2(case, needle, tmp_path, tiny_gpt2, capsys, store, topics_csv):
    import shutil
    model, data = "minilm", topics_csv
    if case == "missing-file":
        data = str(tmp_path / "nope.csv")
    elif case == "unknown-column":
        data = _bad(tmp_path, sentence=["a", "b"] * 40, label=[0, 1] * 40)
    elif case == "one-class":
        data = _bad(tmp_path, text=["a", "b"] * 40, label=[1] * 80)
    elif case == "too-few-rows":
        data = _bad(tmp_path, text=["a", "b"] * 10, label=[0, 1] * 10)
    elif case == "float-labels":
        data = _bad(tmp_path, text=["a", "b"] * 40, label=[0.5, 1.5] * 40)
    elif case == "no-model-dir":
        model = str(tmp_path / "missing-model")
    elif case == "unknown-body":
        model = "body:klingon"
    else:
        model = str(tmp_path / "m")
        shutil.copytree(tiny_gpt2, model)
        # an architecture the probe cannot use: the config says so; the weights stay the decoder's
        # (the checks read config.json and the class, never the weights)
        configs = {"unknown-model-type": lambda: json.dumps({"model_type": "klingon"}),
                   "no-last-hidden-state": lambda: __import__("transformers").CLIPConfig().to_json_string(),
                   "not-a-text-model": lambda: __import__("transformers").ViTConfig().to_json_string()}
        if case in configs:
            (tmp_path / "m" / "config.json").write_text(configs[case]())
        drop = {"no-config": ["config.json"], "no-weights": ["model.safetensors"],
                "no-tokenizer": ["tokenizer.json", "tokenizer_config.json"],
                "tokenizer-does-not-load": ["tokenizer.json"]}.get(case, [])
        for f in drop:
            (tmp_path / "m" / f).unlink()
    with pytest.raises(SystemExit) as e:
        main_gain(["--model", model, "--data", data])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


# ------------------------------------------------------------------------- malformed tables, every format
# Each case is a table (or the raw bytes of a file) that `read_table` must refuse with a GainError of one
# line naming the file, and a pattern the line must match. The table cases are written in every format;
# CSV and TSV read texts as strings, so numbers are texts there and that case is for the typed formats.
_N = 40
_TEXTS = [f"package number {i}" for i in range(_N)]
TABLES = {
    "no-rows": (lambda: {"text": [], "label": []}, "no rows"),
    "no-text-column": (lambda: {"sentence": _TEXTS, "label": [0, 1] * (_N // 2)}, "no column 'text'"),
    "no-label-column": (lambda: {"text": _TEXTS, "topic": [0, 1] * (_N // 2)}, "no column 'label'"),
    "labels-all-missing": (lambda: {"text": _TEXTS, "label": [None] * _N}, "has both a text in 'text' and a label"),
    "labels-all-blank": (lambda: {"text": _TEXTS, "label": [" "] * _N}, "has both a text in 'text' and a label"),
    "one-class": (lambda: {"text": _TEXTS, "label": ["games"] * _N}, "one class only in 'label'"),
    "texts-numbers": (lambda: {"text": list(range(_N)), "label": [0, 1] * (_N // 2)},
                      "texts in 'text' must be strings"),
    "texts-none": (lambda: {"text": [None] * _N, "label": [0, 1] * (_N // 2)}, "has both a text in 'text'"),
    "fractional-labels": (lambda: {"text": _TEXTS, "label": [0.5, 1.5] * (_N // 2)},
                          "labels in 'label' must be integers or strings"),
}
RAW = {"empty-file": (b"", "cannot read|no rows"),
       "binary-garbage": (np.random.default_rng(0).bytes(4096), "cannot read|no column")}


def _write_table(fmt: str, cols: dict, path: Path) -> Path:
    import pandas as pd
    df = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in cols.items()})
    if fmt == "dataset":
        import datasets
        datasets.Dataset.from_dict(cols).save_to_disk(str(path))
    elif fmt in ("csv", "tsv"):
        df.to_csv(path, sep="," if fmt == "csv" else "\t", index=False)
    elif fmt in ("jsonl", "json"):
        df.to_json(path, orient="records", lines=fmt == "jsonl")
    else:
        df.to_parquet(path, index=False)
    return path


def _malformed():
    for fmt in ("csv", "tsv", "jsonl", "json", "parquet", "dataset"):
        for case in TABLES:
            if not (case == "texts-numbers" and fmt in ("csv", "tsv")):
                yield fmt, case
        for case in RAW if fmt != "dataset" else ("not-a-dataset", "no-train-split"):
            yield fmt, case


@pytest.mark.parametrize("fmt,case", list(_malformed()), ids=[f"{f}-{c}" for f, c in _malformed()])
def test_a_malformed_table_is_one_line_naming_the_file(fmt, case, tmp_path):
    import re
    path = tmp_path / (f"bad.{fmt}" if fmt != "dataset" else "bad-dataset")
    if case in TABLES:
        make, pattern = TABLES[case]
        _write_table(fmt, make(), path)
    elif case in RAW:
        raw, pattern = RAW[case]
        path.write_bytes(raw)
    elif case == "not-a-dataset":
        path.mkdir()
        (path / "notes.txt").write_text("a directory, but no saved dataset\n")
        pattern = "is not a saved `datasets` directory"
    else:  # a DatasetDict whose splits do not include "train"
        import datasets
        datasets.DatasetDict({"test": datasets.Dataset.from_dict({"text": _TEXTS, "label": [0, 1] * (_N // 2)})}
                             ).save_to_disk(str(path))
        pattern = "splits \\['test'\\]"
    with pytest.raises(G.GainError) as e:
        G.read_table(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and re.search(pattern, msg), msg


def test_texts_that_look_like_numbers_are_texts_in_a_csv(tmp_path):
    path = _write_table("csv", {"text": ["007", "1e3", "42"] * 20, "label": [0, 1, 1] * 20}, tmp_path / "n.csv")
    texts, y, classes = G.read_table(path)
    assert texts[:3] == ["007", "1e3", "42"] and classes == ["0", "1"] and y[:3].tolist() == [0, 1, 1]


def test_the_command_refuses_a_malformed_table_before_loading_anything(tmp_path, capsys, monkeypatch):
    """`decoupling gain` on a table with a header and no rows: exit 2 and one line on stderr, and neither
    the model nor the store was touched."""
    from decoupling import cli
    monkeypatch.setattr(G, "model_loaders", lambda *a, **k: pytest.fail("a model was loaded"))
    monkeypatch.setattr(G, "gain_experiment", lambda *a, **k: pytest.fail("the computation ran"))
    path = tmp_path / "header-only.csv"
    path.write_text("text,label\n")
    with pytest.raises(SystemExit) as e:
        cli.main(["gain", "--model", "minilm", "--data", str(path)])
    assert e.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("decoupling gain: error:") and f"{path}: no rows" in err[0], err
    assert captured.out == ""


def test_equivalence_verdicts_known_answers():
    """The control passes only when its CI lies within ±δ; a biased θ0' (CI away from 0, beyond δ) fails it,
    and a CI too wide to decide says so."""
    d = G.DELTA_BITS
    assert measures.equivalence(-0.2 * d, 0.5 * d) == "equivalent"
    assert measures.equivalence(1.2 * d, 3 * d) == "biased"  # a θ0' that is systematically better
    assert measures.equivalence(-3 * d, -1.5 * d) == "biased"
    assert measures.equivalence(0.2 * d, 1.5 * d) == "biased"  # away from 0 and past the bound
    assert measures.equivalence(-1.5 * d, 1.5 * d) == "undecided"


def test_a_biased_control_fails_the_equivalence_test():
    """A θ0' that codes every label 0.1 bit better than θ0 (a plausible bug: e.g. it saw the test labels)
    must fail, whatever the seed noise."""
    rng = np.random.default_rng(0)
    n = 400
    diffs = rng.normal(0.10 * n, 0.02 * n, size=10)  # L(θ0) − L(θ0') per seed, bits
    ci = intervals.mean_ci(diffs)  # the interval `summarize` uses
    assert measures.equivalence(ci.lo / n, ci.hi / n) == "biased"
    unbiased = rng.normal(0.0, 0.02 * n, size=10)
    ci = intervals.mean_ci(unbiased)
    assert measures.equivalence(ci.lo / n, ci.hi / n) == "equivalent"


def test_summarize_gives_the_t_interval_over_seeds():
    """ΔL's interval in `summarize` is the textbook Student-t one over seeds: with per-seed differences
    1, 2, 3, 4, 5 bits (mean 3, s = √2.5, 4 df) it is 3 ± t(0.975, 4)·√(2.5/5) = 3 ± 2.776·0.7071."""
    CONTROL, PRETRAINED, SCRATCH = G.CONTROL, G.PRETRAINED, G.SCRATCH
    n, dl = 10, np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    scratch = np.full(5, 100.0)
    runs = {SCRATCH: scratch, PRETRAINED: scratch - dl, CONTROL: scratch.copy()}
    res = {"n": n, "K": 2, "seeds": list(range(5)), "mode": "probe", "uniform_bits": float(n),
           "runs": {k: {"L": v.tolist(), "test_bits": [[1.0]] * 5} for k, v in runs.items()},
           "reference": {"L": (scratch - 1).tolist(), "test_bits": [[1.0]] * 5},
           "pairs": {PRETRAINED: {"essay_kl": [[0.1]] * 5, "gain": [[0.2]] * 5}}, "proxies": {}}
    s = G.summarize(res)
    half = 2.7764451 * np.sqrt(2.5 / 5)
    assert s["dL"]["bits"] == pytest.approx(3.0)
    assert (s["dL"]["lo"], s["dL"]["hi"]) == pytest.approx((3 - half, 3 + half), rel=1e-6)
    assert s["dL"]["per_label_lo"] == pytest.approx((3 - half) / n, rel=1e-6)
    assert s["control_verdict"] == "equivalent"  # θ0' codes exactly like θ0: a zero-width interval at 0


def test_clustered_ci_is_wider_than_pooled_when_targets_differ():
    per_target = {"a": [1.0, 1.1, 0.9], "b": [-1.0, -0.9, -1.1], "c": [0.2, 0.1, 0.3]}
    c = intervals.clustered_ci(per_target)  # the interval `score` uses
    pooled = intervals.mean_ci(np.concatenate(list(per_target.values())))
    assert c.value == pytest.approx(pooled.value)
    assert (c.hi - c.lo) > (pooled.hi - pooled.lo)


def test_score_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as e:
        main_score(["--help"])
    assert e.value.code == 0 and "generality score" in capsys.readouterr().out


def test_one_read_of_the_table_and_a_key_that_follows_its_content(tmp_path, monkeypatch, topics_csv):
    """`config_for` reads and hashes the table; the computation takes that table instead of reading it
    again. The store key still follows the content: one label, one text or the class names changed at the
    same path give another key; the same content gives the same key; a file changed after its key was made
    is refused rather than computed under the old key."""
    import pandas as pd
    from decoupling.pipeline import store
    reads = []
    real = G.read_table
    monkeypatch.setattr(G, "read_table", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    path = tmp_path / "t.csv"
    df = pd.read_csv(topics_csv)
    df.to_csv(path, index=False)

    def key(**kw):
        cfg = G.config_for("minilm", path, seeds=(0,), max_examples=100, **kw)
        return cfg, store.keys(G.gain_experiment, cfg, "smoke")[1]

    cfg, k0 = key()
    texts, y, classes = G._table(cfg)  # what `_gain` codes
    assert len(reads) == 1 and len(texts) == len(df) and classes == sorted(df["label"].unique())
    changes = {
        "one label": lambda d: d.assign(label=[d["label"][1], *d["label"][1:]]),
        "one text": lambda d: d.assign(text=[d["text"][0] + " again", *d["text"][1:]]),
        "class names": lambda d: d.assign(label="topic-" + d["label"]),  # same order, same label indices
    }
    for name, change in changes.items():
        change(df).to_csv(path, index=False)
        assert key()[1] != k0, name
    df.to_csv(path, index=False)
    assert key()[1] == k0
    changes["one text"](df).to_csv(path, index=False)  # changed behind the key's back
    G._TABLES.clear()
    with pytest.raises(G.GainError, match="changed since"):
        G._table(cfg)


@pytest.mark.slow  # six targets end to end at tiny sizes: about a minute on a busy 2-core machine
def test_score_end_to_end(store, tmp_path, capsys):
    out = tmp_path / "score"
    argv = ["--model", "minilm", "--seeds", "2", "--max-examples", "32", "--n-test", "16", "--max-len", "16",
            "--out", str(out)]
    assert main_score(argv) == 0
    text = capsys.readouterr().out
    body = json.loads((out / "score.json").read_text())
    assert set(body) >= {"model", "mode", "targets", "score", "delta_bits_per_label"}
    assert set(body["targets"]) == set(G.book_targets()) and body["mode"] == "probe"
    for t, v in body["targets"].items():
        assert t in text
        assert v["n"] == 32 and v["seeds"] == 2 and v["K"] >= 2
        assert v["control_verdict"] in ("equivalent", "undecided", "biased")
        for what in ("dL", "control_dL", "dL_vs_reference"):
            c = v[what]
            assert c["lo"] <= c["bits"] <= c["hi"], (t, what, c)
            assert c["per_label_lo"] <= c["per_label"] <= c["per_label_hi"], (t, what, c)
            assert c["per_label"] == pytest.approx(c["bits"] / v["n"])
    sc = body["score"]
    assert sc["targets"] == len(body["targets"]) and sc["lo"] <= sc["value"] <= sc["hi"], sc
    assert sc["value"] == pytest.approx(np.mean([v["dL"]["per_label"] for v in body["targets"].values()]))
    assert f"generality score of minilm: {sc['value']:+.3f}" in text
    assert main_score(argv) == 0  # again: every target from the store
    again = json.loads((out / "score.json").read_text())
    assert all(v["cache_hit"] for v in again["targets"].values()) and again["score"] == sc
