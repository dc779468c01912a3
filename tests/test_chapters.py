"""Every chapter executes at `smoke` through the real rebuild, and its claims hold: every check passes
and every finding's verdict equals the committed snapshot (book/expected_verdicts.yml)."""
import json

import pytest
import yaml

from conftest import ROOT

pytestmark = pytest.mark.slow
CHAPTERS = ["computers", "memory", "tyranny", "generality"]


def test_rebuild_succeeds(smoke_book):
    assert smoke_book.returncode == 0, smoke_book.stdout[-3000:] + smoke_book.stderr[-5000:]
    assert (smoke_book.html / "index.html").exists()
    assert (smoke_book.html / "book" / "status.html").exists()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_claims(smoke_book, chapter):
    rec = json.loads((smoke_book.build / "records" / f"{chapter}.json").read_text())
    assert rec["profile"] == "smoke"
    claims = rec["claims"]
    assert claims, f"{chapter} records no claims"
    assert rec["figures"], f"{chapter} draws no figure"
    failing = [c for c in claims if c["kind"] == "check" and "smoke" in c["applies_to"] and c["verdict"] != "pass"]
    assert not failing, failing
    expected = yaml.safe_load((ROOT / "book" / "expected_verdicts.yml").read_text())["smoke"]
    for c in claims:
        if c["kind"] == "finding" and "smoke" in c["applies_to"]:
            assert expected.get(f"{chapter}/{c['name']}") == c["verdict"], c
    # a chapter that trains nothing is not a chapter: it ran at least one cached experiment
    assert rec["records"], f"{chapter} ran no experiment through the results store"
