"""decoupling.pipeline.sitting, the notebook-free executor of a GPU job, on CPU at toy sizes: the order the
chapters run in, and a job stopped at its time limit that loses nothing finished and recomputes nothing
finished when the next job resumes it."""
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from decoupling.pipeline import sitting

ROOT = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "fixtures"
SCRIPT = ROOT / "benchmarks" / "gpu_full.py"

# A chapter of three tiny `full` experiments (the fixture's line fit at three seeds). With STEPS_PID_FILE set
# the third one "takes long": the chapter says which process it is and sleeps, so the test can stop the job
# while it runs, as a scheduler's time limit would.
STEPS = '''---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# Steps

```{code-cell} ipython3
:tags: [parameters]
profile = "smoke"
seed = 0
```

```{code-cell} ipython3
import os, time
from pathlib import Path
from decoupling.pipeline.book import Chapter
from tests_fixture_exp import fit_line, PRESETS

ch = Chapter("steps", profile=profile, seed=seed)
slopes = []
for s in range(3):
    if s == 2 and os.environ.get("STEPS_PID_FILE"):
        Path(os.environ["STEPS_PID_FILE"]).write_text(str(os.getpid()))
        time.sleep(600)
    slopes.append(ch.run(fit_line, ch.config(PRESETS, seed=seed + s))["slope"])
ch.finding("slopes-positive", essay="every fitted slope is positive", criterion="the smallest slope is above 0",
           value=min(slopes), verdict="holds" if min(slopes) > 0 else "does not hold", applies_to=("full",))
```
'''


def test_order_is_findings_per_gpu_minute_and_uncounted_chapters_come_last():
    cost = {"a": 12_000, "b": 6_000, "c": 24_000}  # one, a half and two GPU minutes at 5 ms a step
    findings = {"a": 2, "b": 1, "c": 8, "d": 5}
    assert sitting.findings_per_minute(findings, cost) == {"a": 2.0, "b": 2.0, "c": 4.0, "d": None}
    assert sitting.order_chapters(["d", "a", "b", "c"], findings, cost) == ["c", "a", "b", "d"]  # a, b tie
    assert sitting.cost_from_rows([{"chapter": "a", "steps": 10, "eval_batches": 2},
                                   {"chapter": "a", "steps": 5, "eval_batches": 0}, {"failed": "x"}]) == {"a": 17}


def test_the_book_runs_its_densest_chapter_first(tmp_path):
    found = sitting.decided_findings(tmp_path, None, list(sitting.FULL_COST))
    assert found == sitting.FULL_FINDINGS  # nothing recorded or committed at full: the counted table
    assert sitting.order_chapters(list(sitting.FULL_COST), found, sitting.FULL_COST)[0] == "generality"


def test_decided_findings_join_recorded_claims_and_committed_verdicts(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "expected_verdicts.yml").write_text("full:\n  a/one: holds\n  a/two: holds\n")
    (tmp_path / "build" / "records").mkdir(parents=True)
    claims = [{"kind": "finding", "name": "two", "applies_to": ["full"]},
              {"kind": "finding", "name": "three", "applies_to": ["smoke", "full"]},
              {"kind": "finding", "name": "smoke-only", "applies_to": ["smoke"]},
              {"kind": "check", "name": "a-check", "applies_to": ["smoke", "full"]}]
    (tmp_path / "build" / "records" / "a.json").write_text(json.dumps({"claims": claims}))
    assert sitting.decided_findings(tmp_path, tmp_path / "build", ["a", "memory", "new"]) == \
        {"a": 3, "memory": sitting.FULL_FINDINGS["memory"], "new": 0}


def _records(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if sitting.RECORD.fullmatch(m.name)}


def _trained(tmp: Path) -> int:
    c = tmp / "counter"
    return len(c.read_text().splitlines()) if c.exists() else 0


@pytest.mark.slow
def test_a_stopped_job_keeps_what_finished_and_the_next_one_computes_only_the_rest(tmp_path):
    book = tmp_path / "book"
    shutil.copytree(FIX / "minibook", book)
    (book / "book" / "steps.md").write_text(STEPS)
    toc = book / "_toc.yml"
    toc.write_text(toc.read_text().replace("  - file: book/tiny\n", "  - file: book/steps\n"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FIX), os.environ.get("PYTHONPATH", "")]),
           "TINY_COUNTER": str(tmp_path / "counter"), "DECOUPLING_ALLOW_CPU_FULL": "1"}

    def job(out: str, store: str, **extra):
        cmd = [sys.executable, str(SCRIPT), "--skip-bench", "--no-warm-pass", "--root", str(book),
               "--out", str(tmp_path / out), "--store", str(tmp_path / store), "--budget-s", "400",
               "--bank-every-s", "1"]
        return subprocess.Popen(cmd, env={**env, **extra}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)

    # 1. The job is killed (SIGKILL, no chance to clean up) while the third experiment runs.
    pid_file = tmp_path / "chapter.pid"
    first = job("out", "store1", STEPS_PID_FILE=str(pid_file))
    archive = tmp_path / "out" / sitting.ARCHIVE
    t0 = time.monotonic()
    while time.monotonic() - t0 < 300 and not (pid_file.exists() and archive.exists()
                                               and len(_records(archive)) == 2):
        assert first.poll() is None, first.stdout.read()
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the chapter runs in its own process group
    first.wait()
    banked = _records(archive)
    assert len(banked) == 2 and _trained(tmp_path) == 2  # both finished records came back
    assert all(json.loads(b)["meta"]["profile"] == "full" for b in banked.values())

    # 2. The next job, on a fresh machine (empty store) with that output folder: only the third trains.
    second = job("out", "store2")
    log = second.communicate(timeout=400)[0]
    assert second.returncode == 0, log
    assert "restored 2 finished record(s)" in log and _trained(tmp_path) == 3
    final = _records(archive)
    assert len(final) == 3 and all(final[name] == raw for name, raw in banked.items())  # unchanged bytes
    summary = json.loads((tmp_path / "out" / "gpu_full.json").read_text())
    assert summary["chapters"]["steps"]["status"] == "ok" and summary["chapters"]["steps"]["new_records"] == 1

    # 3. The documented way: the stopped job's records are ingested into results/ (and committed); the next
    # job computes the third again in its own empty store, and brings back only that one.
    with tarfile.open(tmp_path / "first.tar.gz", "w:gz") as tar:  # the archive as the stopped job left it
        for name, raw in banked.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    r = subprocess.run([sys.executable, str(SCRIPT), "--ingest", str(tmp_path / "first.tar.gz"), "--into",
                        str(book), "--profile", "full"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "'new': 2" in r.stdout, r.stdout + r.stderr
    third = job("out3", "store3")
    log = third.communicate(timeout=400)[0]
    assert third.returncode == 0, log
    assert _trained(tmp_path) == 4
    back = _records(tmp_path / "out3" / sitting.ARCHIVE)
    assert len(back) == 1 and not set(back) & set(banked)


def test_a_committed_record_from_another_device_is_reused_unless_stale(tmp_path, monkeypatch):
    """On the GPU machine a record committed under results/ from a CPU (another device type, so another
    exact key) is taken as it is, when the library source and data it was computed from are this checkout's."""
    import types

    from decoupling import paths
    from decoupling.core import device
    from decoupling.pipeline import store
    monkeypatch.syspath_prepend(str(FIX))
    from tests_fixture_exp import LineCfg, fit_line
    monkeypatch.setenv("TINY_COUNTER", str(tmp_path / "counter"))
    monkeypatch.setenv(store.ALLOW_CPU_FULL, "1")
    cfg = LineCfg(steps=5)
    made = Path(store.run(fit_line, cfg, profile="full", store=tmp_path / "cpu").meta["path"])
    committed = tmp_path / "results" / made.relative_to(tmp_path / "cpu")
    committed.parent.mkdir(parents=True)
    committed.write_bytes(made.read_bytes())
    monkeypatch.setattr(paths, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(device, "DEVICE", types.SimpleNamespace(type="cuda"))  # keys now say cuda
    monkeypatch.setattr(store, "lookup", store.lookup)  # undone after the test
    assert store.lookup(fit_line, cfg, "full", tmp_path / "gpu") is None  # the exact key misses it
    sitting._reuse_committed_records()
    rec = store.lookup(fit_line, cfg, "full", tmp_path / "gpu")
    assert rec is not None and rec.meta["device_type"] == "cpu" and rec.meta["path"] == str(committed)
    body = json.loads(committed.read_text())
    body["meta"]["source"] = "an older library"
    body["checksum"] = store._checksum(body)
    committed.write_text(json.dumps(body))
    assert store.lookup(fit_line, cfg, "full", tmp_path / "gpu") is None  # stale: the GPU computes it
    assert _trained(tmp_path) == 1
