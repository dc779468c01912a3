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


# One row per event, columns split on "|": year | name | kind | programmable | stored program | citation
# key | primary or secondary source | note. "–" marks a machine column that does not apply.
_TABLE = """
1931 | Differential analyzer    | machine | no  | no  | bush1931differential   | primary   | mechanical analog integrator for differential equations; a new problem meant reconnecting shafts
1936 | Universal Turing machine | theory  | –   | –   | turing1936computable   | primary   | one machine can imitate any other if the other's description is written on its tape
1940 | Complex Number Computer  | machine | no  | no  | stibitz1940complex     | primary   | Bell Labs relay calculator for complex arithmetic, used remotely by teletype
1942 | Atanasoff–Berry Computer | machine | no  | no  | atanasoff1942abc       | primary   | electronic, but built for one job: solving systems of linear equations
1944 | Harvard Mark I           | machine | yes | no  | aiken1944mark          | primary   | relay calculator that followed a sequence of instructions punched on paper tape
1945 | EDVAC report             | design  | yes | yes | vonneumann1945edvac    | primary   | the design in which instructions live in the same memory as the numbers they act on
1948 | Manchester Baby          | machine | yes | yes | williams1948electronic | primary   | the first program held in electronic memory ran on it (June 1948)
1964 | IBM System/360           | machine | yes | yes | amdahl1964architecture | primary   | one instruction-set architecture across a family of machines of different size and price
1969 | IBM unbundles software   | market  | –   | –   | humphrey2002software   | secondary | software and services priced apart from the hardware: a separate software market
"""
_FLAG = {"yes": True, "no": False, "–": None}


def _events(text: str) -> tuple[Event, ...]:
    rows = [[cell.strip() for cell in line.split("|")] for line in text.strip().splitlines()]
    return tuple(Event(int(year), name, kind, _FLAG[prog], _FLAG[stored], key, source == "primary", note)
                 for year, name, kind, prog, stored, key, source, note in rows)


TIMELINE: tuple[Event, ...] = _events(_TABLE)


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


def bib_years(path) -> dict[str, int]:
    """{key: year (0 if none)} of a BibTeX file, read with pybtex: the parser sphinxcontrib-bibtex renders
    the book's bibliography with, so the table is checked against the entries a reader sees."""
    from pybtex.database import parse_file
    return {key: int(m[0]) if (m := re.match(r"\d{4}", entry.fields.get("year", "").strip())) else 0
            for key, entry in parse_file(str(path), bib_format="bibtex").entries.items()}
