"""experiments/computers_summary.py (book/computers.md's numbers and claims) on synthetic records with known
answers: a planted effect decides "holds", a null "inconclusive", an opposite effect "does not hold"; the
break-even estimate and its interval; the checks on records built right and wrong. No training."""
import math

import numpy as np
import pytest

from decoupling.core import models
from decoupling.core.intervals import Interval
from decoupling.experiments import computers_summary as CS
from decoupling.pipeline.page import decided_by

BUDGET = 1000.0
C_PRE = 1e6
SEEDS = (0, 1, 2)
MODEL = models.PRESETS["test"]


def _run(seed, to_target, acc=0.7, lr=1e-2):
    """One run whose curve reaches the target (0.6) at `to_target` FLOPs, or never (None)."""
    steps = [2, 4, 6, 8, 10]
    per_step = BUDGET / steps[-1]
    curve = [{"step": s, "flops": s * per_step, "train_s": s / 10,
              "acc": 0.7 if to_target is not None and s * per_step >= to_target else 0.5} for s in steps]
    return {"seed": seed, "lr": lr, "flops": BUDGET, "flops_to_target": to_target, "reached": to_target is not None,
            "seconds_to_target": None if to_target is None else to_target / 1000, "final_acc": acc, "wall_s": 1.0,
            "curve": curve, "batch": 4}


def _task(scratch, finetune, acc_ft=None, ref_per_seed=None, majority=0.5, ref_acc=0.65):
    """A task record: FLOPs to target per seed for each init (None: missed), fine-tune accuracies per seed, and
    the reference's accuracy per seed's test rows."""
    acc_ft = acc_ft or [0.7] * len(SEEDS)
    ref_per_seed = ref_per_seed or [ref_acc] * len(SEEDS)
    grid = [1e-2, 3e-2]
    return {"target": 0.6, "baseline": {"majority": majority, "linear": 0.7}, "n_heldout": 8,
            "runs": {"scratch": [_run(s, c) for s, c in zip(SEEDS, scratch)],
                     "pretrained": [_run(s, c, a) for s, c, a in zip(SEEDS, finetune, acc_ft)]},
            "lr_choice": {i: {"lr": 1e-2, "grid": grid, "scores": [0.7, 0.6]} for i in ("scratch", "pretrained")},
            "reference": {"acc": float(np.mean(ref_per_seed)), "acc_per_seed": ref_per_seed, "C": 1.0,
                          "grid": [1.0, 10.0], "heldout_acc": [0.8, 0.7], "fit_s": 0.1}}


def _econ(tasks: dict) -> dict:
    return {"pretrain": {"flops": C_PRE, "tokens": 1, "wall_s": 1.0}, "body_seeds": list(SEEDS), "tasks": tasks}


# ================================================================================== pairs and T*
def test_pairs_are_kept_measured_or_as_bounds_and_dropped_when_both_missed():
    ps = CS.pairs(_task([800.0, None, 500.0, None], [200.0, 300.0, None, None]))
    assert [p["kind"] for p in ps] == ["exact", "lower", "upper"]  # three seeds: the fourth is cut by zip
    assert [p["saving"] for p in ps] == [600.0, BUDGET - 300.0, 500.0 - BUDGET]
    assert ps[0]["log_ratio"] == pytest.approx(math.log(200 / 800))
    both = CS.pairs(_task([None] * 3, [None] * 3))
    assert {p["kind"] for p in both} == {"dropped"} and all(p["saving"] is None for p in both)


def test_t_star_interval_is_c_pretrain_over_the_savings_interval():
    t = CS.t_star_interval(600.0, Interval(100.0, 50.0, 150.0))
    assert (t.value, t.lo, t.hi) == pytest.approx((6.0, 4.0, 12.0))
    t = CS.t_star_interval(600.0, Interval(100.0, -20.0, 220.0))  # the saving may be 0: T* may be ∞
    assert t.hi == math.inf and t.lo == pytest.approx(600 / 220)
    t = CS.t_star_interval(600.0, Interval(-10.0, -30.0, 10.0))  # no saving on average: T* = ∞
    assert t.value == math.inf and math.isnan(t.p)


def test_average_task_break_even_and_what_the_mean_saving_is():
    s = CS.Economics(_econ({"a": _task([800.0, 700.0, 900.0], [200.0, 100.0, 300.0]),
                            "b": _task([600.0, 500.0, 700.0], [300.0, 200.0, 400.0])}))
    assert s.saving.value == pytest.approx(450.0)  # task means 600 and 300
    assert s.t_star.value == pytest.approx(C_PRE / 450.0)
    assert s.saving_reading == "measured" and s.pair_kinds["exact"] == 6
    assert s.mean_costs == pytest.approx((700.0, 250.0))
    assert s.amortization()["pretrain_in_finetunes"] == pytest.approx(C_PRE / 250.0)
    lower = CS.Economics(_econ({"a": _task([None, 700.0, 900.0], [200.0, 100.0, 300.0])}))
    assert lower.saving_reading == "a lower bound" and lower.mean_costs is None
    assert lower.amortization()["n"] is None
    mixed = CS.Economics(_econ({"a": _task([None, 700.0, 900.0], [200.0, None, 300.0])}))
    assert mixed.saving_reading == "neither a lower nor an upper bound"
    assert CS.Economics(_econ({"a": _task([None] * 3, [None] * 3)})).saving_reading == "undefined"


# ================================================================================== friction
def _friction(scratch_ft_by_task):
    return CS.Economics(_econ({t: _task(s, f) for t, (s, f) in scratch_ft_by_task.items()})).friction()


def test_friction_holds_when_every_task_is_cheaper_from_the_platform():
    f = _friction({"a": ([800.0, 820.0, 790.0], [200.0, 210.0, 190.0]),
                   "b": ([600.0, 610.0, 590.0], [300.0, 290.0, 310.0])})
    assert f.decision.verdict == "holds" and f.decision.p < 0.05
    assert set(f.decision.parts) == {"a", "b"} and f.applies_to == ("full",)


def test_friction_is_inconclusive_under_the_null_and_fails_when_a_task_is_dearer():
    null = _friction({"a": ([500.0, 400.0, 600.0], [450.0, 550.0, 500.0]),
                      "b": ([600.0, 500.0, 700.0], [650.0, 550.0, 600.0])})
    assert null.decision.verdict == "inconclusive" and null.decision.p >= 0.05
    worse = _friction({"a": ([800.0, 820.0, 790.0], [200.0, 210.0, 190.0]),  # cheaper here ...
                       "b": ([300.0, 310.0, 290.0], [600.0, 610.0, 590.0])})  # ... twice as dear here
    assert worse.decision.verdict == "does not hold" and worse.decision.p < 0.05
    assert decided_by(worse) == "b"


def test_friction_cannot_hold_when_a_task_has_no_interval():
    f = _friction({"a": ([800.0, 820.0, 790.0], [200.0, 210.0, 190.0]),
                   "b": ([None, None, 700.0], [None, None, 100.0])})  # one pair: no interval over seeds
    assert f.decision.verdict == "inconclusive"
    none = _friction({"a": ([800.0, 820.0, 790.0], [200.0, 210.0, 190.0]), "b": ([None] * 3, [None] * 3)})
    assert none.decision.verdict == "inconclusive" and none.value == "undefined: no pair reached the target on b"


# ================================================================================== against the specialist
def test_matches_specialist_pairs_the_gap_by_seed():
    # the reference's accuracy moves a lot with each seed's test rows; the fine-tune tracks it 0.03 above
    ref = [0.55, 0.70, 0.85]
    s = CS.Economics(_econ({"a": _task([800.0] * 3, [200.0] * 3, acc_ft=[r + 0.03 + e for r, e in
                                                                         zip(ref, (0.001, -0.001, 0.0))],
                                       ref_per_seed=ref)}))
    f = s.matches_specialist()
    assert f.decision.verdict == "holds" and f.decision.interval.value == pytest.approx(0.03)
    # unpaired (one reference number), the same accuracies would leave the gap's interval wide open
    assert s.numbers["a"]["acc_finetune"].hi - s.numbers["a"]["acc_finetune"].lo > 0.5


def test_matches_specialist_fails_when_a_task_trails_by_more_than_the_bar():
    s = CS.Economics(_econ({"a": _task([800.0] * 3, [200.0] * 3, acc_ft=[0.70, 0.71, 0.69], ref_acc=0.60),
                            "b": _task([800.0] * 3, [200.0] * 3, acc_ft=[0.50, 0.51, 0.49], ref_acc=0.60)}))
    assert s.matches_specialist().decision.verdict == "does not hold"
    noisy = CS.Economics(_econ({"a": _task([800.0] * 3, [200.0] * 3, acc_ft=[0.50, 0.70, 0.60], ref_acc=0.60)}))
    assert noisy.matches_specialist().decision.verdict == "inconclusive"


# ================================================================================== one platform vs specialists
def _spec(diffs: dict, level: float = 0.95) -> dict:
    return {"level": level, "tasks": {t: {"diff": d, "diff_ci": list(ci), "n_train": 10, "n_test": 500,
                                         "platform": {"acc": 0.7, "acc_per_seed": [0.7] * 3, "lr": 0.01},
                                         "specialist": {"acc": 0.7, "C": 1.0}}
                                     for t, (d, ci) in diffs.items()}}


def test_serves_tasks_is_non_inferiority_on_every_task():
    ok = (0.01, (-0.01, 0.03))
    assert CS.serves_tasks(_spec({"a": ok, "b": (0.0, (-0.02, 0.02))})).decision.verdict == "holds"
    worse = CS.serves_tasks(_spec({"a": ok, "b": (-0.2, (-0.25, -0.15))}))
    assert worse.decision.verdict == "does not hold" and decided_by(worse) == "b"
    assert CS.serves_tasks(_spec({"a": ok, "b": (-0.04, (-0.07, -0.01))})).decision.verdict == "inconclusive"
    for f in (worse, CS.serves_tasks(_spec({"a": ok}))):
        assert (f.decision.p < 0.05) == (f.decision.verdict != "inconclusive")


def test_serves_tasks_reads_the_recorded_95pc_interval_and_refuses_another_level():
    part = CS.specialist_parts(_spec({"a": (0.0, (-0.045, 0.03))}))["a"]
    assert (part.level, part.lo, part.hi, part.method) == (0.95, -0.045, 0.03, "bootstrap")  # as recorded
    assert CS.serves_tasks(_spec({"a": (0.0, (-0.045, 0.03))})).decision.verdict == "holds"
    assert CS.serves_tasks(_spec({"a": (0.0, (-0.055, 0.03))})).decision.verdict == "inconclusive"
    with pytest.raises(ValueError, match="90%"):  # an old 90% record is not widened into a 95% one
        CS.specialist_parts(_spec({"a": (0.0, (-0.045, 0.03))}, level=0.90))


# ================================================================================== MiniLM and its control
def _mini(minilm_acc, random_acc):
    def enc(accs):
        return {"lr": 0.01, "runs": [{"final_acc": a, "adapt_flops": 1.0, "adapt_s": 1.0} for a in accs]}
    return {"mode": "probe", "tasks": {t: {"target": 0.6, "encoders": {"minilm": enc(m), "random": enc(r)}}
                                       for t, (m, r) in zip(("a", "b"), zip(minilm_acc, random_acc))}}


def test_beats_random_passes_on_a_planted_advantage_and_not_on_none():
    econ = CS.Economics(_econ({"a": _task([800.0] * 3, [200.0] * 3), "b": _task([800.0] * 3, [200.0] * 3)}))
    good = CS.Platform(econ, _mini([[0.80, 0.81, 0.79], [0.70, 0.72, 0.71]], [[0.60, 0.61, 0.59], [0.55, 0.56, 0.54]]))
    assert good.beats_random().passed
    null = CS.Platform(econ, _mini([[0.80, 0.81, 0.79], [0.60, 0.55, 0.58]], [[0.60, 0.61, 0.59], [0.58, 0.59, 0.55]]))
    c = null.beats_random()
    assert not c.passed and "b" in c.statement
    assert [iv.value for iv in good.bars()["minilm"]] == pytest.approx([0.80, 0.71])


# ================================================================================== checks
def test_checks_pass_on_a_record_built_right_and_fail_on_one_built_wrong():
    T = MODEL.block_size
    per_token = models.flops_per_token(MODEL, T, include_head=False)
    rec = _task([800.0] * 3, [200.0] * 3)
    for runs in rec["runs"].values():
        for r in runs:
            r["flops"] = 10 * r["batch"] * T * per_token
            r["counted_flops_per_token"] = r["recounted_flops_per_token"] = per_token
    res = _econ({"a": rec})
    res["pretrain"] = {"flops": 1000 * models.flops_per_token(MODEL), "tokens": 1000, "wall_s": 1.0}
    econ = CS.Economics(res)
    assert [c.passed for c in econ.accounting_checks(MODEL)] == [True, True]
    assert econ.reference_competent().passed
    rec["runs"]["scratch"][1]["flops"] *= 1.01  # a FLOP miscounted
    rec["lr_choice"]["pretrained"]["lr"] = 3e-2  # not the grid point with the best held-out score
    rec["reference"]["acc"] = 0.52  # a reference at the majority class
    econ = CS.Economics(res)
    assert [c.passed for c in econ.accounting_checks(MODEL)] == [False, False]
    assert not econ.reference_competent().passed


def test_flop_accounting_reads_the_fine_tunes_sequence_length():
    T = MODEL.block_size // 2  # fine-tunes on examples shorter than the body's context
    per_token = models.flops_per_token(MODEL, T, include_head=False)
    rec = _task([800.0] * 3, [200.0] * 3)
    for runs in rec["runs"].values():
        for r in runs:
            r["flops"] = 10 * r["batch"] * T * per_token
            r["counted_flops_per_token"] = r["recounted_flops_per_token"] = per_token
    res = _econ({"a": rec})
    res["pretrain"] = {"flops": 1000 * models.flops_per_token(MODEL), "tokens": 1000, "wall_s": 1.0}
    assert not CS.flop_accounting(res, MODEL).passed  # read at the block size, the count is off
    res["seq_len"] = T
    assert CS.flop_accounting(res, MODEL).passed


def test_every_finding_records_a_p_value():
    econ = CS.Economics(_econ({"a": _task([800.0, 820.0, 790.0], [200.0, 210.0, 190.0])}))
    plat = CS.Platform(econ, _mini([[0.80, 0.81, 0.79], [0.7, 0.7, 0.7]], [[0.60, 0.61, 0.59], [0.5, 0.5, 0.5]]))
    found = CS.found(econ, plat, _spec({"a": (0.01, (-0.01, 0.03))}))
    assert set(found) == {"reducing-friction", "platform-matches-specialist", "platform-serves-tasks",
                          "pretrained-beats-random-features"}
    for f in found.values():
        if hasattr(f, "decision"):
            assert math.isfinite(f.decision.p) and f.criterion
