"""What a page of the book must not show a reader: the build's machinery. Shared by the browser test (on
each page's rendered DOM) and the fixture-book test (on its HTML), so both hold pages to the same rule.

Jupyter Book (MyST-NB) renders a code cell as `div.cell` with a class `tag_<tag>` per cell tag, its
outputs inside `div.cell_output`: a stream on stderr as `div.output.stderr`, an error as
`div.output.traceback`, a plain-text result (`repr`) as `.output.text_plain`, stdout as `.output.stream`.
"""
from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

from bs4 import BeautifulSoup

LIB = Path(__file__).resolve().parents[1] / "lib" / "decoupling"
PARAMETER_TAGS = ("parameters", "injected-parameters")
# Reprs of objects that are not ours either: matplotlib's return values, IPython display objects, and
# the default repr of any object.
FOREIGN_REPRS = (r"<[\w.]+ object at 0x[0-9a-fA-F]+>", r"<Figure size \d", r"<matplotlib\.", r"\[<matplotlib\.",
                 r"<IPython\.core\.display\.")


@functools.lru_cache(maxsize=None)
def _library_repr() -> re.Pattern:
    """`Name(field=` for every class the library defines (dataclass and namedtuple reprs)."""
    names = {n.name for f in LIB.rglob("*.py") for n in ast.walk(ast.parse(f.read_text()))
             if isinstance(n, ast.ClassDef)}
    return re.compile(r"\b(?:" + "|".join(sorted(names)) + r")\(\w+=")


def machinery(html: str) -> list[str]:
    """What the page shows that a reader should not see, one short description each (empty: clean)."""
    soup = BeautifulSoup(html, "html.parser")
    found = []
    for tag in PARAMETER_TAGS:
        if soup.select(f"div.cell.tag_{tag}"):
            found.append(f"the {tag} cell is on the page")
    for code in soup.select("div.cell_input"):
        if re.match(r"\s*# Parameters\b", code.get_text()):
            found.append("papermill's injected parameters cell is on the page")
    for block in soup.select("div.output.stderr, .cell_output .stderr"):
        found.append(f"a stderr block: {_first_line(block)}")
    for block in soup.select("div.output.traceback"):
        found.append(f"an error output: {_first_line(block)}")
    for block in soup.select(".cell_output .output.text_plain, .cell_output .output.stream"):
        text = block.get_text()
        for rx in (_library_repr().pattern, *FOREIGN_REPRS):
            m = re.search(rx, text)
            if m:
                found.append(f"a Python repr: {text[max(0, m.start() - 20):m.start() + 80].strip()!r}")
                break
    for code in soup(["script", "style", "noscript"]):  # not shown: the page's own JavaScript and CSS
        code.decompose()
    if "Traceback" in (soup.body or soup).get_text():
        found.append("the word 'Traceback'")
    return list(dict.fromkeys(found))


def _first_line(el) -> str:
    lines = [line for line in el.get_text().splitlines() if line.strip()]
    return lines[0].strip()[:160] if lines else ""
