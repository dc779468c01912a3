"""What the pages print, written once: Markdown tables and intervals as text.

    from decoupling.pipeline.page import table, fmt_interval
    table(["target", "ΔL, bits/label [95% CI]"], [[t, fmt_interval(iv)] for t, iv in S.per_target.items()])

Pages format numbers here and decide nothing here (`core.verdicts` decides). Each helper is a separate
function; add one beside the others rather than changing what an existing one prints.
"""
from __future__ import annotations

import math

from decoupling.core.intervals import Interval

DASH = "–"


# ------------------------------------------------------------------------------------------- tables
def table_md(header, rows) -> str:
    """A Markdown table of `header` and `rows` (any values, printed with str); a `|` inside a cell is
    escaped so that it stays one cell (I(Y;T|X) holds one)."""
    cell = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(out)


def table(header, rows):
    """`table_md(header, rows)` as an IPython Markdown object: the last line of a cell shows it, elsewhere
    `display(table(...))`."""
    from IPython.display import Markdown
    return Markdown(table_md(header, rows))


# ---------------------------------------------------------------------------------------- intervals
def as_interval(x) -> Interval | None:
    """An Interval from what summaries return: an Interval, `Interval.as_dict()`, {"value", "lo", "hi"},
    {"mean" | "score" | "value", "ci": [lo, hi]}, or (value, (lo, hi)). None stays None."""
    if x is None or isinstance(x, Interval):
        return x
    if isinstance(x, dict):
        value = next((x[k] for k in ("value", "mean", "score") if k in x), math.nan)
        lo, hi = x["ci"] if x.get("ci") is not None else (x.get("lo", math.nan), x.get("hi", math.nan))
        return Interval(float(value), float(lo), float(hi), float(x.get("level", 0.95)))
    value, (lo, hi) = x
    return Interval(float(value), float(lo), float(hi))


def _num(v: float, digits: int, signed: bool) -> str:
    return DASH if v is None or math.isnan(v) else f"{v:{'+' if signed else ''}.{digits}f}"


def _fmt(iv, digits: int, signed: bool, bounds: str) -> str:
    """The value, then its bounds in `bounds` ("[{lo}, {hi}]" or "({lo} … {hi})"); the value alone where
    there is no interval (one run), a dash for nothing."""
    iv = as_interval(iv)
    if iv is None or math.isnan(iv.value):
        return DASH
    v = _num(iv.value, digits, signed)
    if math.isnan(iv.lo) or math.isnan(iv.hi):
        return v
    return f"{v} " + bounds.format(lo=_num(iv.lo, digits, signed), hi=_num(iv.hi, digits, signed))


def fmt_interval(iv, digits: int = 3, signed: bool = True) -> str:
    """"+0.120 [+0.050, +0.190]": the value and its interval to `digits` decimals (signed=False: no plus
    sign); the value alone where there is no interval (one run), a dash for nothing."""
    return _fmt(iv, digits, signed, "[{lo}, {hi}]")


def fmt_bounds(iv, digits: int = 3, signed: bool = True) -> str:
    """"[+0.050, +0.190]": the interval alone, or a dash."""
    iv = as_interval(iv)
    if iv is None or math.isnan(iv.lo) or math.isnan(iv.hi):
        return DASH
    return f"[{_num(iv.lo, digits, signed)}, {_num(iv.hi, digits, signed)}]"


def fmt_range(iv, digits: int = 3, signed: bool = False) -> str:
    """"0.912 (0.880 … 0.944)": the value with its interval in parentheses, as sentences quote it."""
    return _fmt(iv, digits, signed, "({lo} … {hi})")


def fmt_p(p, digits: int = 2) -> str:
    """A p-value to `digits` significant digits ("0.012"), "< 0.001" below that, a dash for none."""
    if p is None or math.isnan(p):
        return DASH
    return "< 0.001" if p < 0.001 else f"{p:.{digits}g}"


# ------------------------------------------------------------------------------------------- numbers
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def sci(x: float, digits: int = 2) -> str:
    """"3.1 × 10²³": `x` with `digits` significant digits in scientific notation (plain below 10⁴)."""
    if x is None or not math.isfinite(x):
        return DASH
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.{digits}g}"
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return f"{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)}"


# -------------------------------------------------------- estimates with infinite ends; verdicts in words
# (added for book/computers.md: a break-even count T* can be ∞, and the page's summary names each
# finding's reading and the target that decided it)
def sci_inf(x: float, digits: int = 2) -> str:
    """`sci(x)`, but "∞" for +∞ (a break-even count that is never reached), a dash for NaN or None."""
    return "∞" if x is not None and x == math.inf else sci(x, digits)


def sci_interval(iv, digits: int = 2) -> str:
    """"1.2 × 10⁴ [3.1 × 10³, ∞]": an estimate and its interval in scientific notation, either end possibly
    infinite; the value alone where there is no interval, a dash for nothing."""
    iv = as_interval(iv)
    if iv is None or math.isnan(iv.value):
        return DASH
    v = sci_inf(iv.value, digits)
    if math.isnan(iv.lo) or math.isnan(iv.hi):
        return v
    return f"{v} [{sci_inf(iv.lo, digits)}, {sci_inf(iv.hi, digits)}]"


READINGS = {"holds": "agrees with the essay", "does not hold": "contradicts the essay",
            "inconclusive": "neither confirms nor refutes the essay"}


def essay_reading(finding, profile: str) -> str:
    """What a `verdicts.Finding`'s verdict says about the essay at `profile`, or that the profile cannot
    decide it (an illustration only)."""
    if profile not in finding.applies_to:
        return f"decided at `{'`, `'.join(finding.applies_to)}`; at `{profile}` an illustration only"
    return READINGS[finding.decision.verdict]


def decided_by(finding) -> str:
    """The target of a per-target decision (`verdicts.on_every`) whose interval the finding shows."""
    parts = finding.decision.parts or {}
    return next((k for k, iv in parts.items() if iv is finding.decision.interval), "–")


# ------------------------------------------------------------------- what a profile only illustrates
# (added for book/generality.md: a sentence quoting a number that another profile decides says so)
def illustration(profile: str, profiles=("full",)) -> str:
    """" (an illustration at `smoke`: decided at full)" where `profile` is not among the `profiles` that
    decide a number, "" where it is."""
    return "" if profile in profiles else f" (an illustration at `{profile}`: decided at {', '.join(profiles)})"


# ------------------------------------------------------------------------------------------- claims
def claims_table(claims, profile: str):
    """The claims a chapter recorded so far (`Chapter.claims`) as a table: name, kind, measured value, its
    interval with the level, and the verdict at `profile` ("recorded only" where the profile does not
    decide it). Used by book/tyranny.md's closing section."""
    from decoupling.pipeline.claims import fmt
    rows = []
    for c in claims:
        ci = f"{getattr(c, 'level', None) or 0.95:.0%} [{c.ci[0]:.3g}, {c.ci[1]:.3g}]" if c.ci else ""
        rows.append((f"`{c.name}`", c.kind, fmt(c.value), ci, c.verdict + ("" if c.enforced else " (recorded only)")))
    return table(["claim", "kind", "measured", "CI", f"verdict at {profile}"], rows)


# ------------------------------------------------------------------------------------------- figures
def plain_log_y(ax) -> None:
    """A log-scaled y axis labelled with plain numbers (2.4, not 2.4×10⁰); minor ticks get labels only
    when the axis spans less than a decade. Call after plotting. Used by book/tyranny.md."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter
    lo, hi = ax.get_ylim()
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
    if hi / lo < 10:
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%.3g"))
    else:
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_minor_formatter(NullFormatter())


def errorbar(ax, x, ivs, **kw):
    """Intervals drawn as their values with error bars (matplotlib's `errorbar`, `kw` passed on); an
    interval without bounds (one run) gets no bar. Used by book/memory.md and book/tyranny.md."""
    import numpy as np
    ivs = [as_interval(iv) for iv in ivs]
    v = np.array([iv.value for iv in ivs])
    below = np.nan_to_num(v - np.array([iv.lo for iv in ivs]))
    above = np.nan_to_num(np.array([iv.hi for iv in ivs]) - v)
    return ax.errorbar(x, v, yerr=[below, above], **kw)


# ------------------------------------------------------------------------------ hyperparameter grids
def fmt_grid_use(use) -> str:
    """A `core.grids.GridUse` on one line: each grid value with how often it was chosen, the most chosen in
    bold, and "(edge)" where an edge of the grid won ("1: 52 · **10: 98** (edge)"). Used by the grid
    tables of experiments.zoo_summary and experiments.generality_summary."""
    def cell(v, k):
        text = f"{v:g}: {k}" if isinstance(v, (int, float)) else f"{v}: {k}"
        return f"**{text}**" if v == use.top else text
    return " · ".join(cell(v, k) for v, k in zip(use.grid, use.counts)) + (" (edge)" if use.edge_wins else "")
