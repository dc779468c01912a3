"""Every chapter's runs are declared by the library (pipeline/plan.py), and the pages read exactly those."""
import json
import re

import pytest

from conftest import ROOT
from decoupling.pipeline import plan, store

PAGES = {c: ROOT / "book" / f"{c}.md" for c in plan.CHAPTERS}


@pytest.mark.parametrize("profile", ["smoke", "full"])
@pytest.mark.parametrize("chapter", plan.CHAPTERS)
def test_every_chapter_declares_its_runs_and_bodies_come_first(chapter, profile):
    runs = plan.runs(chapter, profile)
    assert any(not r.artifact for r in runs)
    seen = set()
    for r in runs:
        for body in r.needs:
            assert body.artifact and body in seen, f"{r.label} reads {body.label} before it is declared"
        seen.add(r)


def _asked(page: str) -> set[str]:
    return set(re.findall(r'ch\.(?:result|results|declared)\("([^"]+)"\)', page))


@pytest.mark.parametrize("chapter", plan.CHAPTERS)
def test_pages_ask_for_declared_runs_only(chapter):
    page = PAGES[chapter].read_text()
    assert "ch.run(" not in page and "ch.config(" not in page, \
        f"{chapter}.md builds a run of its own: declare it in pipeline/plan.py and read it with ch.result"
    groups = {r.group for p in ("smoke", "full") for r in plan.runs(chapter, p)}
    assert _asked(page) <= groups, _asked(page) - groups


def test_the_book_computes_each_shared_run_once():
    runs = plan.book("smoke")
    keys = [(r.artifact, store.keys(r.fn, r.cfg, r.profile)[0]) for r in runs]
    assert len(keys) == len(set(keys))
    # the leaderboard and the generality chapter read the same zoo
    assert {r.cfg for r in plan.runs("leaderboard", "smoke")} <= {r.cfg for r in plan.runs("generality", "smoke")}


@pytest.mark.slow
@pytest.mark.parametrize("chapter", plan.CHAPTERS)
def test_a_smoke_page_read_exactly_its_declared_records_and_computed_none(smoke_book, chapter):
    """smoke_book runs `decoupling compute` first and the rebuild with --draw-only: every record the page
    read came from the store, and they are exactly the ones the chapter declares."""
    rec = json.loads((smoke_book.build / "records" / f"{chapter}.json").read_text())
    read = {r["logical"] for r in rec["records"]}
    declared = {store.keys(r.fn, r.cfg, r.profile)[0] for r in plan.runs(chapter, "smoke") if not r.artifact}
    assert read == declared
    assert all(r["cache_hit"] for r in rec["records"])
