"""experiments.memory_summary on small synthetic records with known answers: a planted effect decides
"holds", a null "does not hold" or "inconclusive" as it should, and each check fails on the bug it guards
against. No training."""
import math

import numpy as np
import pytest

from decoupling.experiments import memory_summary as MS

SEEDS = (0, 1, 2)


# ---------------------------------------------------------------------------------------------- gating
def _cond(acc, K, entropy, task_bits=None, acc_fixed=1.0, precision=1.0):
    return {"acc": acc, "acc_fixed": acc_fixed, "task_bits": math.log2(K) if task_bits is None else task_bits,
            "logloss_bits": 0.0, "attn_entropy_bits": entropy, "precision": precision,
            "mass_same_object_other_context": 1 - precision, "mass_other_objects": 0.0}


def _gating(Ks=(2, 4), none_acc=None, lesioned_entropy=None):
    runs = []
    for K in Ks:
        for s in SEEDS:
            runs.append({"K": K, "seed": s, "logloss_gap_bits": math.log2(K),
                         "gated": _cond(1.0, K, 0.0),
                         "lesioned": _cond(1 / K, K, math.log2(K) if lesioned_entropy is None else lesioned_entropy,
                                           task_bits=0.0, precision=1 / K),
                         "no_context": _cond(1 / K if none_acc is None else none_acc, K, math.log2(K), task_bits=0.0,
                                             precision=1 / K)})
    return {"runs": runs, "contexts": list(Ks), "seeds": list(SEEDS)}


def test_a_working_memory_passes_every_gating_check():
    S = MS.gating(_gating())
    assert {c.name: c.passed for c in S.claims} == {
        "no-context-at-chance": True, "with-context-accurate": True, "task-bits-log2k": True, "gate-filters": True}
    assert S.numbers["means"]["no_context"]["acc"] == [0.5, 0.25]
    assert S.checks["gate-filters"].value == [1.0, 1.0]
    assert len(S.table[1]) == 2 and S.table[1][0][:2] == [2, "1.00"]


def test_context_leaking_into_the_memory_without_controller_fails_at_chance():
    assert not MS.gating(_gating(none_acc=0.7)).checks["no-context-at-chance"].passed


def test_a_gate_that_filters_nothing_fails():
    assert not MS.gating(_gating(lesioned_entropy=0.0)).checks["gate-filters"].passed


# ---------------------------------------------------------------------------------------------- task token
def _token(right=0.97, wrong=0.25, ceiling=0.25):
    runs = [{"acc_right": right, "acc_wrong": wrong, "acc_none": 0.5, "acc_wrong_ceiling": ceiling,
             "acc_none_ceiling": 0.5, "data_task_bits": 1.3, "model_task_bits": 1.0, "logloss_gap_bits": 1.2,
             "ce_right_bits": 0.2} for _ in SEEDS]
    return {"runs": runs, "tasks": ["first", "last", "max", "min"], "seeds": list(SEEDS)}


def test_task_token_check():
    S = MS.task_token(_token())
    assert S.checks["task-token-margin"].passed and S.numbers["log2_tasks"] == 2.0
    assert not MS.task_token(_token(wrong=0.6)).checks["task-token-margin"].passed  # ignores the token
    assert not MS.task_token(_token(right=0.8)).checks["task-token-margin"].passed


# ---------------------------------------------------------------------------------------------- prompting
def _prompting(gaps):
    runs = []
    for g in gaps:
        token = {"acc": 0.9, "task_bits": 1.0, "logloss_bits": 0.5}
        prompt = {"acc": 0.9 + g, "task_bits": 1.0, "logloss_bits": 0.5}
        runs.append({"token": token, "prompt": prompt, "acc_gap": g, "acc_none_ceiling": 0.5,
                     "data_task_bits": 1.3})
    return {"runs": runs}


@pytest.mark.parametrize("gaps, verdict", [
    ([0.004, -0.003, 0.001, -0.002, 0.0], "holds"),  # the same within the margin
    ([-0.20, -0.21, -0.19, -0.205, -0.195], "does not hold"),  # a gap far beyond the margin
    ([-0.15, 0.12, 0.02, -0.08, 0.10], "inconclusive"),  # too noisy for the margin
])
def test_prompt_cue_is_an_equivalence_test(gaps, verdict):
    S = MS.prompting(_prompting(gaps))
    d = S.findings["prompt-cue-learned-like-token"].decision
    assert d.verdict == verdict and (d.p < 0.05) == (verdict != "inconclusive")
    assert d.interval.level == pytest.approx(0.90)
    assert S.numbers["reading"] == MS.PROMPT_READING[verdict]
    assert S.numbers["stats"]["prompt"]["acc"].value == pytest.approx(0.9 + np.mean(gaps))


# ---------------------------------------------------------------------------------------------- ICL
def _icl(r_by_m: dict, seeds=SEEDS, ratio_top=1.05, spread=0.05):
    """Runs whose r = log2(Δ_dMMSE / Δ_ridge) is r_by_m[M] (± a small per-seed spread)."""
    runs = []
    for M, r in r_by_m.items():
        for k, s in enumerate(seeds):
            jitter = spread * (k - (len(seeds) - 1) / 2)
            runs.append({"M": M, "seed": s, "delta_ridge": 1.0, "delta_dmmse": 2 ** (r + jitter),
                         "model": (ratio_top + jitter) * 0.5, "ridge": 0.5, "dmmse": 1.0,
                         "model_seen": 0.1, "dmmse_seen": 0.1})
    return {"runs": runs, "diversities": list(r_by_m), "seeds": list(seeds), "dim": 4, "n_points": 8}


def test_retrieval_ratio_known_answer():
    r = MS.retrieval_ratio(_icl({1: -2.0, 4: 1.0}))
    assert r[1].value == pytest.approx(-2.0) and r[4].value == pytest.approx(1.0)


@pytest.mark.parametrize("r_by_m, verdict", [
    ({1: -5.0, 4: -1.0, 16: 1.0, 64: 0.5}, "holds"),  # memorized tasks first, ridge side later
    ({1: -5.0, 4: -1.0, 16: -0.5, 64: -0.3}, "does not hold"),  # never the ridge side
    ({1: 2.0, 4: 1.0, 16: 1.0}, "does not hold"),  # not retrieval even at the smallest M
])
def test_diversity_transition(r_by_m, verdict):
    d = MS.diversity_transition(_icl(r_by_m)).decision
    assert d.verdict == verdict and d.p < 0.05


def test_diversity_transition_one_seed_decides_nothing():
    f = MS.diversity_transition(_icl({1: -5.0, 4: 1.0}, seeds=(0,)))
    assert f.decision.verdict == "inconclusive" and f.decision.p >= 0.05
    assert f.value["r_smallest_M"] == pytest.approx(-5.0) and f.applies_to == ("full",)


def test_diversity_transition_noise_is_inconclusive():
    d = MS.diversity_transition(_icl({1: -5.0, 4: 0.2, 16: 0.1}, spread=1.0)).decision
    assert d.verdict == "inconclusive" and d.p >= 0.05


@pytest.mark.parametrize("ratio, verdict", [(1.05, "holds"), (2.0, "does not hold"), (1.25, "inconclusive")])
def test_matches_ridge(ratio, verdict):
    d = MS.matches_ridge(_icl({1: -5.0, 4: 1.0}, ratio_top=ratio)).decision
    assert d.verdict == verdict and (d.p < 0.05) == (verdict != "inconclusive")


def test_icl_section():
    S = MS.icl(_icl({1: -5.0, 4: -1.0, 16: 1.0}))
    assert S.checks["icl-memorizes-one-task"].passed
    assert [c.name for c in S.claims] == ["icl-memorizes-one-task", "diversity-transition", "icl-matches-ridge"]
    assert S.numbers["ridge_side_M"] == [16] and S.numbers["ridge_side"] == "M = 16: r = +1.00"
    assert S.numbers["r"][0].lo < S.numbers["r_mean"][0] < S.numbers["r"][0].hi


def test_icl_check_fails_when_the_one_task_is_not_learned():
    res = _icl({1: -5.0, 4: 1.0})
    for x in res["runs"]:
        x["model_seen"] = 0.5  # five times the Bayes error on its one task
    assert not MS.icl(res).checks["icl-memorizes-one-task"].passed
