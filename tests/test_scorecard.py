"""The scorecard page on small synthetic records with known answers: verdicts counted per chapter, short
tables (a handful of columns; the criterion behind a toggle), a neutral "not decided at <profile>" for
what a profile does not decide, and the records of every profile the build can see."""
import json
import re

import pytest

from decoupling import files, paths
from decoupling.pipeline import claims, status


def _c(chapter, name, kind, verdict, applies_to=("smoke", "full"), profile="smoke", **kw):
    kw.setdefault("criterion", f"the CI of {name} lies above 0" if kind == "finding" else "")
    return claims.Claim(chapter, name, kind, profile, applies_to, f"the essay says {name}", 0.25, (0.1, 0.4),
                        verdict, **kw).to_dict()


def _rec(chapter, profile, *cs):
    return {"chapter": chapter, "profile": profile, "claims": list(cs)}


# memory: 2 hold, 1 does not, 1 inconclusive, 1 decided at full only; tyranny: 1 holds, 1 decided at full only
SMOKE = {
    "memory": _rec("memory", "smoke",
                   _c("memory", "a", "finding", "holds", p=0.001),
                   _c("memory", "b", "finding", "holds", p=0.002),
                   _c("memory", "c", "finding", "does not hold", p=0.003),
                   _c("memory", "d", "finding", "inconclusive", p=0.5),
                   _c("memory", "big", "finding", "does not hold", applies_to=("full",), p=0.001),
                   _c("memory", "ok", "check", "pass"),
                   _c("memory", "later", "check", "fail", applies_to=("full",))),
    "tyranny": _rec("tyranny", "smoke",
                    _c("tyranny", "e", "finding", "holds", p=0.004),
                    _c("tyranny", "wide", "finding", "inconclusive", applies_to=("full",), p=0.9)),
}
EXPECTED = {"smoke": {"memory/a": "holds", "memory/b": "holds", "memory/c": "does not hold",
                      "memory/d": "inconclusive", "tyranny/e": "holds"},
            "full": {"memory/big": "holds", "tyranny/wide": "does not hold"}}


@pytest.fixture(autouse=True)
def no_committed(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "RESULTS_DIR", tmp_path / "results")


def _tables(md: str) -> list[list[str]]:
    """Each markdown table of the page as its lines."""
    out, cur = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            out.append(cur)
            cur = []
    return out


def _columns(row: str) -> int:
    return len(re.split(r"(?<!\\)\|", row.strip())) - 2


def _section(md: str, head: str) -> str:
    return md.split(head, 1)[1].split("\n## ", 1)[0]


def test_every_table_has_at_most_six_columns():
    md = status.scorecard_md(SMOKE, "smoke", EXPECTED)
    tables = _tables(md)
    assert len(tables) == 4  # the counts; the findings at smoke, the checks at smoke; the findings at full
    for t in tables:
        assert len({_columns(r) for r in t}) == 1, t  # every row as wide as its header
    assert [_columns(t[0]) for t in tables] == [6, 4, 4, 4]
    assert "the CI of a lies above 0" not in "\n".join(r for t in tables for r in t)  # criteria: in the toggles


def test_counts_per_chapter():
    md = status.scorecard_md(SMOKE, "smoke", EXPECTED)
    counts = _section(md, "## Verdicts per chapter")
    assert "| {doc}`memory <memory>` | `smoke` | 2 | 1 | 1 | 1 decided elsewhere |" in counts
    assert "| {doc}`tyranny <tyranny>` | `smoke` | 1 | 0 | 0 | 1 decided elsewhere |" in counts
    # no `full` record: its committed verdicts are counted, marked as committed; a finding `full` decides with
    # neither a record nor a committed verdict there is not yet measured
    assert "| {doc}`memory <memory>` | `full` (committed) | 1 | 0 | 0 | 4 not yet measured |" in counts
    assert "| {doc}`tyranny <tyranny>` | `full` (committed) | 0 | 1 | 0 | 1 not yet measured |" in counts
    rows = status._findings_at("smoke", SMOKE, {}, EXPECTED)
    assert status.verdict_counts(rows) == {
        "memory": {"holds": 2, "does not hold": 1, "inconclusive": 1, "not decided": 1, "missing": 0},
        "tyranny": {"holds": 1, "does not hold": 0, "inconclusive": 0, "not decided": 1, "missing": 0}}


def test_what_a_profile_does_not_decide_is_neutral_and_a_failure_at_its_profile_still_fails():
    md = status.scorecard_md(SMOKE, "smoke", EXPECTED)
    smoke = _section(md, "## Findings at `smoke` (this build)")
    assert "| {doc}`memory <memory>` | `big` | 🔹 not decided at smoke (decided at full) | 0.25 (95% CI 0.1 … 0.4) |" \
        in smoke  # its value, no verdict (its recorded verdict, "does not hold", is not shown)
    assert "| {doc}`memory <memory>` | `later` | 🔹 not decided at smoke (enforced at full) |" in smoke
    assert "❌" not in md and "FAIL" not in md
    assert "Checks enforced at `smoke`: 1 of 1 pass; recorded here and enforced at another profile: 1." in smoke
    box = claims.box_md(SMOKE["memory"]["claims"][-1])
    assert "🔹 check** `later`" in box and "**not decided at `smoke`: enforced at `full`" in box and "❌" not in box
    # the build's own profile enforces a failing check: a red row, and the rebuild fails as before
    failing = {"memory": _rec("memory", "smoke", _c("memory", "ok", "check", "fail"))}
    assert "| {doc}`memory <memory>` | `ok` | ❌ FAIL |" in status.scorecard_md(failing, "smoke", {})
    problems = claims.problems(failing["memory"]["claims"], {}, "smoke")
    assert any(p.startswith("check failed: memory/ok") for p in problems)
    assert claims.problems(SMOKE["memory"]["claims"], EXPECTED, "smoke") == []


def test_holm_shows_beside_the_raw_verdict_where_they_differ():
    recs = {"memory": _rec("memory", "smoke", _c("memory", "x", "finding", "holds", p=0.03),
                           _c("memory", "y", "finding", "holds", p=0.04))}
    md = status.scorecard_md(recs, "smoke", {"smoke": {"memory/x": "holds", "memory/y": "holds"}})
    row = next(r for r in md.splitlines() if r.startswith("| {doc}`memory <memory>` | `x` |"))
    assert "🟢 holds → 🟡 inconclusive after Holm" in row
    assert row.endswith("| 0.25 (95% CI 0.1 … 0.4); p = 0.03, Holm 0.06 |")
    assert "`memory/x` becomes inconclusive, `memory/y` becomes inconclusive" in md


def test_a_profile_without_records_says_so_in_one_sentence():
    md = status.scorecard_md(SMOKE, "smoke", {"smoke": EXPECTED["smoke"]})  # nothing committed for full
    full = _section(md, "## Findings at `full`")
    first = full.strip().split("\n\n")[0]
    assert first == ("No chapter record at `full` is visible to this build, and no `full` verdict is committed "
                     "in `book/expected_verdicts.yml`.")
    assert "No finding is measured at `full`, and none has a committed verdict there." in full
    assert "Decided at `full` but not yet measured there: `memory/a`, `memory/b`, `memory/c`, `memory/d`, " \
        "`memory/big`, `tyranny/e`, `tyranny/wide`." in full
    assert "Traceback" not in md
    committed = _section(status.scorecard_md(SMOKE, "smoke", EXPECTED), "## Findings at `full`")
    assert committed.strip().startswith("No chapter record at `full` is visible to this build (none in its "
                                        "build directory, none committed under `results/records/`)")
    assert "| {doc}`tyranny <tyranny>` | `wide` | 🔴 does not hold (committed) | – |" in committed


def test_the_criterion_is_behind_a_toggle():
    md = status.scorecard_md(SMOKE, "smoke", EXPECTED)
    claims_md = _section(md, "## What each claim says")
    memory = claims_md.split(":::{dropdown} memory: 7 claims")[1].split(":::")[0]
    assert "- **`a`** (finding, decided at `smoke`, `full`): the essay says a. **Holds if:** the CI of a lies above 0." \
        in memory
    assert "- **`later`** (check, enforced at `full`): the essay says later." in memory
    assert ":::{dropdown} tyranny: 2 claims" in claims_md


def test_records_of_every_profile_the_build_can_see(tmp_path):
    """A chapter's latest record is kept per profile when it is read, so after a run at another profile
    replaces it the scorecard still shows it; records committed under results/records/ are read too; a
    record that cannot be read is left out, without a traceback."""
    build = tmp_path / "build"
    full_memory = _rec("memory", "full", _c("memory", "big", "finding", "holds", profile="full", p=0.01),
                       _c("memory", "later", "check", "pass", applies_to=("full",), profile="full"))
    files.write_json(build / "records" / "memory.json", full_memory)
    assert status.load_records(build, ["memory"]) == {"memory": full_memory}
    assert json.loads((build / "records" / "full" / "memory.json").read_text()) == full_memory  # kept
    files.write_json(build / "records" / "memory.json", SMOKE["memory"])  # a smoke run replaces it
    recs = status.load_records(build, ["memory", "tyranny"])
    assert recs == {"memory": SMOKE["memory"]}
    assert status.load_records(build, ["memory"], "full") == {"memory": full_memory}
    files.write_json(paths.RESULTS_DIR / "records" / "full" / "tyranny.json",
                     _rec("tyranny", "full", _c("tyranny", "wide", "finding", "does not hold", profile="full", p=0.02)))
    (build / "records" / "full" / "broken.json").write_text("{not json")
    md = status.scorecard_md(recs, "smoke", EXPECTED, build)
    full = _section(md, "## Findings at `full`")
    assert "{doc}`memory <memory>`: kept from its last `full` run in the build directory" in full
    assert "{doc}`tyranny <tyranny>`: committed, `results/records/full/tyranny.json`" in full
    assert "| {doc}`memory <memory>` | `big` | 🟢 holds ⚠ committed: holds" not in full  # agrees with the snapshot
    assert "| {doc}`memory <memory>` | `big` | 🟢 holds | 0.25 (95% CI 0.1 … 0.4); p = 0.01, Holm 0.02 |" in full
    assert "| {doc}`tyranny <tyranny>` | `wide` | 🔴 does not hold | 0.25 (95% CI 0.1 … 0.4); p = 0.02, Holm 0.02 |" \
        in full
    assert "| {doc}`memory <memory>` | `later` | ✅ pass |" in full
    assert "| {doc}`memory <memory>` | `full` | 1 | 0 | 0 | 4 not yet measured |" in md and "broken" not in md


def test_a_chapter_executed_at_a_profile_without_its_record_is_named(tmp_path):
    build = tmp_path / "build"
    (build / "executed" / "full").mkdir(parents=True)
    (build / "executed" / "full" / "tyranny.ipynb").write_text("{}")
    full = _section(status.scorecard_md(SMOKE, "smoke", EXPECTED, build), "## Findings at `full`")
    assert ("{doc}`tyranny <tyranny>` was executed at `full` in this build directory, but a later run at another profile "
            "replaced the record; rebuilding at `full` brings it back.") in full.strip().split("\n\n")[0]


def test_write_pages_reads_the_build_directory_the_book_is_staged_in(tmp_path):
    build = tmp_path / "build"
    files.write_json(build / "records" / "full" / "memory.json",
                     _rec("memory", "full", _c("memory", "big", "finding", "holds", profile="full", p=0.01)))
    (build / "src" / "book").mkdir(parents=True)
    (build / "src" / "book" / "scorecard.md").write_text("# s")
    status.write_pages(build / "src", SMOKE, "smoke", EXPECTED, [])
    text = (build / "src" / "book" / "scorecard.md").read_text()
    assert "kept from its last `full` run" in text and "| {doc}`memory <memory>` | `big` | 🟢 holds |" in text


def test_the_status_page_counts_the_checks_enforced_where_they_ran():
    row = next(r for r in status.status_md(SMOKE, "smoke", EXPECTED, []).splitlines() if r.startswith("| memory |"))
    assert "| 1/1 |" in row  # `later` (enforced at full, failed at smoke) is not counted as a failure
