"""`decoupling gain`: known answers on a small labelled dataset that ships with the tests.

tests/fixtures/debian_sections.csv: 600 one-line descriptions of Debian bookworm packages (the `Description`
field's first line, from the archive's Packages index) labelled by their archive section (games, science,
sound, mail; 150 each). Not one of the book's tasks, and a topical task a sentence encoder should read.
"""
import json

import numpy as np
import pytest

from decoupling.core import measures
from decoupling.experiments import gain as G
from decoupling.gain import main_gain, main_score

FIXTURE = "tests/fixtures/debian_sections.csv"


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


def test_minilm_gains_bits_and_controls_hold(store):
    s = G.gain("minilm", FIXTURE, max_examples=240, seeds=(0, 1, 2))
    assert s["dL"]["lo"] > 0, s["dL"]  # a sentence encoder reads package topics: CI above 0
    assert s["control_equivalent"], s["control_dL"]  # θ0 vs θ0': within ±DELTA_BITS per label
    again = G.gain("minilm", FIXTURE, max_examples=240, seeds=(0, 1, 2))
    assert again["cache_hit"] and again["dL"] == s["dL"]


def test_shuffled_labels_give_no_gain(store, tmp_path):
    import pandas as pd
    df = pd.read_csv(FIXTURE)
    df["label"] = np.random.default_rng(1).permutation(df["label"].to_numpy())
    path = tmp_path / "shuffled.csv"
    df.to_csv(path, index=False)
    s = G.gain("minilm", path, max_examples=240, seeds=(0, 1, 2))
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


def test_cli_end_to_end_on_a_decoder_directory(store, tiny_gpt2, tmp_path, capsys):
    out = tmp_path / "out"
    assert main_gain(["--model", str(tiny_gpt2), "--data", FIXTURE, "--max-examples", "160", "--seeds", "3",
                      "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ΔL = L(θ0) − L(θP)" in text and "TF-IDF" in text
    body = json.loads((out / "gain.json").read_text())
    assert (out / "gain.png").stat().st_size > 10_000
    # random weights are no pretraining: the "pretrained" model is one more random init
    assert -G.DELTA_BITS <= body["dL"]["per_label_lo"] and body["dL"]["per_label_hi"] <= G.DELTA_BITS, body["dL"]


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
])
def test_bad_input_is_one_line_and_exit_2(case, needle, tmp_path, tiny_gpt2, capsys, store):
    import shutil
    model, data = "minilm", FIXTURE
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
        drop = {"no-config": ["config.json"], "no-weights": ["model.safetensors"],
                "no-tokenizer": ["tokenizer.json", "tokenizer_config.json"]}[case]
        for f in drop:
            (tmp_path / "m" / f).unlink()
    with pytest.raises(SystemExit) as e:
        main_gain(["--model", model, "--data", data])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert needle in err[-1] and "Traceback" not in "\n".join(err)


def test_clustered_ci_is_wider_than_pooled_when_targets_differ():
    per_target = {"a": [1.0, 1.1, 0.9], "b": [-1.0, -0.9, -1.1], "c": [0.2, 0.1, 0.3]}
    c = G.clustered_ci(per_target)
    pooled = measures.bootstrap_ci(np.concatenate(list(per_target.values())))
    assert c["value"] == pytest.approx(pooled.value)
    assert (c["hi"] - c["lo"]) > (pooled.hi - pooled.lo)


def test_score_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as e:
        main_score(["--help"])
    assert e.value.code == 0 and "generality score" in capsys.readouterr().out
