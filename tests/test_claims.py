"""Claims as evidence: a finding states its criterion before its value, says which profiles decide it, and
the pages generated from the records (scorecard, the table of every claim) keep evidence and illustration
apart."""
import json

import pytest

from decoupling import paths
from decoupling.pipeline import book, claims, status


@pytest.fixture
def chapter(tmp_path, monkeypatch):
    """A Chapter at `smoke` writing into tmp_path, and the markdown of the boxes it shows."""
    for name, sub in (("STORE_DIR", "store"), ("BUILD_DIR", "build"), ("RESULTS_DIR", "results")):
        monkeypatch.setattr(paths, name, tmp_path / sub)
    shown = []
    import IPython.display
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(o.data for o in objs))
    return book.Chapter("ch", profile="smoke", seed=0), shown


def _record(tmp_path):
    return json.loads((tmp_path / "build" / "records" / "ch.json").read_text())


def test_a_finding_shows_its_criterion_before_its_value(chapter, tmp_path):
    ch, shown = chapter
    ch.finding("f", essay="the essay predicts it", criterion="the CI lies above 0", value=0.25, ci=(0.1, 0.4),
               verdict="holds")
    box = shown[-1]
    assert "Holds if:" in box and box.index("Holds if:") < box.index("0.25") and "the CI lies above 0" in box
    assert "🟢 finding holds" in box and "illustration" not in box
    rec = _record(tmp_path)["claims"][0]
    assert rec["criterion"] == "the CI lies above 0" and rec["warning"] == ""


def test_a_finding_without_criterion_is_flagged_or_refused(chapter, tmp_path, monkeypatch):
    ch, shown = chapter
    monkeypatch.setattr(claims, "REQUIRE_CRITERION", False)  # the lenient mode: recorded with a warning
    ch.finding("f", essay="no criterion", value=1.0, verdict="holds")
    assert _record(tmp_path)["claims"][0]["warning"] == claims.NO_CRITERION and "⚠" in shown[-1]
    monkeypatch.setattr(claims, "REQUIRE_CRITERION", True)  # the book's mode: refused
    with pytest.raises(ValueError, match="criterion"):
        ch.finding("g", essay="no criterion", value=1.0, verdict="holds", criterion="  ")


def test_outside_the_profiles_that_decide_it_a_finding_is_an_illustration(chapter, tmp_path):
    ch, shown = chapter
    ch.finding("big", essay="needs the full sizes", criterion="r > 0", value=-3.0, verdict="does not hold",
               applies_to=("full",))
    box = shown[-1]
    assert "decided at `full` — the smoke value is an illustration, not a verdict" in box
    assert "does not hold" not in box  # no verdict shown
    cs = _record(tmp_path)["claims"]
    assert claims.verdicts(cs, "smoke") == {}  # not snapshotted
    assert claims.problems(cs, {"smoke": {}}, "smoke") == []  # not compared
    probs = claims.problems(cs, {"smoke": {"ch/big": "does not hold"}}, "smoke")
    assert len(probs) == 1 and "illustration" in probs[0]  # a snapshot line for it is itself a problem


def test_a_check_outside_its_profiles_is_recorded_only(chapter):
    """Recorded where it is not enforced, a check that did not pass shows a neutral box, not a failure."""
    ch, shown = chapter
    ch.check("c", passed=False, value=0, statement="must hold at full", applies_to=("full",))
    assert shown[-1].startswith("> **🔹 check** `c`: must hold at full. — **not decided at `smoke`: enforced at `full`, "
                                "recorded here only** — measured **0**")
    assert "❌" not in shown[-1] and "FAIL" not in shown[-1]
    ch.check("d", passed=False, value=0, statement="must hold here")  # enforced at smoke: still a failure
    assert "❌ CHECK FAILED" in shown[-1]


def _c(name, kind, applies_to, verdict, profile="smoke", **kw):
    return claims.Claim("memory", name, kind, profile, applies_to, f"says {name}", 0.5, (0.1, 0.9), verdict,
                        **kw).to_dict()


RECS = {"memory": {"chapter": "memory", "profile": "smoke", "claims": [
    _c("ev", "finding", ("smoke", "full"), "holds", criterion="CI above 0"),
    _c("ill", "finding", ("full",), "inconclusive", criterion="r > 0 at some M"),
    _c("chk", "check", ("smoke", "full"), "pass")]}}


def test_scorecard_groups_verdicts_by_profile(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "RESULTS_DIR", tmp_path / "results")  # no committed full records
    md = status.scorecard_md(RECS, "smoke", {"smoke": {"memory/ev": "holds"}})
    smoke, full = md.split("## Findings at `smoke` (this build)")[1].split("## Findings at `full`")
    full = full.split("## What each claim says")[0]
    findings, checks = smoke.split("### Checks at `smoke`")
    assert "| {doc}`memory <memory>` | `ev` | 🟢 holds |" in findings
    assert "| {doc}`memory <memory>` | `ill` | 🔹 not decided at smoke (decided at full) |" in findings
    assert "inconclusive" not in findings.split("`ill`")[1].splitlines()[0]  # an illustration has no verdict
    assert "| {doc}`memory <memory>` | `chk` | ✅ pass |" in checks
    assert "No chapter record at `full` is visible to this build" in full and "🟢" not in full
    assert "Decided at `full` but not yet measured there: `memory/ev`, `memory/ill`." in full
    assert "| {doc}`memory <memory>` | `full` | 0 | 0 | 0 | 2 not yet measured |" in md


def test_scorecard_flags_a_verdict_that_differs_from_the_snapshot(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "RESULTS_DIR", tmp_path / "results")
    assert "⚠ committed: does not hold" in status.scorecard_md(RECS, "smoke", {"smoke": {"memory/ev": "does not hold"}})


def test_claims_table_lists_every_claim_with_where_it_is_decided():
    table = status.claims_table_md(RECS)
    rows = [r for r in table.splitlines() if r.startswith("| {doc}")]
    assert len(rows) == 3
    assert "| {doc}`memory` | `ill` | finding | `full` | r > 0 at some M |" in rows
    assert "| {doc}`memory` | `chk` | check | `smoke`, `full` | says chk |" in rows


def test_write_pages_fills_the_claims_marker(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RESULTS_DIR", tmp_path / "results")
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "reproducibility.md").write_text(f"# R\n\n{status.CLAIMS_MARKER}\n\nafter\n")
    status.write_pages(tmp_path, RECS, "smoke", {}, [])
    text = (tmp_path / "book" / "reproducibility.md").read_text()
    assert status.CLAIMS_MARKER not in text and "`ill`" in text and text.endswith("after\n")


def test_the_book_reproducibility_page_holds_the_marker():
    assert status.CLAIMS_MARKER in (paths.ROOT / "book" / "reproducibility.md").read_text()


def test_holm_adjusts_the_verdicts_a_profile_decides():
    fam = [_c("a", "finding", ("smoke",), "holds", p=0.01), _c("b", "finding", ("smoke",), "does not hold", p=0.04),
           _c("c", "finding", ("smoke",), "inconclusive", p=0.3), _c("d", "finding", ("smoke",), "holds")]
    adj = claims.holm_adjusted(fam)
    # p = 1 stands in for d: sorted 0.01, 0.04, 0.3, 1 → 0.04, 0.12, 0.6, 1
    assert adj["memory/a"] == {"p": 0.01, "p_holm": pytest.approx(0.04), "verdict": "holds"}
    assert adj["memory/b"]["p_holm"] == pytest.approx(0.12) and adj["memory/b"]["verdict"] == "inconclusive"
    assert adj["memory/c"]["verdict"] == "inconclusive"
    assert adj["memory/d"] == {"p": None, "p_holm": None, "verdict": "holds"}


def test_scorecard_shows_p_and_the_verdict_after_holm(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "RESULTS_DIR", tmp_path / "results")
    recs = {"memory": {"chapter": "memory", "profile": "smoke", "claims": [
        _c("x", "finding", ("smoke",), "holds", criterion="CI above 0", p=0.03),
        _c("y", "finding", ("smoke",), "holds", criterion="CI above 0", p=0.001234)]}}
    md = status.scorecard_md(recs, "smoke", {"smoke": {"memory/x": "holds", "memory/y": "holds"}})
    evidence = md.split("## Findings at `smoke`")[1].split("## Findings at `full`")[0]
    row_x = next(line for line in evidence.splitlines() if "`x`" in line)
    assert row_x.startswith("| {doc}`memory <memory>` | `x` | 🟢 holds |")  # the verdict stands after Holm
    assert row_x.endswith("; p = 0.03, Holm 0.03 |")  # 2 × 0.001234 = 0.0025, then max(2 × … , 0.03)
    assert "no verdict changes" in evidence
    assert "0.5 (95% CI 0.1 … 0.9)" in evidence  # three significant digits
    assert claims.fmt(0.123456, 3) == "0.123" and claims.fmt(0.123456) == "0.1235"


def test_a_finding_without_p_fails_the_build(chapter, tmp_path):
    """Every finding a profile decides records its p-value (the scorecard's Holm adjustment covers them
    all): a finding recorded without one is a problem there, one recorded with ch.add is not, and an
    illustration (decided elsewhere) is not asked for one."""
    from decoupling.core import intervals, verdicts
    ch, _ = chapter
    ch.finding("old", essay="e", criterion="CI above 0", value=0.2, ci=(0.1, 0.3), verdict="holds")
    ch.finding("elsewhere", essay="e", criterion="CI above 0", value=0.2, verdict="holds", applies_to=("full",))
    ch.add(verdicts.Finding("new", essay="e", criterion="the 95% CI lies above 0",
                            decision=verdicts.above(intervals.mean_ci([0.2, 0.25, 0.3]), 0.0)))
    cs = _record(tmp_path)["claims"]
    expected = {"smoke": {"ch/old": "holds", "ch/new": "holds"}}
    assert claims.problems(cs, expected, "smoke") == ["finding ch/old records no p-value: decide it with "
                                                      "core.verdicts and record it with ch.add"]
    assert claims.problems(cs, None, "smoke") == claims.problems(cs, expected, "smoke")  # measured, still refused
    assert claims.problems([c for c in cs if c["name"] != "old"], expected, "smoke") == []


def test_add_records_a_finding_decided_by_the_library(chapter, tmp_path):
    from decoupling.core import intervals, verdicts
    ch, shown = chapter
    d = verdicts.above(intervals.mean_ci([0.2, 0.25, 0.3]), 0.0)
    ch.add(verdicts.Finding("f", essay="it helps", criterion="the 95% CI lies above 0", decision=d))
    rec = _record(tmp_path)["claims"][0]
    assert rec["kind"] == "finding" and rec["verdict"] == "holds" and rec["p"] == pytest.approx(d.p)
    assert rec["ci"] == pytest.approx(list(d.interval.ci), abs=1e-6) and rec["value"] == pytest.approx(0.25)
    assert rec["level"] == 0.95 and "above 0" in rec["rule"]
    assert "🟢 finding holds" in shown[-1] and "95% CI" in shown[-1] and "p = " in shown[-1]
    eq = verdicts.equivalent([0.01, 0.02, 0.03], 0.05)
    ch.add(verdicts.Finding("g", essay="no gain", criterion="the 90% CI lies inside ±0.05", decision=eq,
                            applies_to=("full",)))
    assert "90% CI" in shown[-1] and "illustration" in shown[-1] and "p = " not in shown[-1]
    with pytest.raises(ValueError, match="criterion"):
        ch.add(verdicts.Finding("h", essay="e", criterion=" ", decision=d))


def test_add_records_a_check(chapter, tmp_path):
    from decoupling.core import intervals, verdicts
    ch, shown = chapter
    ch.add(verdicts.Check("c", statement="a known answer", passed=True, value=1.0,
                          interval=intervals.mean_ci([0.9, 1.0, 1.1])))
    ch.add(verdicts.Check("d", statement="must hold", passed=False, value=0.1))
    cs = _record(tmp_path)["claims"]
    assert [c["verdict"] for c in cs] == ["pass", "fail"] and cs[0]["ci"] is not None and cs[1]["ci"] is None
    assert "❌ CHECK FAILED" in shown[-1]
    with pytest.raises(TypeError):
        ch.add({"name": "x"})
