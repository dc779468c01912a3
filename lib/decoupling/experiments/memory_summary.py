"""Chapter 2 (book/memory.md): the chapter's numbers, the data its figures plot and its checks and findings,
from the records of `experiments.memory` (pure functions: nothing trains).

Kept apart from `experiments.memory` so that the statistics can change without changing the records' keys
(no experiment module imports this one). Every interval is a Student-t interval over seeds
(`core.intervals.mean_ci`); every verdict comes from `core.verdicts`. One function per section of the
chapter, each returning a `Section`: `gating`, `task_token`, `prompting`, `icl`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from decoupling.core import verdicts
from decoupling.core.intervals import Interval, mean_ci
from decoupling.core.verdicts import Check, Finding

CONDITIONS = ("gated", "lesioned", "no_context")  # the gated memory, its gate cut at test, no controller
GATING_KEYS = ("acc", "acc_fixed", "task_bits", "logloss_bits", "attn_entropy_bits", "precision",
               "mass_same_object_other_context", "mass_other_objects")
PROMPT_MARGIN = 0.05  # the equivalence margin in held-out accuracy, fixed before the run
RIDGE_TOLERANCE = 1.25  # "a general learner": error on unseen tasks within this multiple of ridge's
ICL_KEYS = ("model", "dmmse", "ridge", "delta_dmmse", "delta_ridge", "model_seen")


@dataclass  # not frozen: tests/test_presets.py reads a frozen dataclass here as an experiment's config
class Section:
    """What one section of the chapter shows: `numbers` (what the figure and the prose read), `table`
    (header, rows) for `pipeline.page.table`, and the claims it records with `Chapter.add`."""
    numbers: dict
    table: tuple = ((), ())
    checks: dict = field(default_factory=dict)
    findings: dict = field(default_factory=dict)

    @property
    def claims(self) -> list:
        return [*self.checks.values(), *self.findings.values()]


def _mean(values) -> float:
    return float(np.mean(values))


# ================================================================================== 1. context-gated memory
def gating_means(res: dict) -> dict:
    """{condition: {metric: [mean over seeds, per K]}} and the log-loss gap per K."""
    runs, Ks = res["runs"], res["contexts"]
    at = {K: [r for r in runs if r["K"] == K] for K in Ks}
    out = {c: {k: [_mean([r[c][k] for r in at[K]]) for K in Ks] for k in GATING_KEYS} for c in CONDITIONS}
    out["logloss_gap_bits"] = [_mean([r["logloss_gap_bits"] for r in at[K]]) for K in Ks]
    return out


def gating_checks(res: dict) -> dict[str, Check]:
    """The memory model's checks: by construction the context is necessary and a controller that sees only
    the context is sufficient, so each threshold is one a broken memory or gate would cross."""
    runs, Ks = res["runs"], res["contexts"]
    m = gating_means(res)
    # The Latin square makes the object alone worthless (1/K by construction), so "at chance" can only fail
    # through a bug: context leaking into a memory with no controller lifts it above 1/K, a broken memory
    # sinks the control objects. The check therefore asks for both, at every K.
    off_chance = max(abs(a - 1 / K) for a, K in zip(m["no_context"]["acc"], Ks))
    fixed_none = min(r["no_context"]["acc_fixed"] for r in runs)
    bits_none = max(r["no_context"]["task_bits"] for r in runs)
    acc_ctx = float(min(r["gated"]["acc"] for r in runs if r["K"] == 2))
    bits = m["gated"]["task_bits"]
    rel = [abs(b - math.log2(K)) / math.log2(K) for b, K in zip(bits, Ks)]
    # Cutting the gate of a memory that learned to filter must spread retrieval over the object's K
    # episodes: an entropy rise of log2 K bits. A gate that learned nothing (or read the wrong signal): ≈ 0.
    rise = [_mean([r["lesioned"]["attn_entropy_bits"] - r["gated"]["attn_entropy_bits"]
                   for r in runs if r["K"] == K]) / math.log2(K) for K in Ks]
    checks = [
        Check("no-context-at-chance",
              "a memory with no controller answers the conflicting objects within 0.02 of chance (1/K) at every "
              f"K, carries ≤ 0.01 bits about the context (worst run: {bits_none:.3f}), and still answers the "
              f"control objects (worst run {fixed_none:.3f} ≥ 0.95)",
              passed=off_chance <= 0.02 and fixed_none >= 0.95 and bits_none <= 0.01, value=off_chance),
        Check("with-context-accurate",
              "K = 2: the context-gated memory answers the conflicting objects with accuracy ≥ 0.95 (worst seed)",
              passed=acc_ctx >= 0.95, value=acc_ctx),
        Check("task-bits-log2k",
              f"I(Ŷ;T|X) of the gated memory is within 10% of log₂K for every K in {list(Ks)} (worst relative "
              f"error {max(rel):.3f})", passed=max(rel) <= 0.10, value=bits),
        Check("gate-filters",
              f"cutting the gate raises the attention entropy over stored episodes by ≥ 0.8·log₂K bits at every K "
              f"in {list(Ks)} (rise / log₂K shown; log₂K is what filtering the object's K episodes down to one "
              "is worth)", passed=min(rise) >= 0.8, value=rise),
    ]
    return {c.name: c for c in checks}


def gating(res: dict) -> Section:
    """Means per K for the figure and the table, the attention split at the smallest K, and the checks."""
    Ks, m = res["contexts"], gating_means(res)
    K0 = Ks[0]
    at0 = [r for r in res["runs"] if r["K"] == K0]
    split = {c: {k: _mean([r[c][k] for r in at0]) for k in GATING_KEYS} for c in CONDITIONS}
    f3 = lambda x: f"{x:.3f}"  # noqa: E731
    rows = [[K, f"{math.log2(K):.2f}", *(f3(m[c][k][i]) for c, k in (
        ("gated", "acc"), ("no_context", "acc"), ("lesioned", "acc"), ("no_context", "acc_fixed"),
        ("gated", "task_bits"))), f3(m["logloss_gap_bits"][i]),
        *(f3(m[c][k][i]) for c, k in (("gated", "attn_entropy_bits"), ("lesioned", "attn_entropy_bits"),
                                        ("gated", "precision")))]
            for i, K in enumerate(Ks)]
    header = ["K", "log₂K", "acc. gated", "acc. no controller", "acc. lesioned", "control objects, no controller",
              "I(Ŷ;T|X) gated, bits", "log-loss gap, bits", "H(attn) gated, bits", "H(attn) lesioned, bits",
              "precision gated"]
    numbers = {"K": list(Ks), "means": m, "chance": [1 / K for K in Ks], "log2K": [math.log2(K) for K in Ks],
               "K0": K0, "split_at_K0": split, "n_seeds": len(res["seeds"])}
    return Section(numbers, (header, rows), gating_checks(res))


# ================================================================================== 2. a task token
TOKEN_KEYS = ("acc_right", "acc_wrong", "acc_none", "acc_wrong_ceiling", "acc_none_ceiling", "data_task_bits",
              "model_task_bits", "logloss_gap_bits", "ce_right_bits")


def task_token(res: dict) -> Section:
    """Means over seeds (and each seed's values, for the dots) and the check that the model follows its
    token: right ≈ 1 on unseen inputs, and under a wrong token it scores only where the tasks agree."""
    T = res["runs"]
    mean = {k: _mean([r[k] for r in T]) for k in TOKEN_KEYS}
    per_seed = {k: [r[k] for r in T] for k in TOKEN_KEYS}
    worst_right = min(r["acc_right"] for r in T)
    wrong_off = max(abs(r["acc_wrong"] - r["acc_wrong_ceiling"]) for r in T)
    check = Check("task-token-margin",
                  "the multitask model computes the function its token names on held-out inputs: right-token "
                  "accuracy ≥ 0.9 (worst seed), and under a wrong token its accuracy on the asked task is within "
                  "0.1 of the rate at which the two tasks agree (worst seed); shown: [worst right, worst gap]",
                  passed=worst_right >= 0.9 and wrong_off <= 0.1, value=[worst_right, wrong_off])
    f3 = lambda k: f"{mean[k]:.3f}"  # noqa: E731
    header = ["", "right token", "wrong token", "no token", "I(Y;T|X) data, bits", "I(Ŷ;T|X) model, bits",
              "log-loss gap, bits", "right-token log-loss, bits"]
    rows = [["mean over seeds", *map(f3, ("acc_right", "acc_wrong", "acc_none", "data_task_bits",
                                          "model_task_bits", "logloss_gap_bits", "ce_right_bits"))],
            ["a perfect model", "1", f3("acc_wrong_ceiling"), f3("acc_none_ceiling"), *[f3("data_task_bits")] * 3,
             "0"]]
    numbers = {"mean": mean, "per_seed": per_seed, "log2_tasks": math.log2(len(res["tasks"])), "n_seeds": len(T)}
    return Section(numbers, (header, rows), {check.name: check})


# ================================================================================== 2b. the task as a prompt
ARMS = (("token", "task token"), ("prompt", "task named in the input"))
PROMPT_READING = {"holds": "the two cues are learned equally well, within the margin.",
                  "does not hold": "the gap is larger than the margin.",
                  "inconclusive": "the interval is too wide for the margin to decide."}


def prompt_cue(res: dict, margin: float = PROMPT_MARGIN) -> Finding:
    """Equivalence (TOST) of the paired accuracy gap, prompted − token, over seeds, against ±margin."""
    gaps = [r["acc_gap"] for r in res["runs"]]
    d = verdicts.equivalent(gaps, margin)
    return Finding(
        "prompt-cue-learned-like-token",
        essay="the task written as text in the input selects the function as well as a task token does (both "
              "models trained from scratch: how well each cue is learned, not retrieval from a pretrained memory)",
        criterion=f"equivalence margin ±{margin} in held-out accuracy: holds if the 90% t-interval of the accuracy "
                  f"gap (prompted − token, paired by seed, over {len(gaps)} seeds) lies inside ±{margin} (TOST at "
                  "5%), does not hold if it lies wholly outside, else inconclusive",
        decision=d, anchor="Radford et al. 2019 (GPT-2): tasks specified in the input as text",
        detail="95% t-interval of the gap {0.lo:+.3f} … {0.hi:+.3f}".format(mean_ci(gaps)))


def prompting(res: dict) -> Section:
    """Per arm: accuracy, task bits and log-loss with 95% t intervals over seeds; the prompt finding."""
    P = res["runs"]
    stats = {arm: {k: mean_ci([r[arm][k] for r in P]) for k in ("acc", "task_bits", "logloss_bits")}
             for arm, _ in ARMS}
    f3 = lambda iv: f"{iv.value:.3f} ({iv.lo:.3f} … {iv.hi:.3f})"  # noqa: E731
    header = ["task given as", "accuracy (95% CI)", "I(Ŷ;T|X), bits (95% CI)", "log-loss, bits (95% CI)"]
    rows = [[name, *(f3(stats[arm][k]) for k in ("acc", "task_bits", "logloss_bits"))] for arm, name in ARMS]
    f = prompt_cue(res)
    numbers = {"arms": ARMS, "stats": stats, "n_seeds": len(P),
               "per_seed": {arm: {k: [r[arm][k] for r in P] for k in ("acc", "task_bits")} for arm, _ in ARMS},
               "acc_none_ceiling": _mean([r["acc_none_ceiling"] for r in P]),
               "data_task_bits": _mean([r["data_task_bits"] for r in P]),
               "gap": f.decision.interval, "margin": PROMPT_MARGIN,
               "reading": PROMPT_READING[f.decision.verdict]}
    return Section(numbers, (header, rows), findings={f.name: f})


# ================================================================================== 3. retrieval vs learning
def retrieval_ratio(res: dict) -> dict[int, Interval]:
    """r(M) = log2(Δ_dMMSE / Δ_ridge) per M: the mean over seeds with its t interval. r < 0: the model's
    predictions on unseen tasks sit closer to the memorized-task Bayes predictor; r > 0: closer to ridge."""
    return {M: mean_ci([math.log2(x["delta_dmmse"] / x["delta_ridge"]) for x in res["runs"] if x["M"] == M])
            for M in res["diversities"]}


def _some(parts: dict[str, Interval], threshold: float) -> verdicts.Decision:
    """"Some part's 95% CI lies above `threshold`": the negation of `on_every(parts, threshold, "<")` (every
    CI below). It holds where that does not hold and the other way round, with the same p."""
    d = verdicts.on_every(parts, threshold, "<")
    flip = {"holds": "does not hold", "does not hold": "holds"}.get(d.verdict, d.verdict)
    return verdicts.Decision(flip, d.p, d.interval, d.parts, f"not ({d.rule})")


def diversity_transition(res: dict) -> Finding:
    """Closer to dMMSE at the smallest M (the CI of r below 0) and closer to ridge at some larger M (a CI of
    r above 0); it does not hold if r ≥ 0 at the smallest M or every larger M has r < 0. The sign test,
    not the largest M alone: as M grows dMMSE itself converges to ridge, so there r → 0 for any model."""
    r = retrieval_ratio(res)
    Ms = list(r)
    larger = {f"M = {M}": r[M] for M in Ms[1:]}
    d = verdicts.all_of({f"smallest M = {Ms[0]}": verdicts.below(r[Ms[0]], 0.0),
                         "some larger M": _some(larger, 0.0)})
    ridge_side = [M for M in Ms[1:] if np.isfinite(r[M].lo) and r[M].lo > 0]
    value = {"r_smallest_M": r[Ms[0]].value, "ridge_side_M": ridge_side,
             "threshold_M": next((M for M in Ms if r[M].value > 0), None)}
    return Finding(
        "diversity-transition",
        essay="pretraining on few tasks gives retrieval of memorized tasks, on many tasks general learning",
        criterion="on unseen tasks the model is closer to dMMSE at the smallest M (the CI of r lies below 0) and "
                  "closer to ridge at some larger M (the CI of r lies above 0); it does not hold if r ≥ 0 at the "
                  "smallest M or no larger M has r > 0",
        decision=d, value=value, applies_to=("full",),
        anchor="Raventós et al. 2023: transition near M ≈ 2^13 for d = 8 with larger models trained far longer")


def matches_ridge(res: dict, tolerance: float = RIDGE_TOLERANCE) -> Finding:
    """At the largest M, the error on unseen tasks as a multiple of ridge's: its 95% CI below `tolerance`."""
    top = max(res["diversities"])
    ratio = mean_ci([x["model"] / x["ridge"] for x in res["runs"] if x["M"] == top])
    return Finding(
        "icl-matches-ridge", essay="above the threshold the model is a general learner",
        criterion=f"at the largest M the 95% CI of its error on unseen tasks, as a multiple of ridge "
                  f"regression's, lies below {tolerance}",
        decision=verdicts.below(ratio, tolerance), applies_to=("full",),
        anchor="Raventós et al. 2023: above the threshold the transformer's predictions approach ridge's")


def icl(res: dict) -> Section:
    """Per M: errors and distances (means, and the seeds' range for the model's band), r with its CI, the
    check that M = 1 is memorised, and the two diversity findings."""
    R, Ms = res["runs"], res["diversities"]
    per_m = {k: [[x[k] for x in R if x["M"] == M] for M in Ms] for k in ICL_KEYS}
    r = retrieval_ratio(res)
    one = [x for x in R if x["M"] == 1]
    seen_ratio = _mean([x["model_seen"] / x["dmmse_seen"] for x in one])
    check = Check("icl-memorizes-one-task",
                  "with M = 1 the transformer learns its one task: error on it within 1.5× the Bayes error",
                  passed=seen_ratio <= 1.5, value=seen_ratio)
    findings = {f.name: f for f in (diversity_transition(res), matches_ridge(res))}
    top = [x for x in R if x["M"] == Ms[-1]]
    ridge_side = findings["diversity-transition"].value["ridge_side_M"]
    header = ["M", "model error (unseen)", "dMMSE error", "ridge error", "Δ to dMMSE", "Δ to ridge",
              "model error (seen tasks)", "r = log₂(Δ_dMMSE/Δ_ridge)"]
    rows = [[M, *(f"{np.mean(per_m[k][i]):.3f}" for k in ICL_KEYS), f"{r[M].value:+.2f}"] for i, M in enumerate(Ms)]
    numbers = {
        "M": list(Ms), "mean": {k: [_mean(v) for v in per_m[k]] for k in ICL_KEYS},
        "model_min": [min(v) for v in per_m["model"]], "model_max": [max(v) for v in per_m["model"]],
        "r": [r[M] for M in Ms], "r_mean": [r[M].value for M in Ms], "ridge_side_M": ridge_side,
        "ridge_side": "; ".join(f"M = {M}: r = {r[M].value:+.2f}" for M in ridge_side),
        "ratio_to_ridge": findings["icl-matches-ridge"].decision.interval.value,
        "dmmse_to_ridge": _mean([x["dmmse"] / x["ridge"] for x in top]),
        "n_seeds": len(res["seeds"]), "dim": res["dim"], "n_points": res["n_points"]}
    return Section(numbers, (header, rows), {check.name: check}, findings)
