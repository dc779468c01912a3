"""Chapter 2 (memory and control): the experiment functions at tiny configs, against known answers."""
import dataclasses
import math

import pytest
import torch

from decoupling.experiments import memory as E

TINY_GATING = E.GatingConfig(n_objects=6, n_fixed=2, contexts=(2, 4), dim=16, steps=150, seeds=(0,))
TINY_ICL = E.ICLConfig(dim=2, n_points=6, diversities=(1, 64), n_layer=1, n_head=2, width=16, steps=100,
                       batch_size=16, lr=3e-3, n_eval=32, seeds=(0,))


@pytest.fixture(scope="module")
def gating():
    return E.context_gating(TINY_GATING)


def test_gate_retrieves_and_no_context_is_at_chance(gating):
    for run in gating["runs"]:
        K = run["K"]
        assert run["gated"]["acc"] >= 0.95, run["gated"]
        assert run["gated"]["precision"] >= 0.95  # the right episode, not just any with the right response
        for cond in ("no_context", "lesioned"):
            assert abs(run[cond]["acc"] - 1 / K) < 0.02, (cond, run[cond])
            assert run[cond]["acc_fixed"] >= 0.95  # the memory works; only the context is missing
        # without the gate the K episodes of the probed object share the attention: H ≈ log2 K
        assert run["lesioned"]["attn_entropy_bits"] == pytest.approx(math.log2(K), abs=0.1)
        assert run["gated"]["attn_entropy_bits"] < 0.2


def test_task_bits_match_log2k(gating):
    for run in gating["runs"]:
        K = run["K"]
        assert run["data_task_bits"] == pytest.approx(math.log2(K), abs=1e-9)
        assert abs(run["gated"]["task_bits"] - math.log2(K)) <= 0.1 * math.log2(K)
        assert run["no_context"]["task_bits"] < 0.01
        assert abs(run["logloss_gap_bits"] - math.log2(K)) <= 0.1 * math.log2(K)


def test_task_information_known_answers():
    K = 4
    perm = torch.tensor([[(i + t) % K for t in range(K)] for i in range(8)])  # a Latin square of responses
    one_hot = torch.nn.functional.one_hot(perm, K).double()  # (x, t, y)
    assert E.task_information_bits(one_hot) == pytest.approx(2.0, abs=1e-12)
    assert E.task_information_bits(torch.full((8, K, K), 1 / K)) == pytest.approx(0.0, abs=1e-12)
    same = torch.nn.functional.one_hot(torch.zeros(8, K, dtype=torch.long), K).double()  # task ignored
    assert E.task_information_bits(same) == pytest.approx(0.0, abs=1e-12)
    # two of four tasks agree on every input: the task is worth H(1/2, 1/4, 1/4) = 1.5 bits
    two = torch.tensor([[0, 0, 1, 2]] * 8)
    assert E.task_information_bits(torch.nn.functional.one_hot(two, K).double()) == pytest.approx(1.5)


def test_gating_is_deterministic():
    cfg = dataclasses.replace(TINY_GATING, contexts=(2,), steps=20)
    assert E.context_gating(cfg) == E.context_gating(cfg)


def test_icl_is_deterministic():
    cfg = dataclasses.replace(TINY_ICL, steps=10)
    assert E.icl_diversity(cfg) == E.icl_diversity(cfg)


def test_icl_loss_falls():
    res = E.icl_diversity(TINY_ICL)
    for run in res["runs"]:
        assert run["train_loss_last"] < run["train_loss_first"], run
    one = next(r for r in res["runs"] if r["M"] == 1)
    assert one["train_loss_last"] < 0.5 * one["train_loss_first"]  # one task: learned fast
    assert one["delta_dmmse"] < one["delta_ridge"]  # one memorized task: the model is its Bayes predictor


def test_baselines_are_bayes_optimal_in_their_own_world():
    """Ridge is the posterior mean under w ~ N(0, I); dMMSE under w uniform on the pool. Each must beat the
    other on data from its own prior (a known answer for both estimators)."""
    g = torch.Generator().manual_seed(0)
    d, n, s2 = 3, 8, 0.25
    pool = torch.randn(4, d, generator=g)
    W_gauss = torch.randn(2000, d, generator=g)
    W_pool = pool[torch.randint(0, 4, (2000,), generator=g)]
    for W, best in ((W_gauss, "ridge"), (W_pool, "dmmse")):
        xs, ys = E._regression_batch(W, n, s2, g)
        err = {"ridge": ((E.ridge_predictions(xs, ys, s2) - ys) ** 2).mean(),
               "dmmse": ((E.dmmse_predictions(xs, ys, pool, s2) - ys) ** 2).mean()}
        assert err[best] == min(err.values()), (best, err)


def test_task_token_tiny():
    cfg = E.TaskTokenConfig(n_symbols=4, length=3, n_layer=1, n_head=2, d_model=32, steps=150, batch_size=64,
                            lr=3e-3, seeds=(0,))
    run = E.task_token(cfg)["runs"][0]
    assert run["acc_right"] > run["acc_wrong"]
    assert run["train_loss"][-1] < run["train_loss"][0]
    assert 0 < run["data_task_bits"] <= 2.0  # ≤ log2(#tasks)


TINY_PROMPT = E.PromptConfig(n_symbols=4, length=3, steps=60, batch_size=32, lr=5e-3, seeds=(0, 1))


def test_prompt_vocab_names_each_task_with_shared_letters():
    v = E._prompt_vocab(E.PromptConfig())
    assert v["prompt"].shape == v["token"].shape == (4, v["width"])
    assert v["width"] == len("first")
    assert len({tuple(r) for r in v["prompt"].tolist()}) == 4  # each task its own name
    m_ax, m_in = v["prompt"][2].tolist(), v["prompt"][3].tolist()  # "max", "min": the same first letter
    assert m_ax[-3] == m_in[-3] and m_ax[-1] != m_in[-1]
    space = v["token"][0, 0]
    letters = set(v["prompt"][v["prompt"] != space].tolist())
    assert not letters & set(v["token"][:, -1].tolist())  # the task tokens are not letters of the names


def test_prompting_is_deterministic():
    cfg = dataclasses.replace(TINY_PROMPT, steps=5)
    assert E.prompting(cfg) == E.prompting(cfg)


def test_prompting_learns_both_cues():
    res = E.prompting(TINY_PROMPT)
    assert len(res["runs"]) == 2
    for run in res["runs"]:
        for arm in ("token", "prompt"):
            assert run[arm]["train_loss_last"] < 0.7 * run[arm]["train_loss_first"], (arm, run[arm])
            assert run[arm]["acc"] > run["acc_none_ceiling"], (arm, run)  # the cue is read: beyond no-task Bayes
        assert run["acc_gap"] == pytest.approx(run["prompt"]["acc"] - run["token"]["acc"])


def test_ci_over_seeds_is_a_t_interval_and_the_transition_reads_it():
    """The chapter's CIs over seeds are Student-t intervals (core.intervals): with three seeds a percentile
    bootstrap is about the range of the seeds; the t interval is wider than that range."""
    from decoupling.core import intervals
    lo, hi = E.ci_over_seeds([0.1, 0.2, 0.4])
    c = intervals.mean_ci([0.1, 0.2, 0.4])
    assert (lo, hi) == (c.lo, c.hi) and lo < 0.1 and hi > 0.4
    assert all(map(math.isnan, E.ci_over_seeds([0.3])))  # one seed: no interval
    runs = [{"M": M, "seed": s, "delta_dmmse": d, "delta_ridge": 1.0}
            for M, ds in ((1, (0.25, 0.24, 0.26)), (16, (4.0, 4.2, 3.9))) for s, d in enumerate(ds)]
    tr = E.diversity_transition({"diversities": [1, 16], "runs": runs})
    assert tr["r_ci"][0][1] < 0 < tr["r_ci"][1][0] and tr["threshold_M"] == 16
