"""Confidence intervals that keep their level at the run counts the book uses (2 to 5 seeds), and the tests
built on them.

A percentile bootstrap over three seeds resamples from only ten distinct multisets: its interval is about
the range of the seeds and covers a normal mean roughly four times in five, not 95 in 100. A Student-t
interval over the runs pays for the estimated spread with its heavier tails and holds its level exactly for
normal runs, and closely for mildly skewed ones (tests/test_intervals.py measures both, and the bootstrap's
shortfall). Strong skew at three runs (exponential runs, say) leaves any interval this small short of its
level; no resampling trick recovers information that three values do not hold.

- `Interval`: the one interval type of the library and the book (value, bounds, level, runs, p, method,
  standard error, degrees of freedom); `core.verdicts` decides findings from it.
- `mean_ci`: the mean over runs with a t interval (n − 1 degrees of freedom) and a t-test p-value.
- `clustered_ci`: the mean over targets of per-target means, t interval over the target means. It describes
  an average over a suite (the generality score); a claim about every target of a fixed suite is decided
  target by target (`verdicts.on_every`), not by this interval.
- `diff_ci`: the difference of two independent means (Welch).
- `t_interval`: the vectorised core of `mean_ci` (rows of an array), for simulations.
- `tost` / `equivalence`: two one-sided tests against a margin (equivalence, or a null stated as "no effect").
- `holm`: Holm–Bonferroni adjusted p-values over a family of tests.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

NAN = float("nan")


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval. `p` is the two-sided p-value against the null the interval was built
    with (0 unless given); `se` and `df` are the t statistic's, so a rule can test another threshold
    (`core.verdicts`). `method` says how it was made: "t" (runs), "welch" (a difference), "clustered" (over
    target means), "tost90" (an equivalence test's 90% interval), "fixed" (a number with no sampling
    error), or a caller's own name (e.g. "bootstrap"), for which `se`/`df` are unknown."""
    value: float
    lo: float = NAN
    hi: float = NAN
    level: float = 0.95
    n: int = 0  # runs
    p: float = NAN
    method: str = "t"
    se: float = NAN
    df: float = 0

    @property
    def ci(self) -> tuple[float, float]:
        return (self.lo, self.hi)

    def as_dict(self) -> dict:
        """Plain data (floats, ints, str) for a record or a JSON sidecar."""
        d = asdict(self)
        for k in ("value", "lo", "hi", "level", "p", "se", "df"):
            d[k] = float(d[k])
        d["n"] = int(d["n"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Interval":
        """The inverse of `as_dict`; keys that are not fields are ignored, missing ones take defaults."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _tcrit(level: float, df):
    from scipy.stats import t
    return t.ppf(0.5 + level / 2, df)


def t_p(value, se, df, null: float = 0.0, side: str = "two"):
    """p-value of a t statistic (value − null) / se with `df` degrees of freedom. side: "two"; "greater"
    (the alternative is value > null); "less". A zero standard error gives 0 or 1 (or 1 at the null)."""
    from scipy.stats import t
    value, se = np.asarray(value, float), np.asarray(se, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = (value - null) / se
    away = np.where(value > null, np.inf, -np.inf)  # a zero standard error: the statistic is ±∞ (or 0)
    stat = np.where(se == 0, np.where(value == null, 0.0, away), stat)
    if side == "two":
        p = 2 * t.sf(np.abs(stat), df)
        p = np.where((se == 0) & (value == null), 1.0, p)
    elif side == "greater":
        p = t.sf(stat, df)
    elif side == "less":
        p = t.cdf(stat, df)
    else:
        raise ValueError(f"side must be 'two', 'greater' or 'less', not {side!r}")
    p = np.minimum(p, 1.0)
    return float(p) if p.ndim == 0 else p


def t_interval(samples, level: float = 0.95):
    """Row-wise t intervals: samples (..., n) → (mean, lo, hi, se) arrays of shape (...). n ≥ 2."""
    x = np.asarray(samples, float)
    n = x.shape[-1]
    m = x.mean(-1)
    se = x.std(-1, ddof=1) / math.sqrt(n)
    half = _tcrit(level, n - 1) * se
    return m, m - half, m + half, se


def mean_ci(values, level: float = 0.95, null: float = 0.0) -> Interval:
    """Mean of per-run values with a Student-t interval over the runs (n − 1 df) and the two-sided t-test
    p-value against `null`. One run: the mean, no interval (NaN bounds, p NaN). No runs: all NaN."""
    v = np.asarray(values, float).reshape(-1)
    n = len(v)
    if n < 2:
        return Interval(float(v[0]) if n else NAN, level=level, n=n)
    m, lo, hi, se = (float(a) for a in t_interval(v, level))
    return Interval(m, lo, hi, level, n, float(t_p(m, se, n - 1, null)), "t", se, n - 1)


def diff_ci(a, b, level: float = 0.95, null: float = 0.0) -> Interval:
    """mean(a) − mean(b) of two independent samples, Welch's t interval (Welch–Satterthwaite df), and its
    two-sided p-value against `null`. n is len(a) + len(b). Needs ≥ 2 values on each side."""
    a, b = np.asarray(a, float).reshape(-1), np.asarray(b, float).reshape(-1)
    d = float(a.mean() - b.mean()) if len(a) and len(b) else NAN
    if len(a) < 2 or len(b) < 2:
        return Interval(d, level=level, n=len(a) + len(b), method="welch")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se > 0 else len(a) + len(b) - 2
    half = float(_tcrit(level, df)) * se
    return Interval(d, d - half, d + half, level, len(a) + len(b), float(t_p(d, se, df, null)), "welch", se,
                    float(df))


def clustered_ci(per_target: dict, level: float = 0.95, null: float = 0.0) -> Interval:
    """Mean over targets of each target's mean over its runs, with a t interval over the target means
    (targets − 1 df) and the t-test p-value against `null`; method "clustered", n the runs in all. One
    target: the t interval over its runs.

    This describes an average over a suite (the essay's integral over tasks, the generality score). It
    does not decide a claim about every target of a fixed suite: with 2–6 targets a mean can clear a
    threshold that some target misses, and the interval treats the suite as a sample of tasks. Such a
    claim is decided target by target (`core.verdicts.on_every`).

    Why this is valid: the runs of one target share its difficulty (a random effect u_t), so they are not
    independent draws of the integral over tasks. Each target mean is μ + u_t + (the mean of its run
    noise); across targets these are independent, and with equal runs per target identically distributed,
    so a t interval over the T target means is the textbook one-sample interval on T independent values. It
    needs no estimate of how the variance splits between targets and runs: the spread of the target means
    already holds both parts. With unequal runs the target means differ in variance, but their sample
    variance still estimates the average of those variances, which is what the unweighted mean's standard
    error needs; T − 1 df is the fewest the design can claim, so the interval is, if anything, wide. When
    the suite of targets is fixed rather than a sample of tasks, the between-target spread is not sampling
    error at all, and the interval is conservative for that narrower question."""
    groups = {t: np.asarray(v, float).reshape(-1) for t, v in per_target.items()}
    groups = {t: v for t, v in groups.items() if len(v)}
    runs = int(sum(len(v) for v in groups.values()))
    if len(groups) == 1:
        (v,) = groups.values()
        c = mean_ci(v, level, null)
    else:
        c = mean_ci(np.array([v.mean() for v in groups.values()]), level, null)
    return Interval(c.value, c.lo, c.hi, level, runs, c.p, "clustered", c.se, c.df)


def tost(lo90: float, hi90: float, margin: float) -> str:
    """Two one-sided tests at 5 % each, read off the 90 % interval of a difference: "equivalent" when it
    lies inside (−margin, margin) (both one-sided nulls, δ ≤ −margin and δ ≥ margin, are rejected);
    "different" when it lies wholly outside [−margin, margin] (a difference beyond the margin is shown, at
    5 % one-sided); otherwise "undecided" (the data are too few for the margin). NaN bounds: "undecided"."""
    if any(isinstance(x, float) and math.isnan(x) for x in (lo90, hi90)) or lo90 is None or hi90 is None:
        return "undecided"
    if -margin < lo90 and hi90 < margin:
        return "equivalent"
    if lo90 > margin or hi90 < -margin:
        return "different"
    return "undecided"


def equivalence(values, margin: float, alpha: float = 0.05) -> dict:
    """TOST on per-run values (or an `Interval` with its se and df): the 1 − 2α interval, the two one-sided
    p-values (H0: mean ≤ −margin; H0: mean ≥ margin), their maximum `p` (equivalence is shown at level α
    when p < α), `p_beyond` (the one-sided p that the mean lies beyond the margin on its own side: below α
    exactly when `tost` says "different") and `tost`'s reading. `core.verdicts.equivalent` is the rule a
    finding uses; this is its arithmetic."""
    if isinstance(values, Interval):
        m, se, df = values.value, values.se, values.df
    else:
        c = mean_ci(values, 1 - 2 * alpha)
        m, se, df = c.value, c.se, c.df
    if not df or se is None or (isinstance(se, float) and math.isnan(se)):
        return {"value": m, "lo": NAN, "hi": NAN, "p_lower": NAN, "p_upper": NAN, "p": NAN, "p_beyond": NAN,
                "se": NAN, "df": 0, "margin": margin, "level": 1 - 2 * alpha, "verdict": "undecided"}
    half = float(_tcrit(1 - 2 * alpha, df)) * se
    p_lower = float(t_p(m, se, df, -margin, "greater"))  # rejects mean ≤ −margin
    p_upper = float(t_p(m, se, df, margin, "less"))  # rejects mean ≥ margin
    # the other question: is the difference beyond the margin, on the side where the mean lies?
    p_beyond = float(t_p(m, se, df, margin, "greater") if m > 0 else t_p(m, se, df, -margin, "less"))
    return {"value": m, "lo": m - half, "hi": m + half, "p_lower": p_lower, "p_upper": p_upper,
            "p": max(p_lower, p_upper), "p_beyond": p_beyond, "se": se, "df": df, "margin": margin,
            "level": 1 - 2 * alpha, "verdict": tost(m - half, m + half, margin)}


def holm(pvalues: dict) -> dict:
    """Holm–Bonferroni adjusted p-values (Holm 1979) of a family {name: p}: sorted ascending, the i-th
    smallest (from 1) is multiplied by m − i + 1, then made non-decreasing and capped at 1. Rejecting every
    test whose adjusted p is below α controls the family-wise error at α. A None or NaN p is left out of the
    family and comes back as None."""
    known = {k: float(p) for k, p in pvalues.items() if p is not None and not math.isnan(float(p))}
    order = sorted(known, key=known.get)
    m, out, running = len(order), {}, 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * known[k]))
        out[k] = running
    return {k: out.get(k) for k in pvalues}
