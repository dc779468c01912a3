"""decoupling.pipeline.sweeps on a real LocalCluster (2 worker processes over loopback): a grid's results land in the
store as they finish, a rerun is all store hits, failures are reported after the rest finished, and a
worker killed mid-grid loses no finished result (the lost task is rescheduled; nothing finished is
recomputed — counted through a side file the experiment writes)."""
import collections
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from decoupling.pipeline import sweeps


@dataclass(frozen=True)
class SquareCfg:
    x: int
    log: str  # side file: one line per start and per finish of a computation
    delay: float = 0.0
    fail_first: bool = False  # raise on the first attempt (a marker file remembers it), succeed after


PRESETS = {"smoke": SquareCfg(x=0, log=os.devnull), "full": SquareCfg(x=0, log=os.devnull, delay=1.0)}


def slow_square(cfg: SquareCfg) -> dict:
    """The experiment: logs `start x pid`, sleeps, logs `done x pid`, returns x² (workers import this
    module by name: spawned workers inherit the parent's sys.path)."""
    with open(cfg.log, "a") as f:
        f.write(f"start {cfg.x} {os.getpid()}\n")
    marker = Path(f"{cfg.log}.failed-{cfg.x}")
    if cfg.fail_first and not marker.exists():
        marker.touch()
        raise RuntimeError(f"first attempt of {cfg.x} fails")
    time.sleep(cfg.delay)
    with open(cfg.log, "a") as f:
        f.write(f"done {cfg.x} {os.getpid()}\n")
    return {"y": cfg.x * cfg.x}


def _events(log: Path) -> list[tuple[str, int, int]]:
    if not log.exists():
        return []
    return [(e, int(x), int(pid)) for e, x, pid in (line.split() for line in log.read_text().splitlines())]


@pytest.fixture(scope="module")
def client():
    with sweeps.connect(n_workers=2, threads_per_worker=1) as c:
        c.wait_for_workers(2, timeout=120)
        yield c


def test_grid_lands_in_store_and_reruns_from_it(client, tmp_path):
    log, store_dir = tmp_path / "log", tmp_path / "store"
    cfgs = sweeps.grid(SquareCfg(x=0, log=str(log)), x=[1, 2, 3, 4])
    recs = sweeps.run_grid(slow_square, cfgs, "smoke", client=client, store_dir=store_dir)
    assert [r.value["y"] for r in recs] == [1, 4, 9, 16] and not any(r.cache_hit for r in recs)
    assert len(list(store_dir.rglob("*.json"))) == 4
    assert len({pid for _, _, pid in _events(log)}) >= 1
    again = sweeps.run_grid(slow_square, cfgs, "smoke", client=client, store_dir=store_dir)
    assert all(r.cache_hit for r in again) and [r.value for r in again] == [r.value for r in recs]
    assert sum(e == "done" for e, _, _ in _events(log)) == 4  # nothing trained twice


def test_retries_and_failures(client, tmp_path):
    log = tmp_path / "log"
    flaky = [SquareCfg(x=x, log=str(log), fail_first=True) for x in (5, 6)]
    recs = sweeps.run_grid(slow_square, flaky, "smoke", client=client, store_dir=tmp_path / "s", retries=1)
    assert [r.value["y"] for r in recs] == [25, 36]
    never = [SquareCfg(x=7, log=str(log)), SquareCfg(x=8, log=str(log), fail_first=True)]
    with pytest.raises(sweeps.SweepError, match="config #1"):
        sweeps.run_grid(slow_square, never, "smoke", client=client, store_dir=tmp_path / "s2", retries=0)
    assert len(list((tmp_path / "s2").rglob("*.json"))) == 1  # the good config finished and was kept


def test_killed_worker_loses_no_finished_result(client, tmp_path):
    log, store_dir = tmp_path / "log", tmp_path / "store"
    cfgs = [SquareCfg(x=x, log=str(log), delay=1.0) for x in range(8)]
    out: dict = {}
    run = threading.Thread(target=lambda: out.update(
        recs=sweeps.run_grid(slow_square, cfgs, "smoke", client=client, store_dir=store_dir, retries=1)))
    run.start()
    workers = set(client.run(os.getpid).values())
    deadline = time.monotonic() + 120
    while True:  # wait until ≥ 2 results are finished and a task is mid-computation
        ev = _events(log)
        done = {x for e, x, _ in ev if e == "done"}
        running = [(x, pid) for e, x, pid in ev if e == "start" and x not in done and pid in workers]
        if len(done) >= 2 and running:
            break
        assert time.monotonic() < deadline, ev
        time.sleep(0.02)
    victim_task, victim = running[0]
    os.kill(victim, signal.SIGKILL)
    run.join(timeout=180)
    assert not run.is_alive()
    recs = out["recs"]
    assert [r.value["y"] for r in recs] == [x * x for x in range(8)]
    assert len(list(store_dir.rglob("*.json"))) == 8
    finished = collections.Counter(x for e, x, _ in _events(log) if e == "done")
    assert all(finished[x] == 1 for x in done)  # finished before the kill: never recomputed
    assert all(finished[x] == 1 for x in range(8))
    starts = collections.Counter(x for e, x, _ in _events(log) if e == "start")
    if not any(e == "done" and x == victim_task and pid == victim for e, x, pid in _events(log)):
        assert starts[victim_task] == 2  # killed mid-run, so rescheduled on a live worker


def test_cli_help_and_dry_run():
    env = {**os.environ, "DECOUPLING_PROGRESS": "0",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "decoupling.pipeline.sweeps", "--help"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0 and "--scheduler" in r.stdout and "dask-cuda-worker" in r.stdout
    r = subprocess.run([sys.executable, "-m", "decoupling.pipeline.sweeps", "test_sweeps:slow_square", "--grid", "x=1,2",
                        "--grid", "delay=0.0,0.5", "--dry-run"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "4 config(s)" in r.stdout and "x=2" in r.stdout and "delay=0.5" in r.stdout
