"""core.intervals: the t intervals hold their level at 3 and 5 runs (simulated experiments with a known
mean), the percentile bootstrap does not at 3, and holm / tost give known answers."""
import math

import numpy as np
import pytest

from decoupling.core import intervals as I
from decoupling.core import measures

R = 8000  # simulated experiments per case: a coverage estimate's standard error is ≈ 0.0025 at 0.95
FLOOR = 0.93


def _normal(rng, shape):
    return rng.normal(1.0, 1.0, shape), 1.0


def _lognormal(rng, shape, s=0.25):
    # right-skewed (skewness ≈ 0.78); its mean is exp(s²/2)
    return rng.lognormal(0.0, s, shape), math.exp(s * s / 2)


def _covered(lo, hi, mu):
    return float(np.mean((lo <= mu) & (mu <= hi)))


@pytest.mark.parametrize("draw", [_normal, _lognormal], ids=["normal", "lognormal"])
@pytest.mark.parametrize("n", [3, 5])
def test_mean_ci_covers(draw, n):
    rng = np.random.default_rng(n)
    x, mu = draw(rng, (R, n))
    _, lo, hi, _ = I.t_interval(x)
    assert _covered(lo, hi, mu) >= FLOOR
    # the vectorised rows are what mean_ci returns one experiment at a time
    for row in x[:3]:
        c = I.mean_ci(row)
        m, l, h, _ = I.t_interval(row[None])
        assert (c.value, c.lo, c.hi, c.n, c.df) == pytest.approx((m[0], l[0], h[0], n, n - 1))


@pytest.mark.parametrize("n", [3, 5])
def test_clustered_ci_covers(n):
    """6 targets, each with its own random effect, n runs within each; the runs are skewed (exponential,
    centred): the clustered interval is over target means, whose spread holds both parts."""
    rng = np.random.default_rng(10 + n)
    T, mu = 6, 0.5
    y = mu + rng.normal(0, 1.0, (R, T, 1)) + (rng.exponential(1.0, (R, T, n)) - 1.0)
    _, lo, hi, _ = I.t_interval(y.mean(2))
    assert _covered(lo, hi, mu) >= FLOOR
    # run-level intervals that ignore the clustering (all T·n runs as independent) undercover
    _, lo_naive, hi_naive, _ = I.t_interval(y.reshape(R, T * n))
    assert _covered(lo_naive, hi_naive, mu) < FLOOR
    for k in range(3):
        c = I.clustered_ci({f"t{t}": y[k, t] for t in range(T)})
        m, l, h, _ = I.t_interval(y[k].mean(1)[None])
        assert (c.value, c.lo, c.hi, c.n, c.df) == pytest.approx((m[0], l[0], h[0], T * n, T - 1))
        assert c.method == "clustered"


def test_percentile_bootstrap_undercovers_at_three_runs():
    """The reason for the change: at 3 runs the percentile bootstrap is about the range of the runs."""
    rng = np.random.default_rng(3)
    n, B, r = 3, 1000, 2000
    x, mu = _normal(rng, (r, n))
    idx = rng.integers(0, n, (B, n))
    boots = x[:, idx].mean(-1)  # (r, B): the resampled means, as measures.bootstrap_ci draws them
    lo, hi = np.quantile(boots, [0.025, 0.975], axis=1)
    boot_cov = _covered(lo, hi, mu)
    _, tlo, thi, _ = I.t_interval(x)
    t_cov = _covered(tlo, thi, mu)
    assert boot_cov < 0.85 < FLOOR <= t_cov
    # the library's bootstrap is that same interval
    c = measures.bootstrap_ci(x[0], n_boot=4000)
    assert c.hi - c.lo <= x[0].max() - x[0].min() + 1e-12


def test_single_target_and_small_cases():
    c = I.clustered_ci({"a": [1.0, 2.0, 3.0]})
    m = I.mean_ci([1.0, 2.0, 3.0])
    assert (c.value, c.lo, c.hi, c.df) == pytest.approx((m.value, m.lo, m.hi, 2))
    # t(0.975, 2) = 4.303: mean 2, se 1/√3
    assert m.hi - 2.0 == pytest.approx(4.3027 / math.sqrt(3), rel=1e-4)
    one = I.mean_ci([2.5])
    assert one.value == 2.5 and math.isnan(one.lo) and one.n == 1
    assert I.mean_ci([0.0, 0.0]).p == 1.0 and I.mean_ci([1.0, 1.0]).p == 0.0
    # p against 0: t = 2/(1/√3) = 3.464 on 2 df
    assert m.p == pytest.approx(0.07418, abs=2e-4)


def test_diff_ci_welch():
    a, b = [1.0, 2.0, 3.0, 4.0], [0.0, 0.5, 1.0]
    d = I.diff_ci(a, b)
    assert d.value == pytest.approx(2.0)
    from scipy.stats import ttest_ind
    assert d.p == pytest.approx(ttest_ind(a, b, equal_var=False).pvalue)


def test_holm_textbook():
    """Holm 1979's procedure on a worked example: p = 0.01, 0.04, 0.03, 0.005 (m = 4) → sorted 0.005,
    0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 → made monotone: 0.02, 0.03, 0.06, 0.06."""
    adj = I.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005})
    assert adj == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06, "d": 0.02})
    assert I.holm({"x": 0.6, "y": 0.9}) == pytest.approx({"x": 1.0, "y": 1.0})  # 2 × 0.6, capped; then monotone
    assert I.holm({"x": None, "y": 0.02}) == {"x": None, "y": 0.02}
    assert I.holm({}) == {}


def test_tost_known_answers():
    assert I.tost(-0.02, 0.03, 0.05) == "equivalent"
    assert I.tost(-0.06, 0.03, 0.05) == "undecided"
    assert I.tost(0.06, 0.2, 0.05) == "different" and I.tost(-0.3, -0.051, 0.05) == "different"
    assert I.tost(float("nan"), 0.0, 0.05) == "undecided"
    # values 0.01, 0.02, 0.03: mean 0.02, se 0.01/√3, 90% t(0.95, 2) = 2.920 → [0.0031, 0.0369]
    e = I.equivalence([0.01, 0.02, 0.03], margin=0.05)
    assert (e["lo"], e["hi"]) == pytest.approx((0.02 - 2.91999 * 0.01 / math.sqrt(3),
                                                0.02 + 2.91999 * 0.01 / math.sqrt(3)), rel=1e-4)
    assert e["verdict"] == "equivalent" and e["p"] < 0.05
    # the upper one-sided test decides: t = (0.02 − 0.05)/(0.01/√3) = −5.196 on 2 df → p = 0.0176
    assert e["p"] == pytest.approx(e["p_upper"]) and e["p_upper"] == pytest.approx(0.01756, abs=2e-4)
    wide = I.equivalence([-0.2, 0.0, 0.3], margin=0.05)
    assert wide["verdict"] == "undecided" and wide["p"] > 0.05
    assert I.equivalence(I.clustered_ci({"a": [0.0, 0.01], "b": [0.02, 0.0]}), 0.05)["verdict"] == "equivalent"
    far = I.equivalence([0.3, 0.32, 0.31], margin=0.05)
    assert far["verdict"] == "different" and far["p_beyond"] < 0.05 < far["p"]


def test_interval_is_plain_data():
    """One interval type: frozen, its bounds as `.ci`, and a round trip through plain data (JSON)."""
    import dataclasses
    import json
    c = I.mean_ci([1.0, 2.0, 3.0])
    assert c.ci == (c.lo, c.hi) and c.level == 0.95 and c.method == "t" and c.n == 3 and c.df == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.lo = 0.0
    d = json.loads(json.dumps(c.as_dict()))
    assert I.Interval.from_dict(d) == c
    assert I.Interval.from_dict({**d, "extra": 1}) == c  # keys a record adds beside it are ignored
    assert I.diff_ci([1.0, 2.0], [0.0, 1.0]).method == "welch"
    assert I.mean_ci([0.1, 0.2], level=0.9).level == 0.9
    empty = I.mean_ci([])
    assert math.isnan(empty.value) and empty.n == 0 and math.isnan(empty.p)
