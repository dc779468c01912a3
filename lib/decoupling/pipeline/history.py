"""The history the first chapter draws (book/computers.md): the machines the essay names, as a cited table.

Dates are facts, so each row carries the key of its source in book/references.bib. A *primary* source was
written when the thing happened (the machine's own paper or report), so its year must equal the row's
year; a *secondary* source is a later account and can only be later. `check_table` enforces both, and
tests/test_computers.py checks that every key exists in the bibliography.

Columns: `programmable` — can the machine run a different computation without being rebuilt or rewired
(a sequence read from tape or memory counts); `stored_program` — are the instructions held in the same
writable memory as the data. Both are None for rows that are not machines (a theory, a pricing decision).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Event:
    year: int
    name: str
    kind: str  # "machine", "design" (a report, not a built machine), "theory" or "market"
    programmable: bool | None
    stored_program: bool | None
    key: str  # citation key in book/references.bib
    primary: bool  # the source dates from the event itself (its bib year equals `year`)
    note: str  # what it was, in a few of our own words


TIMELINE: tuple[Event, ...] = (
    Event(1931, "Differential analyzer", "machine", False, False, "bush1931differential", True,
          "mechanical analog integrator for differential equations; a new problem meant reconnecting shafts"),
    Event(1936, "Universal Turing machine", "theory", None, None, "turing1936computable", True,
          "one machine can imitate any other if the other's description is written on its tape"),
    Event(1940, "Complex Number Computer", "machine", False, False, "stibitz1940complex", True,
          "Bell Labs relay calculator for complex arithmetic, used remotely by teletype"),
    Event(1942, "Atanasoff–Berry Computer", "machine", False, False, "atanasoff1942abc", True,
          "electronic, but built for one job: solving systems of linear equations"),
    Event(1944, "Harvard Mark I", "machine", True, False, "aiken1944mark", True,
          "relay calculator that followed a sequence of instructions punched on paper tape"),
    Event(1945, "EDVAC report", "design", True, True, "vonneumann1945edvac", True,
          "the design in which instructions live in the same memory as the numbers they act on"),
    Event(1948, "Manchester Baby", "machine", True, True, "williams1948electronic", True,
          "the first program held in electronic memory ran on it (June 1948)"),
    Event(1964, "IBM System/360", "machine", True, True, "amdahl1964architecture", True,
          "one instruction-set architecture across a family of machines of different size and price"),
    Event(1969, "IBM unbundles software", "market", None, None, "humphrey2002software", False,
          "software and services priced apart from the hardware: a separate software market"),
)


def table() -> list[dict]:
    """The timeline as JSON-ready rows, in year order."""
    return [asdict(e) for e in TIMELINE]


def check_table(bib_years: dict[str, int] | None = None) -> list[str]:
    """Problems with the table (empty when it is sound): years strictly increasing, no duplicate names,
    the machine columns set exactly for machines and designs, and — given {bib key: year} — every key
    cited, primary sources dated the year of the event, secondary ones later."""
    out = []
    years = [e.year for e in TIMELINE]
    if years != sorted(years) or len(set(years)) != len(years):
        out.append(f"years are not strictly increasing: {years}")
    names = [e.name for e in TIMELINE]
    if len(set(names)) != len(names):
        out.append("duplicate names")
    for e in TIMELINE:
        is_computer = e.kind in ("machine", "design")
        if is_computer != (e.programmable is not None and e.stored_program is not None):
            out.append(f"{e.name}: programmable/stored_program must be set exactly for machines and designs")
        if e.stored_program and not e.programmable:
            out.append(f"{e.name}: a stored-program machine is programmable")
        if bib_years is None:
            continue
        if e.key not in bib_years:
            out.append(f"{e.name}: citation key {e.key!r} is not in references.bib")
        elif e.primary and bib_years[e.key] != e.year:
            out.append(f"{e.name}: primary source {e.key} is dated {bib_years[e.key]}, not {e.year}")
        elif not e.primary and bib_years[e.key] < e.year:
            out.append(f"{e.name}: secondary source {e.key} ({bib_years[e.key]}) predates the event")
    return out


_ENTRY = re.compile(r"^@\w+\s*\{\s*([^,\s]+)\s*,(.*?)^\}", re.M | re.S)
_YEAR = re.compile(r"\byear\s*=\s*[{\"]?\s*(\d{4})", re.I)


def bib_years(path) -> dict[str, int]:
    """{key: year (0 if none)} of a BibTeX file. A two-line reader rather than pybtex, which the GPU machine
    lacks; tests/test_computers.py checks it agrees with pybtex on the book's bibliography."""
    text = Path(path).read_text(encoding="utf-8")
    return {m[1]: int(y[1]) if (y := _YEAR.search(m[2])) else 0 for m in _ENTRY.finditer(text)}
