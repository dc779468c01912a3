"""Claims as data: checks and findings.

- A *check* must hold if the code is right (a control near zero, a known answer, a model that can
  memorize). A failing check fails `decoupling rebuild` and CI.
- A *finding* is one of the essay's hypotheses put to experiment. It carries the essay's prediction, its
  *criterion* (the observation that makes it hold, stated before the value is shown), our value with its
  CI, and a verdict: holds / does not hold / inconclusive. A negative finding is a result.
  The expected verdict per profile is committed in book/expected_verdicts.yml; a rebuild whose verdict
  differs fails like a snapshot test, so a verdict only changes on purpose, in a commit that says why.
- `applies_to` names the profiles that *decide* a claim. A finding measured at another profile (say a
  CPU-sized `smoke` run of a finding only `full` can decide) is an illustration, not evidence: its box says
  where it is decided, and its verdict is neither snapshotted nor compared. A check is enforced where it
  applies and only recorded elsewhere, where it shows as "not decided at <profile>", neither a pass nor a
  failure.
- Findings and checks are decided in `core.verdicts` (each chapter's summary module builds them) and
  recorded with `Chapter.add`. A finding records `p`, the p-value of the test that decides it, scaled so
  that its verdict is "holds" or "does not hold" exactly when p < 0.05. The scorecard adjusts these over
  the findings a profile decides (Holm–Bonferroni, `holm_adjusted`); a finding decided at a profile that
  records no p fails the build there (`problems`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import yaml

VERDICTS = ("holds", "does not hold", "inconclusive")
EXPECTED_FILE = "book/expected_verdicts.yml"
# A finding must say what observation makes it hold. While False, a finding without a criterion is
# recorded with a warning (Claim.warning, shown in its box and on the scorecard) instead of raising.
REQUIRE_CRITERION = True
NO_CRITERION = "no criterion stated: this finding does not say what observation would make it hold"


@dataclass
class Claim:
    chapter: str
    name: str
    kind: str                      # "check" or "finding"
    profile: str                   # the profile it was measured under
    applies_to: tuple = ("smoke", "full")  # profiles where it is enforced / expected
    statement: str = ""            # what must hold (check) or what the essay predicts (finding), paraphrased
    value: object = None           # our measured number (or a short list / dict)
    ci: tuple | None = None        # (low, high) where there is one
    verdict: str = ""              # check: "pass"/"fail"; finding: one of VERDICTS
    anchor: str = ""               # published number to set beside ours, with its citation
    detail: str = ""
    criterion: str = ""            # finding: the observation that makes it "holds", written before the value
    warning: str = ""              # what is wrong with the claim itself (e.g. NO_CRITERION)
    p: float | None = None         # finding: p-value of the test behind its verdict (module docstring)
    level: float | None = None     # the level of `ci` (0.95 unless an equivalence test's 0.90)
    rule: str = ""                 # what the deciding rule tested (core.verdicts.Decision.rule)

    @property
    def key(self) -> str:
        return f"{self.chapter}/{self.name}"

    @property
    def enforced(self) -> bool:
        """Whether the profile it was measured at decides it (see `decides`)."""
        return decides(self.to_dict())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["applies_to"] = list(self.applies_to)
        d["ci"] = list(self.ci) if self.ci is not None else None
        return d


def decides(c: dict) -> bool:
    """Whether claim `c` (a dict) was measured at a profile that decides it: a check is enforced there, a
    finding's verdict there is evidence (and snapshotted). Elsewhere a finding is an illustration."""
    return c["profile"] in c.get("applies_to", [c["profile"]])


def decided_at(c: dict) -> str:
    """The note a claim measured outside the profiles that decide it carries, e.g. "decided at `full` — the
    smoke value is an illustration, not a verdict"; "" where it is decided."""
    if decides(c):
        return ""
    where = ", ".join(f"`{p}`" for p in c.get("applies_to", ())) or "no profile"
    if c["kind"] == "check":
        return f"not decided at `{c['profile']}`: enforced at {where}, recorded here only"
    return f"decided at {where} — the {c['profile']} value is an illustration, not a verdict"


def fmt(v, digits: int = 4) -> str:
    """A measured value as the book prints it (under a chapter's claim and on the status page: floats to 4
    significant digits; the scorecard asks for 3), lists and dicts element by element, a dash for nothing."""
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt(x, digits) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {fmt(x, digits)}" for k, x in v.items()) + "}"
    return "–" if v is None else str(v)


def fmt_ci(ci, digits: int = 4) -> str:
    """A (low, high) interval as `low … high`, or a dash when there is none."""
    return f"{fmt(ci[0], digits)} … {fmt(ci[1], digits)}" if ci else "–"


# ---------------------------------------------------------------------------------------------- tests
def holm_adjusted(claims: list[dict], alpha: float = 0.05) -> dict[str, dict]:
    """{"chapter/name": {"p", "p_holm", "verdict"}} for a family of findings (dicts): Holm–Bonferroni over
    the p-values they record. A verdict of "holds" or "does not hold" stays only if its adjusted p is below
    `alpha`, else it becomes "inconclusive". Every finding a build accepts records its p (`problems`); one
    from an older record that has none keeps its verdict and has no adjusted p, and still counts in the
    family as p = 1 (so the others' adjustment is not made smaller by leaving it out)."""
    from decoupling.core.intervals import holm
    keyed = {f"{c['chapter']}/{c['name']}": c for c in claims}
    ps = {k: (c.get("p") if c.get("p") is not None else 1.0) for k, c in keyed.items()}
    adj = holm(ps)
    out = {}
    for k, c in keyed.items():
        if c.get("p") is None:
            out[k] = {"p": None, "p_holm": None, "verdict": c["verdict"]}
            continue
        v = c["verdict"] if adj[k] < alpha or c["verdict"] == "inconclusive" else "inconclusive"
        out[k] = {"p": c["p"], "p_holm": adj[k], "verdict": v}
    return out


_BOX_MARK = {"pass": "✅ check", "fail": "❌ CHECK FAILED", "holds": "🟢 finding holds",
             "does not hold": "🔴 finding does not hold", "inconclusive": "🟡 finding inconclusive"}


def _sentence(text: str) -> str:
    text = (text or "").strip()
    return text if not text or text[-1] in ".!?)" else text + "."


def box_md(c: dict) -> str:
    """The markdown box a chapter shows under a claim (a dict): what it says, for a finding the criterion
    (*before* the value, so the reader knows what would make it hold before reading the number), the value
    and CI, the published anchor; measured outside the profiles that decide it, a finding shows "decided at
    …" and no verdict, and a check a neutral "not decided at <profile>" whether it passed or not (a check
    fails a build only where it is enforced)."""
    illustration = c["kind"] == "finding" and not decides(c)
    if illustration:
        mark = "🔹 finding, illustration only"
    elif not decides(c):  # a check recorded where it is not enforced: neither a pass nor a failure
        mark = "🔹 check"
    else:
        mark = _BOX_MARK[c["verdict"]]
    text = f"> **{mark}** `{c['name']}`: {_sentence(c['statement'])}"
    if c["kind"] == "finding" and c.get("criterion"):
        text += f" **Holds if:** {_sentence(c['criterion'])}"
    if not decides(c):
        text += f" — **{decided_at(c)}**"
    ci = f" ({c.get('level') or 0.95:.0%} CI {fmt_ci(c.get('ci'))})" if c.get("ci") else ""
    text += f" — measured **{fmt(c.get('value'))}**{ci}"
    if c["kind"] == "finding" and c.get("p") is not None and not illustration:
        text += f", p = {fmt(c['p'], 2)}"
    if c.get("anchor"):
        text += f"; published: {c['anchor']}"
    if c.get("warning"):
        text += f" — ⚠ {c['warning']}"
    return text


def load_expected(root) -> dict:
    """{profile: {"chapter/name": verdict}} from the committed snapshot file."""
    p = root / EXPECTED_FILE
    if not p.exists():
        return {}
    return yaml.safe_load(p.read_text()) or {}


def enforced(claims: list[dict], profile: str) -> list[dict]:
    """The claims (as dicts) measured at `profile` and decided there: those a build at `profile` answers for."""
    return [c for c in claims if c["profile"] == profile and decides(c)]


def verdicts(claims: list[dict], profile: str) -> dict[str, str]:
    """{"chapter/name": verdict} of the findings enforced at `profile`: what EXPECTED_FILE snapshots."""
    return {f"{c['chapter']}/{c['name']}": c["verdict"] for c in enforced(claims, profile) if c["kind"] == "finding"}


def problems(claims: list[dict], expected: dict | None, profile: str) -> list[str]:
    """Why the rebuild must fail: failing checks, findings that record no p-value and findings whose
    verdict differs from the snapshot. With `expected` None the verdicts are being measured, not judged (a
    GPU run brought home): no snapshot comparison."""
    out = []
    exp = (expected or {}).get(profile, {}) or {}
    if expected is not None:  # a snapshot of an illustration would pass a smoke reading off as a verdict
        for c in claims:
            key = f"{c['chapter']}/{c['name']}"
            if c["kind"] == "finding" and c["profile"] == profile and not decides(c) and key in exp:
                out.append(f"finding {key} is decided at {', '.join(c['applies_to'])}, not {profile}: its "
                           f"{profile} value is an illustration; remove its line from {EXPECTED_FILE}")
    for c in enforced(claims, profile):
        key = f"{c['chapter']}/{c['name']}"
        if c["kind"] == "finding" and c.get("p") is None:  # the scorecard's Holm adjustment needs every p
            out.append(f"finding {key} records no p-value: decide it with core.verdicts and record it with ch.add")
        if c["kind"] == "check" and c["verdict"] != "pass":
            out.append(f"check failed: {key}: {c['statement']} (measured {c['value']})")
        elif c["kind"] == "finding" and expected is not None:
            want = exp.get(key)
            if want is None:
                out.append(f"finding {key} has no expected verdict for profile {profile!r} in "
                           f"{EXPECTED_FILE} (measured: {c['verdict']}); add it on purpose")
            elif want != c["verdict"]:
                out.append(f"finding {key}: verdict {c['verdict']!r} differs from the committed {want!r} "
                           f"({EXPECTED_FILE}); if this change is honest, update that file and say why")
    return out
