"""core.verdicts: known answers (a planted effect holds, a null is inconclusive, an effect on the wrong side
does not hold), the per-target rule over a suite, equivalence, and p < 0.05 exactly when a rule decides."""
import math

import numpy as np
import pytest

from decoupling.core import intervals as I
from decoupling.core import verdicts as V



def _runs(mean, sd=0.05, n=5, seed=0):
    return np.random.default_rng(seed).normal(mean, sd, n)


def test_planted_effect_holds_null_is_inconclusive_wrong_side_does_not_hold():
    d = V.above(I.mean_ci(_runs(0.5)), 0.0)
    assert d.verdict == "holds" and d.p < 0.05 and d.interval.lo > 0
    null = V.above(I.mean_ci([-0.05, 0.02, 0.04, -0.01, 0.01]), 0.0)
    assert null.verdict == "inconclusive" and null.p >= 0.05
    wrong = V.above(I.mean_ci(_runs(-0.5)), 0.0)
    assert wrong.verdict == "does not hold" and wrong.p < 0.05
    assert V.below(I.mean_ci(_runs(-0.5)), 0.0).verdict == "holds"
    assert V.below(I.mean_ci(_runs(0.5)), 0.0).verdict == "does not hold"


def test_threshold_p_is_the_t_test_against_the_threshold():
    v = [1.0, 2.0, 3.0]
    from scipy.stats import ttest_1samp
    assert V.above(I.mean_ci(v), 0.5).p == pytest.approx(ttest_1samp(v, 0.5).pvalue)


def test_one_run_or_nothing_decides_nothing():
    for iv in (I.mean_ci([0.3]), I.mean_ci([])):
        d = V.above(iv, 0.0)
        assert d.verdict == "inconclusive" and d.p == 1.0


def test_a_90_percent_t_interval_is_read_at_95():
    iv90 = I.mean_ci(_runs(0.1, sd=0.1), level=0.90)
    d = V.above(iv90, 0.0)
    assert d.interval.level == 0.95
    assert d.interval.ci == pytest.approx(I.mean_ci(_runs(0.1, sd=0.1)).ci)


def test_an_interval_without_se_is_inverted_side_by_side():
    """A bootstrap interval (no se, df): p < 0.05 exactly when it excludes the threshold, on either side,
    even when it is lopsided."""
    iv = I.Interval(1.0, 0.2, 3.0, method="bootstrap")
    for thr, decided in ((0.19, True), (0.21, False), (2.99, False), (3.01, True)):
        d = V.above(iv, thr)
        assert (d.p < 0.05) == decided == (d.verdict != "inconclusive")
    assert V.above(iv, 0.19).verdict == "holds" and V.above(iv, 3.01).verdict == "does not hold"
    with pytest.raises(ValueError):
        V.above(I.Interval(1.0, 0.2, 3.0, level=0.9, method="bootstrap"), 0.0)
    outside = I.Interval(0.05, 0.06, 0.5, method="bootstrap")  # a percentile interval can miss its estimate
    assert V.above(outside, 0.055).verdict == "holds" and V.above(outside, 0.07).verdict == "inconclusive"
    fixed = I.Interval(0.7, 0.7, 0.7, method="fixed")
    assert V.above(fixed, 0.5).verdict == "holds" and V.below(fixed, 0.5).verdict == "does not hold"


def _suite(means, sd=0.02):
    return {f"t{i}": I.mean_ci(_runs(m, sd, 3, seed=i)) for i, m in enumerate(means)}


def test_on_every_target():
    every = V.on_every(_suite([0.3, 0.2, 0.4, 0.25, 0.5, 0.35]), 0.0)
    assert every.verdict == "holds" and every.p < 0.05
    assert every.p == pytest.approx(max(V.above(iv, 0.0).p for iv in every.parts.values()))
    assert set(every.parts) == {f"t{i}" for i in range(6)}
    one_negative = V.on_every(_suite([0.3, 0.2, 0.4, 0.25, 0.5, -0.35]), 0.0)
    assert one_negative.verdict == "does not hold" and one_negative.p < 0.05
    assert one_negative.interval.hi < 0  # the box shows the target that decides
    parts = _suite([0.3, 0.2, 0.4, 0.25, 0.5, 0.35])
    parts["t5"] = I.mean_ci([-0.2, 0.1, 0.3])  # straddles 0
    straddling = V.on_every(parts, 0.0)
    assert straddling.verdict == "inconclusive" and straddling.p >= 0.05
    assert V.on_every(_suite([-0.3, -0.2]), 0.0, "<").verdict == "holds"
    assert V.on_every({}, 0.0).verdict == "inconclusive"


def test_a_mean_over_targets_is_not_every_target():
    """The reason for on_every: five clear targets and one clearly below 0 give a mean whose interval can
    lie above 0, while the claim about every target does not hold."""
    per = {f"t{i}": _runs(m, 0.02, 3, seed=i) for i, m in enumerate([0.6, 0.5, 0.55, 0.6, 0.5, -0.05])}
    assert V.above(I.clustered_ci(per), 0.0).verdict == "holds"
    assert V.on_every({t: I.mean_ci(v) for t, v in per.items()}, 0.0).verdict == "does not hold"


def test_all_of_mixes_rules():
    d = V.all_of({"up": V.above(I.mean_ci(_runs(0.5)), 0.0), "control": V.equivalent(_runs(0.0, 0.01), 0.05)})
    assert d.verdict == "holds" and d.p < 0.05


def test_equivalent():
    held = V.equivalent([0.01, 0.02, 0.03], margin=0.05)
    assert held.verdict == "holds" and held.p == pytest.approx(0.01756, abs=2e-4)  # the TOST p
    assert held.interval.level == pytest.approx(0.90) and held.interval.method == "tost90"
    far = V.equivalent([0.3, 0.32, 0.31], margin=0.05)
    assert far.verdict == "does not hold" and far.p < 0.05  # the one-sided p beyond the margin
    assert far.p == pytest.approx(I.equivalence([0.3, 0.32, 0.31], 0.05)["p_beyond"])
    wide = V.equivalent([-0.2, 0.0, 0.3], margin=0.05)
    assert wide.verdict == "inconclusive" and wide.p >= 0.05
    assert V.equivalent(I.mean_ci([0.01, 0.02, 0.03]), 0.05).verdict == "holds"  # from an Interval's se, df
    assert V.equivalent([0.1], 0.05).verdict == "inconclusive"
    with pytest.raises(ValueError):
        V.equivalent(I.Interval(0.0, -0.01, 0.01, method="bootstrap"), 0.05)


def test_p_below_alpha_exactly_when_decided():
    """Property over random inputs: every rule's p is below 0.05 exactly when its verdict is not
    "inconclusive", and a decided verdict agrees with the side the interval lies on."""
    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(2, 6))
        v = rng.normal(rng.normal(0, 0.3), rng.uniform(0.01, 0.5), n)
        thr = float(rng.normal(0, 0.2))
        iv = I.mean_ci(v)
        for d in (V.above(iv, thr), V.below(iv, thr), V.equivalent(v, abs(thr) + 0.01),
                  V.on_every({"a": iv, "b": I.mean_ci(rng.normal(0.1, 0.2, 3))}, thr)):
            assert (d.p < 0.05) == (d.verdict != "inconclusive"), d
            assert 0.0 <= d.p <= 1.0 and not math.isnan(d.p)
        a = V.above(iv, thr)
        if a.verdict == "holds":
            assert iv.lo > thr
        elif a.verdict == "does not hold":
            assert iv.hi < thr
        else:
            assert iv.lo <= thr <= iv.hi


def test_finding_shows_its_interval_value_by_default():
    d = V.above(I.mean_ci([1.0, 2.0, 3.0]), 0.0)
    f = V.Finding("f", essay="e", criterion="CI above 0", decision=d)
    assert f.value == pytest.approx(2.0)
    assert V.Finding("f", "e", "c", d, value=7).value == 7


@pytest.mark.parametrize("ci,pred,want", [
    ((0.1, 0.5), ">", "holds"), ((-0.5, -0.1), ">", "does not hold"), ((-0.1, 0.1), ">", "inconclusive"),
    ((-0.5, -0.1), "<", "holds"), ((0.2, 0.4), "<", "does not hold"), ((math.nan, 1.0), ">", "inconclusive")])
def test_an_interval_against_zero(ci, pred, want):
    """The old page-side rule (an interval's bounds against a threshold), now `above`/`below`."""
    iv = I.Interval(sum(ci) / 2, *ci, method="bootstrap")
    assert (V.above(iv, 0.0) if pred == ">" else V.below(iv, 0.0)).verdict == want


@pytest.mark.parametrize("cis,pred,want", [
    ([(0.1, 0.5), (0.2, 0.3)], ">", "holds"),  # every part on the predicted side
    ([(0.1, 0.5), (-0.1, 0.3)], ">", "inconclusive"),  # one part undecided
    ([(0.1, 0.5), (-0.4, -0.2)], ">", "does not hold"),  # one part wholly on the other side
    ([(-0.5, -0.1), (-0.3, -0.2)], "<", "holds"), ([(-0.5, -0.1), (0.1, 0.2)], "<", "does not hold"),
    ([(0.1, 0.5), (math.nan, 1.0)], ">", "inconclusive"), ([], ">", "inconclusive")])
def test_on_every_needs_every_part(cis, pred, want):
    parts = {f"t{i}": I.Interval(sum(c) / 2, *c, method="bootstrap") for i, c in enumerate(cis)}
    assert V.on_every(parts, 0.0, pred).verdict == want


def test_any_interval_decides_by_its_bounds():
    """Property: for an interval with no se (lopsided, its estimate possibly outside it) `above` holds
    exactly when the threshold lies below it, does not hold exactly when above it, and p < 0.05 with them."""
    rng = np.random.default_rng(2)
    for _ in range(500):
        lo, hi = np.sort(rng.normal(0, 1, 2))
        iv = I.Interval(float(rng.normal((lo + hi) / 2, 0.5)), float(lo), float(hi), method="bootstrap")
        thr = float(rng.normal(0, 1.2))
        d = V.above(iv, thr)
        want = "holds" if thr < lo else "does not hold" if thr > hi else "inconclusive"
        assert d.verdict == want and (d.p < 0.05) == (want != "inconclusive"), (iv, thr, d)
