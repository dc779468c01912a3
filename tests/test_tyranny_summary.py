"""experiments.tyranny_summary on small synthetic records with known answers: a planted effect decides
"holds", a null "does not hold" or "inconclusive" as it should, p < 0.05 exactly when a finding decides,
and each check fails on the bug it guards against. No training."""
import math

import numpy as np
import pytest
from scipy.stats import ttest_1samp

from decoupling.core import intervals
from decoupling.experiments import tyranny_summary as TS

DECIDED = ("holds", "does not hold")


def _decides(d) -> bool:
    return (d.p < 0.05) == (d.verdict in DECIDED)


# ---------------------------------------------------------------------------------------------- scaling
def _scaling(alpha_seeds=(0.08, 0.085, 0.09), bend_seeds=(0.0, 0.004, -0.004), r2=0.995):
    N = np.array([1e3, 3e3, 1e4, 3e4])
    S = np.array([2.0 * (N / 1e3) ** -a for a in alpha_seeds])
    runs = [{"n_layer": 1, "d_model": 8 * (i + 1), "N": int(n), "params_total": int(2 * n), "lr": 0.01, "steps": 10,
             "units": 100, "units_per_param": 2.0} for i, n in enumerate(N)]
    return {"N": N.tolist(), "loss_nats": S.mean(0).tolist(), "seed_loss_nats": S.tolist(), "runs": runs,
            "seeds": list(range(len(alpha_seeds))), "alpha_seeds": list(alpha_seeds),
            "alpha_delta_seeds": list(bend_seeds), "decades": 1.5, "tokens_per_param": 2.0,
            "pure": {"alpha": 0.085, "alpha_ci": [0.08, 0.09], "Nc": 1.0, "r2": r2},
            "floor": {"alpha": 0.3, "alpha_ci": [0.2, 0.4], "E": 1.0, "A": 2.0, "r2": 0.999},
            "local_slope_at": [1.7e3, 5.5e3, 1.7e4], "local_slopes": [0.08, 0.085, 0.09],
            "alpha_bottom": 0.08, "alpha_top": 0.09}


@pytest.mark.parametrize("kw, verdict", [
    ({}, "holds"),
    ({"r2": 0.9}, "does not hold"),  # a curve, not a power law
    ({"alpha_seeds": (-0.08, -0.085, -0.09)}, "does not hold"),  # loss rises with size
    ({"alpha_seeds": (-0.1, 0.1, 0.03)}, "inconclusive"),  # the seeds disagree
])
def test_scaling_power_law(kw, verdict):
    d = TS.scaling_power_law(_scaling(**kw)).decision
    assert d.verdict == verdict and _decides(d)


@pytest.mark.parametrize("bend, verdict", [
    ((0.0, 0.004, -0.004, 0.002), "holds"),  # a straight line
    ((0.05, 0.06, 0.055), "holds"),  # a curve that steepens is not diminishing either
    ((-0.10, -0.11, -0.09), "does not hold"),  # bends down beyond the margin
    ((-0.06, 0.03, -0.02), "inconclusive"),
])
def test_returns_not_diminishing_is_one_sided_at_5_percent(bend, verdict):
    d = TS.returns_not_diminishing(_scaling(bend_seeds=bend)).decision
    assert d.verdict == verdict and _decides(d)
    assert d.interval.level == pytest.approx(0.90)
    side = "greater" if np.mean(bend) > -TS.BEND else "less"
    assert d.p == pytest.approx(ttest_1samp(bend, -TS.BEND, alternative=side).pvalue)


def test_scaling_section_tables():
    S = TS.scaling(_scaling())
    assert [f.name for f in S.claims] == ["scaling-power-law", "returns-not-diminishing"]
    assert all(f.applies_to == ("full",) for f in S.claims)
    assert len(S.tables["ladder"][1]) == 4 and S.tables["fits"][1][0][1].startswith("0.0850 [")


# ---------------------------------------------------------------------------------------------- more data
def _data(slopes: dict):
    per_target = {t: {"slopes": list(v), "dL_per_label": [[0.0, 0.1, 0.2]] * len(v)} for t, v in slopes.items()}
    return {"per_target": per_target, "tokens": [1_000, 2_000, 4_000], "targets": list(slopes),
            "seeds": [0, 1, 2], "ends": [16, 48, 112],
            "bodies": [{"eval_bits_per_token": b} for b in (6.0, 5.5, 5.0)]}


@pytest.mark.parametrize("slopes, verdict", [
    ({"a": (0.10, 0.11, 0.12), "b": (0.05, 0.06, 0.055)}, "holds"),
    ({"a": (0.30, 0.31, 0.32), "b": (-0.05, -0.06, -0.055)}, "does not hold"),  # mean > 0, but not on b
    ({"a": (0.10, 0.11, 0.12), "b": (-0.2, 0.3, 0.05)}, "inconclusive"),
])
def test_more_data_helps_is_decided_on_every_target(slopes, verdict):
    f = TS.more_data_helps(_data(slopes))
    d = f.decision
    assert d.verdict == verdict and _decides(d) and set(d.parts) == set(slopes)
    assert f.applies_to == ("full",)


def test_more_data_helps_per_target_intervals():
    parts = TS.slopes_per_target(_data({"a": (0.1, 0.2, 0.3)}))
    assert parts["a"].value == pytest.approx(0.2) and parts["a"].ci == pytest.approx(
        intervals.mean_ci([0.1, 0.2, 0.3]).ci)


# ---------------------------------------------------------------------------------------------- memorization
@pytest.mark.parametrize("caps, verdict", [
    ((2.5, 2.6, 2.55), "holds"),
    ((4.5, 4.6, 4.55), "does not hold"),  # above the band: a lower bound above it refutes it
    ((1.0, 1.1, 1.05), "inconclusive"),  # below the band: a lower bound there does not refute it
    ((1.5, 2.5, 3.5), "inconclusive"),
])
def test_capacity_band_reads_a_lower_bound(caps, verdict):
    d = TS.lower_bound_in_band(intervals.mean_ci(caps), TS.BAND)
    assert d.verdict == verdict and _decides(d)


def _mem(caps=(1.0, 1.1, 1.05), random_train=1.0, random_test=0.1, true_test=0.95):
    def row(w, true):
        r = {"width": w, "params": 75 * w + 10,
             "random": {"train_acc": random_train, "test_acc": random_test, "stored_bits": 100.0 * w,
                        "bits_per_param": 1.0}}
        if true:
            r["true"] = {"train_acc": 1.0, "test_acc": true_test, "stored_bits": 0.0, "bits_per_param": 0.0}
        return r
    runs = [{"seed": s, "rows": [row(4, False), row(128, True)]} for s in range(len(caps))]
    return {"runs": runs, "seeds": list(range(len(caps))), "capacity_seeds": list(caps),
            "capacity_widths": [4] * len(caps), "widest": {"width": 128},
            "worst": {"random_train_acc": random_train, "random_test_acc": random_test, "true_test_acc": true_test},
            "chance": 0.1, "chance_margin": 0.063, "n_test": 361, "label_bits_total": 4770.0}


def test_memorization_checks():
    S = TS.memorization(_mem())
    assert all(c.passed for c in S.checks.values()) and S.numbers["below_band"]
    assert not TS.memorization(_mem(random_train=0.8)).checks["random-labels-fit"].passed
    assert not TS.memorization(_mem(random_test=0.3)).checks["random-labels-test-at-chance"].passed
    assert not TS.memorization(_mem(true_test=0.5)).checks["true-labels-control-generalizes"].passed
    assert S.tables["widths"][1][1][-1].startswith("0.950 [")  # the control, with its interval
    assert S.tables["widths"][1][0][-1] == "–"  # no control at width 4


# ---------------------------------------------------------------------------------------------- compression
def test_compression_known_answer():
    rows = [{"width": w, "labels": "true", "params": 10 * (w + 1), "preq_bits_per_label": pb, "train_bits": 0.1,
             "test_bits": tb, "test_acc": 0.9} for w, pb, tb in ((0, 0.5, 0.30), (8, 0.4, 0.25), (32, 0.6, 0.20))]
    rows.append({"width": 128, "labels": "random", "params": 9000, "preq_bits_per_label": 3.82, "train_bits": 0.0,
                 "test_bits": 9.0, "test_acc": 0.1})
    n = TS.compression({"rows": rows, "uniform_bits_per_label": math.log2(10), "spearman_preq_vs_test": 0.5}).numbers
    assert n["best_code"] == "width 8" and n["best_code_rank"] == "second" and not n["same_best"]
    assert n["best_test"] == "width 32" and n["memo_longer"]
    assert n["memo_excess"] == pytest.approx(3.82 - math.log2(10))
    assert n["labels"] == ["linear", "width 8", "width 32"]


# ---------------------------------------------------------------------------------------------- double descent
def _dd(peak_ci=(0.9, 1.1), spike=50.0, train_past=1e-12, err_threshold=0.5, err_widest=0.1):
    return {"n_train": 300, "ratio": [0.5, 1.0, 2.0], "test_mse": [[1, 50, 2]] * 5, "test_err": [[0.3, 0.5, 0.1]] * 5,
            "beta_norm": [[1, 100, 3]] * 5, "peak_ratio": 1.0, "peak_ratio_ci": list(peak_ci),
            "peak_ratio_err": 1.0, "best_test_err": 0.1, "best_p": 600, "spike_factor": spike,
            "train_mse_past_threshold": train_past, "err_at_threshold": err_threshold, "err_at_widest": err_widest}


@pytest.mark.parametrize("kw, passed", [
    ({}, True),
    ({"peak_ci": (1.5, 3.0)}, False),  # the spike moved away from p = n
    ({"spike": 2.0}, False),  # flattened (a ridge penalty)
    ({"train_past": 1e-3}, False),  # does not interpolate
    ({"err_widest": 0.6}, False),  # no second descent
])
def test_double_descent_check(kw, passed):
    c = TS.double_descent(_dd(**kw)).checks["double-descent-peak"]
    assert c.passed == passed and c.interval.method == "bootstrap"


def test_the_band_finding_reads_the_runs_plateaus():
    f = TS.memorization(_mem(caps=(2.5, 2.6, 2.55))).findings["bits-per-param-in-band"]
    assert f.decision.verdict == "holds" and f.value == pytest.approx(2.55) and f.applies_to == ("full",)


# ---------------------------------------------------------------------------------------------- page helpers
def test_claims_table_and_errorbar():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from decoupling.pipeline import page
    from decoupling.pipeline.claims import Claim

    c = Claim("tyranny", "x", "finding", "smoke", ("full",), "e", {"R²": 0.93998, "α": 0.0313836}, (0.1, 0.2),
              "inconclusive", level=0.9)
    assert page.claims_table([c], "smoke").data.splitlines()[-1] == (
        "| `x` | finding | {R²: 0.94, α: 0.03138} | 90% [0.1, 0.2] | inconclusive (recorded only) |")
    fig, ax = plt.subplots()
    bars = page.errorbar(ax, [1, 2], [intervals.mean_ci([1.0, 2.0, 3.0]), intervals.mean_ci([5.0])])
    (segments,) = bars.lines[2]
    spans = [s[:, 1] for s in segments.get_segments()]
    assert spans[0] == pytest.approx(intervals.mean_ci([1.0, 2.0, 3.0]).ci) and spans[1] == pytest.approx([5, 5])
    plt.close(fig)
