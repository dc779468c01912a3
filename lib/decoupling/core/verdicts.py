"""Where every finding and check the book shows is decided, and nowhere else.

A rule takes `core.intervals.Interval`s and returns a `Decision`: a verdict ("holds", "does not hold",
"inconclusive"), the p-value of the test behind it, scaled so that p < alpha exactly when the verdict is
"holds" or "does not hold" (the scorecard's Holm adjustment reads it), the interval shown beside it and a
line saying what was tested.

- `above` / `below`: the 95% interval against a threshold; p is the two-sided t-test against the threshold.
- `equivalent`: two one-sided tests on the 90% interval against ±margin (a control, or an essay's "no
  difference").
- `on_every` / `all_of`: a claim about every target of a fixed suite (or every part of a claim), decided
  part by part (an intersection-union test: no correction is owed, the claim holds only if each part does).

A chapter wraps a decision in a `Finding` (the essay's hypothesis) or states a `Check` (what must hold if
the code is right) and records it with `Chapter.add`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from decoupling.core.intervals import Interval, equivalence, t_p

ALPHA = 0.05
HOLDS, FAILS, OPEN = "holds", "does not hold", "inconclusive"


@dataclass(frozen=True)
class Decision:
    """What a rule decided: `p` < alpha exactly when `verdict` is "holds" or "does not hold"."""
    verdict: str
    p: float
    interval: Interval | None
    parts: dict = field(default_factory=dict)  # {target name: Interval} for per-part rules, else {}
    rule: str = ""


@dataclass(frozen=True)
class Finding:
    """One of the essay's hypotheses, decided: its prediction (`essay`), the observation that makes it hold
    (`criterion`, written before the value), and the decision."""
    name: str
    essay: str
    criterion: str
    decision: Decision
    value: object = None  # what the box shows; defaults to the decision's interval's value
    anchor: str = ""
    applies_to: tuple = ("smoke", "full")
    detail: str = ""

    def __post_init__(self):
        if self.value is None and self.decision.interval is not None:
            object.__setattr__(self, "value", self.decision.interval.value)


@dataclass(frozen=True)
class Check:
    """What must hold if the code is right; `passed` is computed by a library function, not by a page."""
    name: str
    statement: str
    passed: bool
    value: object = None
    interval: Interval | None = None
    applies_to: tuple = ("smoke", "full")
    detail: str = ""


def _finite(*xs) -> bool:
    return all(x is not None and math.isfinite(float(x)) for x in xs)


def _p_against(iv: Interval, threshold: float) -> float:
    """Two-sided p of `iv`'s value against `threshold`, below 1 − level exactly when the interval excludes it.
    A t interval (known se and df) gives the t-test. Another interval (a bootstrap's, say) is inverted side
    by side as a normal one: the half-width toward the threshold over the normal quantile is the standard
    error on that side. No interval: p = 1 (nothing can be rejected)."""
    from scipy.stats import norm
    if _finite(iv.value, iv.se) and iv.df and iv.df > 0:
        return float(t_p(iv.value, iv.se, iv.df, threshold))
    if not _finite(iv.value, iv.lo, iv.hi):
        return 1.0
    v = _centre(iv)
    half = (v - iv.lo) if threshold < v else (iv.hi - v)
    if half <= 0:  # no spread toward the threshold (a "fixed" number, or a value at the interval's end)
        return 1.0 if threshold == v else 0.0
    z = norm.ppf(0.5 + iv.level / 2)
    return float(min(1.0, 2 * norm.sf(abs(v - threshold) / (half / z))))


def _centre(iv: Interval) -> float:
    """The value, moved into the interval where a percentile bootstrap left it outside, so that the
    interval alone says on which side of a threshold the estimate lies."""
    return min(max(iv.value, iv.lo), iv.hi) if _finite(iv.lo, iv.hi) else iv.value


def _at_level(iv: Interval, level: float) -> Interval:
    """`iv` at another level, from its se and df (only a t interval can be moved)."""
    if math.isclose(iv.level, level):
        return iv
    if not (_finite(iv.se) and iv.df and iv.df > 0):
        raise ValueError(f"a {iv.level:.0%} {iv.method} interval with no se/df cannot be read at {level:.0%}")
    from scipy.stats import t
    half = float(t.ppf(0.5 + level / 2, iv.df)) * iv.se
    return Interval(iv.value, iv.value - half, iv.value + half, level, iv.n, iv.p, iv.method, iv.se, iv.df)


def _side(iv: Interval, threshold: float, predicted: str, alpha: float) -> Decision:
    if predicted not in (">", "<"):
        raise ValueError(f"predicted must be '>' or '<', not {predicted!r}")
    iv = _at_level(iv, 1 - alpha)
    p = _p_against(iv, threshold)
    rule = f"the {iv.level:.0%} CI lies {'above' if predicted == '>' else 'below'} {threshold:g}"
    if not p < alpha:
        return Decision(OPEN, p, iv, {}, rule)
    right = _centre(iv) > threshold if predicted == ">" else _centre(iv) < threshold
    return Decision(HOLDS if right else FAILS, p, iv, {}, rule)


def above(iv: Interval, threshold: float, alpha: float = ALPHA) -> Decision:
    """Holds if the 95% CI lies above `threshold`, does not hold if it lies wholly below, else
    inconclusive; p is the two-sided test against the threshold."""
    return _side(iv, threshold, ">", alpha)


def below(iv: Interval, threshold: float, alpha: float = ALPHA) -> Decision:
    """Holds if the 95% CI lies below `threshold`, does not hold if it lies wholly above."""
    return _side(iv, threshold, "<", alpha)


def equivalent(iv_or_values, margin: float, alpha: float = ALPHA) -> Decision:
    """Two one-sided tests (TOST) at alpha each, on per-run values or an Interval with se and df: holds when
    the 1 − 2·alpha (90%) interval lies inside (−margin, margin), with p the larger one-sided p; does not
    hold when it lies wholly outside ±margin, with p the one-sided p of a difference beyond the margin;
    otherwise inconclusive, with the TOST p (≥ alpha)."""
    if isinstance(iv_or_values, Interval) and not (_finite(iv_or_values.se) and iv_or_values.df):
        raise ValueError(f"equivalence needs runs or a t interval (se and df), not a {iv_or_values.method} one")
    eq = equivalence(iv_or_values, margin, alpha)
    n = iv_or_values.n if isinstance(iv_or_values, Interval) else int(np.size(iv_or_values))
    verdict = {"equivalent": HOLDS, "different": FAILS}.get(eq["verdict"], OPEN)
    p = eq["p_beyond"] if verdict == FAILS else eq["p"]
    p = 1.0 if not _finite(p) else float(p)
    iv = Interval(eq["value"], eq["lo"], eq["hi"], 1 - 2 * alpha, n, p, "tost90", eq["se"], eq["df"])
    return Decision(verdict, p, iv, {}, f"the {1 - 2 * alpha:.0%} CI lies inside ±{margin:g}")


def all_of(parts: dict[str, Decision], rule: str = "") -> Decision:
    """A claim that holds only if every part holds (intersection-union): holds when every part holds, with
    p the largest part's p; does not hold when some part does not, with p the smallest p among those;
    otherwise inconclusive, with the largest p (≥ alpha, since some part is inconclusive). The interval
    shown is the part that decides: the weakest when it holds or is open, the clearest failure otherwise."""
    if not parts:
        return Decision(OPEN, 1.0, None, {}, rule or "no parts")
    verdicts = [d.verdict for d in parts.values()]
    if all(v == HOLDS for v in verdicts):
        key = max(parts, key=lambda k: parts[k].p)
        verdict = HOLDS
    elif FAILS in verdicts:
        key = min((k for k in parts if parts[k].verdict == FAILS), key=lambda k: parts[k].p)
        verdict = FAILS
    else:
        key = max(parts, key=lambda k: parts[k].p)
        verdict = OPEN
    rule = rule or " and ".join(f"{k}: {d.rule}" for k, d in parts.items())
    shown = {k: d.interval for k, d in parts.items()}
    return Decision(verdict, parts[key].p, parts[key].interval, shown, f"{rule} (decided by {key})")


def on_every(parts: dict[str, Interval], threshold: float, predicted: str = ">",
             alpha: float = ALPHA) -> Decision:
    """A claim about every target of a fixed suite, decided target by target (`all_of` over `above` or
    `below` each target's interval). Replaces a t interval over 2–6 target means as a decision rule."""
    rule = above if predicted == ">" else below
    decided = {k: rule(iv, threshold, alpha) for k, iv in parts.items()}
    side = "above" if predicted == ">" else "below"
    return all_of(decided, f"on every one of {len(parts)} targets the 95% CI lies {side} {threshold:g}")

