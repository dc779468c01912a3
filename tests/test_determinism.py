"""Determinism: two rebuilds of one chapter from scratch (each with its own empty results store and build
dir, so every experiment trains twice) record identical results: the `value` of every store record, the
value, CI and verdict of every claim, and the same figure files. Timings and dates may differ; nothing
else may.
"""
import json
from pathlib import Path

import pytest

from test_offline import CHAPTER, rebuild_chapter

pytestmark = pytest.mark.slow


def _values(store: Path) -> dict[str, tuple]:
    """{experiment/logical key (experiment, config, profile): (value, library source hash, data hash)}."""
    out = {}
    for p in sorted(store.rglob("*.json")):
        body = json.loads(p.read_text())
        out[p.parent.relative_to(store).as_posix()] = (body["value"], body["meta"]["source"], body["meta"]["data"])
    return out


def _claims(build: Path) -> dict[str, tuple]:
    rec = json.loads((build / "records" / f"{CHAPTER}.json").read_text())
    return {c["name"]: (c["kind"], c["value"], c["ci"], c["verdict"]) for c in rec["claims"]}


def _figures(build: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((build / "figures").glob("*")) if p.suffix in (".png", ".svg")}


def test_two_rebuilds_from_scratch_record_the_same_results(tmp_path):
    runs = []
    for name in ("a", "b"):
        r = rebuild_chapter(tmp_path / name)
        assert r.returncode == 0, f"run {name}: {r.stdout[-3000:]}\n{r.stderr[-5000:]}"
        runs.append(tmp_path / name)
    a, b = runs
    va, vb = _values(a / "store"), _values(b / "store")
    assert va, "the chapter stored no result"
    assert va.keys() == vb.keys(), "the two runs computed different experiments or configs"
    changed = [k for k in va if va[k][1:] != vb[k][1:]]
    assert not changed, f"the library or the data changed while the test ran (not a determinism failure): {changed}"
    differ = [k for k in va if va[k][0] != vb[k][0]]
    assert not differ, f"results differ between two runs from scratch: {differ}"
    ca, cb = _claims(a / "build"), _claims(b / "build")
    assert ca and ca == cb, {k: (ca.get(k), cb.get(k)) for k in set(ca) | set(cb) if ca.get(k) != cb.get(k)}
    fa, fb = _figures(a / "build"), _figures(b / "build")
    assert fa.keys() == fb.keys() and [k for k in fa if fa[k] != fb[k]] == [], "figure files differ"
