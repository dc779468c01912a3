"""Chapters decide nothing: no page's code cell holds a verdict rule, interval arithmetic or a p-value of
its own. The library decides (`core.verdicts`, each chapter's summary module) and a page records the
result with `ch.add(...)`. A failure names the page, the line and what it found there. Below: the page
helpers every page prints with (`pipeline.page`)."""
import ast
import io
import math
import re
import tokenize
from pathlib import Path

import pytest

from decoupling.core import intervals
from decoupling.pipeline import page

BOOK = Path(__file__).resolve().parents[1] / "book"
PAGES = sorted(p for p in BOOK.glob("*.md") if "```{code-cell}" in p.read_text())

# what a page must not write: (what it is, regular expression)
FORBIDDEN = [
    ("a verdict rule", r"""["']holds["']\s+if\b"""),
    ("a verdict rule", r"""["']does not hold["']"""),
    ("a verdict rule", r"\bverdict_from\w*"),
    ("interval arithmetic", r"\bmean_ci\("),
    ("interval arithmetic", r"\bdiff_ci\("),
    ("interval arithmetic", r"\bclustered_ci\("),
    ("an equivalence test", r"\bequivalence\("),
    ("interval arithmetic", r"\bt_interval\("),
    ("a quantile", r"\.ppf\("),
    ("a quantile", r"\bpercentile\("),
    ("a p-value recorded by hand", r"\brecord_p\("),
    ("a finding decided on the page (use ch.add)", r"\bch\.finding\("),
    ("a multiple-test adjustment", r"\bholm\("),
    # the same decisions made with the library's rules on the page instead of in the summary module
    ("a verdict rule (belongs in the summary module)",
     r"\b(verdicts\.(above|below|equivalent)|on_every|all_of|Decision|Finding)\("),
]


def code_cells(text: str):
    """(first line number, source) of every MyST code cell; option lines (`:tags:`, a `---` YAML block)
    and IPython magics are blanked so that line numbers stay those of the page."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("```{code-cell}"):
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            yield start + 1, "\n".join(_blank_options(body))
        i += 1


def _blank_options(body: list[str]) -> list[str]:
    out, k = list(body), 0
    if out and out[0].strip() == "---":  # a YAML options block
        k = 1
        while k < len(out) and out[k].strip() != "---":
            k += 1
        k += 1
    else:
        while k < len(out) and out[k].startswith(":"):
            k += 1
    out[:k] = [""] * min(k, len(out))
    return ["" if ln.lstrip().startswith(("%", "!")) else ln for ln in out]


def _without_comments(src: str) -> list[str]:
    """The cell's lines with comments removed (a rule named in a comment decides nothing)."""
    lines = src.split("\n")
    try:
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type == tokenize.COMMENT:
                (row, col), _ = tok.start, tok.end
                lines[row - 1] = lines[row - 1][:col]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return lines


def _compares(node) -> bool:
    return any(isinstance(n, (ast.Compare, ast.BoolOp)) or (isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not))
               for n in ast.walk(node))


def _checks_with_comparisons(src: str):
    """Line numbers (in the cell) of `ch.check(..., passed=<a comparison>)` or `verdicts.Check(...)` built
    the same way: a check decided on the page."""
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return []
    out = []
    for node in ast.walk(tree):
        name = node.func.attr if isinstance(getattr(node, "func", None), ast.Attribute) else \
            getattr(getattr(node, "func", None), "id", "")
        if isinstance(node, ast.Call) and name in ("check", "Check"):
            for kw in node.keywords:
                if kw.arg == "passed" and _compares(kw.value):
                    out.append(kw.value.lineno)
    return out


def violations(path: Path) -> list[str]:
    out = []
    for first, src in code_cells(path.read_text()):
        for k, line in enumerate(_without_comments(src)):
            whats = dict.fromkeys(what for what, pattern in FORBIDDEN if re.search(pattern, line))
            out += [f"{path.name}:{first + k}: {what}: {line.strip()}" for what in whats]
        for k in _checks_with_comparisons(src):
            out.append(f"{path.name}:{first + k - 1}: a check decided on the page (passed=<comparison>); "
                       f"build a verdicts.Check in the summary module and ch.add it")
    return out


@pytest.mark.parametrize("path", PAGES, ids=[p.stem for p in PAGES])
def test_page_decides_nothing(path):
    found = violations(path)
    assert not found, f"{path.name} decides on the page ({len(found)}):\n" + "\n".join(found)


def test_the_scan_finds_what_it_must(tmp_path):
    """The scanner on a page with known contents: each forbidden thing is found at its line, comments and
    cell options are not, and ch.add / a check whose `passed` is a library value pass."""
    md = tmp_path / "p.md"
    md.write_text("\n".join([
        "# Title",                                               # 1
        "```{code-cell} ipython3",                               # 2
        ":tags: [hide-input]",                                   # 3
        "lo = mean_ci(v).lo  # the interval",                    # 4
        "v = 'holds' if lo > 0 else 'inconclusive'",             # 5
        "ch.check('c',",                                         # 6
        "         passed=x >= 0.95, value=x)",                   # 7
        "ch.check('d', passed=S.checks['d'].passed)",            # 8
        "ch.add(S.findings['f'])  # not verdict_from_ci(...)",   # 9
        "```",                                                   # 10
        "prose with ch.finding( in it",                          # 11
        "```{code-cell} ipython3",                               # 12
        "%%gpu_part",                                            # 13
        "ch.finding('g', verdict=claims.verdict_from_ci(ci, 0))",  # 14
        "ch.add(verdicts.Check('e', 'must', passed=not bad))",   # 15
        "ch.add(Finding('h', 'e', 'c', verdicts.above(iv, 0)))",  # 16
        "```",
    ]))
    found = violations(md)
    at = sorted(int(f.split(":")[1]) for f in found)
    assert at == [4, 5, 7, 14, 14, 15, 16], found


# ------------------------------------------------------------------------------------ page helpers
def test_table_is_the_pages_markdown():
    assert page.table_md(["a", "b"], [[1, "x|y"], [2.5, None]]) == (
        "| a | b |\n|---|---|\n| 1 | x\\|y |\n| 2.5 | None |")
    assert page.table(["a"], [[1]]).data == page.table_md(["a"], [[1]])


def test_fmt_interval():
    iv = intervals.Interval(0.12, 0.05, 0.19)
    assert page.fmt_interval(iv) == "+0.120 [+0.050, +0.190]"
    assert page.fmt_interval(iv, digits=2, signed=False) == "0.12 [0.05, 0.19]"
    assert page.fmt_interval(intervals.mean_ci([0.3])) == "+0.300"  # one run: no interval
    assert page.fmt_interval(None) == "–"
    assert page.fmt_interval({"mean": 0.1, "ci": [0.0, 0.2]}, 1) == "+0.1 [+0.0, +0.2]"
    assert page.fmt_interval({"value": -0.1, "lo": -0.2, "hi": 0.0}, 1) == "-0.1 [-0.2, +0.0]"
    assert page.fmt_bounds(iv, 2) == "[+0.05, +0.19]"
    assert page.fmt_range((0.912, (0.88, 0.944))) == "0.912 (0.880 … 0.944)"


def test_fmt_p_and_sci():
    assert page.fmt_p(0.01234) == "0.012" and page.fmt_p(0.0002) == "< 0.001" and page.fmt_p(None) == "–"
    assert page.fmt_p(math.nan) == "–"
    assert page.sci(3.14e23) == "3.1 × 10²³" and page.sci(2.5e-6) == "2.5 × 10⁻⁶" and page.sci(12.0) == "12"
