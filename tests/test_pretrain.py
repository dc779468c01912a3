"""The pretrained bodies: comparable sources, a smoke body that learned more than token frequencies, and
the same weights from the same config."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from decoupling import data
from decoupling.core import models
from decoupling.experiments import pretrain as P


@pytest.fixture(scope="module")
def prepared():
    return data.prepare(progress=False)


def test_every_source_reads_the_same_unique_tokens(prepared):
    plans = [P.plan(P.config("smoke", d)) for d in P.COMPARED + ("shuffled",)]
    assert len({(p["unique_tokens"], p["tokens_seen"], p["steps"]) for p in plans}) == 1
    smallest = min(data.n_tokens(d) for d in P.COMPARED)
    assert plans[0]["unique_tokens"] == smallest - P.SMOKE.eval_tokens > 0


def test_full_reads_each_token_at_most_four_times():
    """The positions a full body reads (steps × batch × block) over the unique tokens the full corpora give
    it: at most MAX_EPOCHS_FULL passes, so a body does not memorise its corpus."""
    f = P.FULL
    seen = f.steps * f.batch_size * f.model.block_size
    assert f.corpus == "full"
    from decoupling.data import full
    m = full.read_full_manifest()
    if m is None:
        pytest.skip("full corpora not fetched here (decoupling data --profile full)")
    u = min(m["tokens"][d]["n_tokens"] for d in P.COMPARED) - f.eval_tokens
    assert seen / u <= P.MAX_EPOCHS_FULL


def test_unigram_bits():
    import numpy as np
    ids = np.array([0, 1, 0, 1])
    h, h_eval = P.unigram_bits(ids, ids, 4)
    assert h == pytest.approx(1.0)
    assert h_eval == pytest.approx(-np.log2(2.5 / 6))  # add-1/2 over 4 symbols


def test_smoke_body_learns_below_unigram_entropy_and_is_deterministic(prepared, tmp_path):
    """The smoke preset itself: the code body ends clearly below its corpus's unigram entropy (a model that
    knew only token frequencies), and training twice gives identical weights (a short run for that)."""
    res = P.pretrain(P.config("smoke", "code"), tmp_path / "a")
    print(f"held out {res['eval_bits_per_token']:.2f} bits/token, unigram entropy {res['unigram_entropy_bits']:.2f}")
    assert res["unigram_entropy_bits"] - res["eval_bits_per_token"] > 0.5
    assert res["epochs"] < 4 and res["unique_tokens"] == P.unique_tokens(P.SMOKE)
    curve = [b for _, b in res["heldout_curve"]]
    assert len(curve) >= 4 and curve[-1] < curve[0]
    short = dataclasses.replace(P.config("smoke", "c"), steps=8, eval_every=0)
    r1, r2 = P.pretrain(short, tmp_path / "b"), P.pretrain(short, tmp_path / "c")
    assert r1["eval_bits_per_token"] == r2["eval_bits_per_token"]
    w1, w2 = models.load_lm(tmp_path / "b" / "model"), models.load_lm(tmp_path / "c" / "model")
    assert all(torch.equal(a, b) for a, b in zip(w1.state_dict().values(), w2.state_dict().values()))
