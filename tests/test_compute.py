"""`decoupling compute` (pipeline/compute.py): the declared runs, computed without notebooks, bodies before
the records that read them, in chunks that stop between runs and resume, stale results/ records replaced."""
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from decoupling import paths
from decoupling.pipeline import compute, plan, store

CALLS: list[str] = []


@dataclass(frozen=True)
class Cfg:
    name: str
    pause: float = 0.0


def toy_body(cfg: Cfg, out_dir: Path) -> dict:
    CALLS.append(f"body {cfg.name}")
    (out_dir / "weights.txt").write_text(cfg.name)
    return {"body": cfg.name}


def toy_record(cfg: Cfg) -> dict:
    CALLS.append(cfg.name)
    time.sleep(cfg.pause)
    return {"name": cfg.name}


toy_record.runs_on_cpu = True


def _toy_plan(profile: str, seed: int = 0, pause: float = 0.0) -> list:
    body = plan.Run("body", toy_body, Cfg("b"), profile, artifact=True)
    unread = plan.Run("body", toy_body, Cfg("unread"), profile, artifact=True)
    return [body, unread, plan.Run("reads-body", toy_record, Cfg("r1", pause), profile, needs=(body,)),
            plan.Run("alone", toy_record, Cfg("r2", pause), profile),
            plan.Run("alone", toy_record, Cfg("r3", pause), profile)]


@pytest.fixture
def toy(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "STORE_DIR", tmp_path / "store")
    monkeypatch.setattr(paths, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(plan, "_DECLARED", {"toy": _toy_plan})
    monkeypatch.setattr(plan, "CHAPTERS", ("toy",))
    monkeypatch.setenv("DECOUPLING_PROGRESS", "0")
    CALLS.clear()
    return tmp_path


def _states(profile="smoke"):
    return [it.state for it in compute.survey(plan.book(profile, ("toy",)), None)]


def test_bodies_first_then_records_and_a_second_call_computes_nothing(toy, monkeypatch):
    monkeypatch.delenv(store.ALLOW_CPU_FULL, raising=False)
    items = compute.survey(plan.book("smoke", ("toy",)), None)
    assert [it.state for it in items] == ["missing"] * 5
    # the body no missing record reads is not trained; the one r1 reads comes right before it
    assert [it.run.cfg.name for it in compute.todo(items)] == ["b", "r1", "r2", "r3"]
    assert compute.main(["--profile", "smoke", "--chapters", "toy"]) == 0
    assert CALLS == ["body b", "r1", "r2", "r3"]
    # it computes `full` on a CPU while it runs, and leaves its caller's environment as it was
    assert store.ALLOW_CPU_FULL not in __import__("os").environ
    assert _states() == ["current", "missing", "current", "current", "current"]
    assert compute.main(["--profile", "smoke", "--chapters", "toy"]) == 0
    assert CALLS == ["body b", "r1", "r2", "r3"]  # nothing again


def test_a_budget_stops_between_runs_and_the_next_call_continues(toy, monkeypatch):
    monkeypatch.setattr(plan, "_DECLARED", {"toy": lambda p, s=0: _toy_plan(p, s, pause=0.2)})
    # 0.002 min = 0.12 s: the body and r1 start inside it, r1 ends past it, so r2 does not start
    assert compute.main(["--profile", "smoke", "--chapters", "toy", "--budget-min", "0.002"]) == 0
    assert CALLS == ["body b", "r1"]
    assert compute.main(["--profile", "smoke", "--chapters", "toy"]) == 0
    assert CALLS == ["body b", "r1", "r2", "r3"]


def test_an_interrupt_keeps_and_reports_what_finished(toy, monkeypatch, capfd):
    real = compute.compute_one

    def ctrl_c_at_r2(it, root):
        if it.run.cfg.name == "r2":
            raise KeyboardInterrupt
        return real(it, root)
    monkeypatch.setattr(compute, "compute_one", ctrl_c_at_r2)
    assert compute.main(["--profile", "smoke", "--chapters", "toy"]) == 130
    assert "stopped after 2 of 4" in "".join(capfd.readouterr()) and CALLS == ["body b", "r1"]
    monkeypatch.setattr(compute, "compute_one", real)
    assert compute.main(["--profile", "smoke", "--chapters", "toy"]) == 0
    assert CALLS == ["body b", "r1", "r2", "r3"]


def test_full_goes_to_results_and_a_stale_record_there_is_replaced(toy):
    from decoupling.core import device
    if device.DEVICE.type == "cuda":
        pytest.skip("the logical-key lookup of results/ is the CPU path")
    assert compute.main(["--profile", "full", "--chapters", "toy"]) == 0
    records = sorted((toy / "results").rglob("*.json"))
    assert len(records) == 3 and not (toy / "store" / "test_compute.toy_record").exists()
    body = json.loads(records[0].read_text())
    body["meta"]["source"] = "another library"
    body["checksum"] = store._checksum(body)
    stale = records[0].with_name("0000000000000000.json")
    stale.write_text(json.dumps(body))
    records[0].unlink()
    assert [it.state for it in compute.survey(plan.book("full", ("toy",)), paths.RESULTS_DIR)].count("stale") == 1
    CALLS.clear()
    assert compute.main(["--profile", "full", "--chapters", "toy"]) == 0
    assert len(CALLS) == 1 and not stale.exists() and len(list((toy / "results").rglob("*.json"))) == 3


def test_parallel_jobs_compute_the_same(toy, monkeypatch):
    # worker processes import the plan afresh, so this toy chapter cannot reach them: one process here
    items = compute.survey(plan.book("smoke", ("toy",)), None)
    assert len(compute.todo(items)) == 4


def test_mistakes_are_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        compute.main(["--profile", "smoke", "--chapters", "nope"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "valid chapters: computers, memory" in err
    with pytest.raises(SystemExit):
        compute.main(["--all"])


def test_draw_only_refuses_to_compute(toy, monkeypatch):
    monkeypatch.setenv(store.DRAW_ONLY, "1")
    with pytest.raises(store.NotComputed, match="decoupling compute --profile smoke"):
        store.run(toy_record, Cfg("x"), profile="smoke")
    with pytest.raises(store.NotComputed):
        store.artifact(toy_body, Cfg("y"), profile="smoke")
    assert CALLS == []


@pytest.mark.slow
def test_count_prints_steps_tokens_and_minutes_for_a_chapter(capfd):
    assert compute.main(["--profile", "smoke", "--chapters", "memory", "--count", "--all"]) == 0
    out = capfd.readouterr().out
    for group in ("gating", "task_token", "prompting", "icl"):
        assert f"\n{group} " in out
    chapter = next(line for line in out.splitlines() if line.startswith("memory "))
    assert chapter.split()[1] == "4"  # runs; then records current/stale/missing, bodies, steps, tokens, minutes
    total = next(line for line in out.splitlines() if line.startswith("total "))
    assert float(total.split()[-1]) > 0  # minutes at the rates measured here
    assert "optimizer steps" in out and "\nestimate " in out and "\nnot in it " in out
    # a second count reads every tally and rate from the cache, and prints the same table
    assert compute.main(["--profile", "smoke", "--chapters", "memory", "--count", "--all"]) == 0
    again = capfd.readouterr()
    assert "4 runs from the count cache, 0 counted, 0 shapes measured" in again.err
    table = [line for line in out.splitlines() if line.split(" ")[0] in ("gating", "task_token", "prompting", "icl")]
    assert [line for line in again.out.splitlines() if line in table] == table


def test_a_worker_takes_its_share_of_the_cores(monkeypatch):
    """`--jobs N` workers run side by side: a pass that takes "every core" takes the worker's share instead,
    so two workers' encoder passes do not each start one thread per core."""
    import torch

    from decoupling.core import encoders
    monkeypatch.delenv(encoders.WORKER_THREADS, raising=False)
    alone, threads = encoders.all_cores(), torch.get_num_threads()
    for var in (encoders.WORKER_THREADS, store.ALLOW_CPU_FULL):  # what the worker sets is restored after
        monkeypatch.setenv(var, "")
    monkeypatch.setattr(compute.os, "cpu_count", lambda: 8)
    assert compute.worker_threads(2) == 4 and compute.worker_threads(16) == 1
    compute._worker_init(1)  # what each of `--jobs 2` workers runs first on a 2-core machine
    try:
        assert encoders.all_cores() == 1
    finally:
        torch.set_num_threads(threads)
    monkeypatch.delenv(encoders.WORKER_THREADS)
    assert encoders.all_cores() == alone
