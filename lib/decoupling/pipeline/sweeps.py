"""Sweeps on Dask distributed: a grid of experiment configs, each computed on a worker through the store.

    recs = sweeps.run_grid(memory.context_gating, sweeps.grid(cfg, seed=[0, 1, 2]), profile="smoke")

Each task calls `store.run(fn, cfg, profile=...)` on its worker, so a finished result is in the results
store (written atomically, checksummed) before the task even reports back, and a rerun of the grid is
all cache hits. A worker that dies loses only the tasks it was running: the scheduler reschedules them
on another worker (and recomputes any finished result it held in memory — a store hit, no training);
`retries` re-runs tasks that raised.

Where it runs:
- default: a `LocalCluster` on this machine, 2 worker processes × 1 thread over loopback (one model per
  core; dask gives each worker OMP/MKL_NUM_THREADS=1 so workers do not fight over cores);
- `scheduler="tcp://HOST:8786"` (or env DECOUPLING_SCHEDULER, or --scheduler) joins a running cluster.
  For GPUs, one dask-cuda worker per GPU (pip install dask-cuda):
      dask scheduler --port 8786                                   # head node
      dask-cuda-worker tcp://HEAD:8786 --nthreads 1                # each GPU node: one worker per GPU
      DECOUPLING_SCHEDULER=tcp://HEAD:8786 python -m decoupling.pipeline.sweeps MODULE:FN --profile full ...
  Every worker needs this library (`pip install -e .`), the prepared data (`decoupling data`) and the
  results store on a shared filesystem (--store /shared/store): records are written where the task ran.
  The store key includes the device type, so records computed on CUDA workers are `full`-profile GPU
  records like those of a single-GPU build.

This module only schedules; it computes nothing itself (it is in pipeline/: editing it keeps every results key).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib
import itertools
import json
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Callable, Iterable, Iterator

from decoupling import files
from decoupling.pipeline import store
from decoupling.profiles import check_profile

N_WORKERS = max(1, min(4, os.cpu_count() or 1))  # one single-threaded worker per core, at most 4
THREADS_PER_WORKER = 1


class SweepError(RuntimeError):
    """Some configs of a grid failed; every other config finished and is in the store."""


# ---------------------------------------------------------------------------------------------- cluster
@contextlib.contextmanager
def connect(scheduler: str | None = None, n_workers: int = N_WORKERS,
            threads_per_worker: int = THREADS_PER_WORKER) -> Iterator:
    """A dask Client: to `scheduler` (or $DECOUPLING_SCHEDULER) if given, else to a fresh LocalCluster of
    worker processes on loopback, closed on exit."""
    from distributed import Client, LocalCluster
    address = scheduler or os.environ.get("DECOUPLING_SCHEDULER")
    if address:
        with Client(address) as client:
            yield client
        return
    with LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
                      host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        yield client


# ---------------------------------------------------------------------------------------------- grid
def grid(base, **axes: Iterable) -> list:
    """The cartesian product of `axes` applied to the frozen config `base` (last axis varies fastest):
    grid(cfg, seed=[0, 1], steps=[100, 200]) -> 4 configs."""
    names = list(axes)
    return [dataclasses.replace(base, **dict(zip(names, vals))) for vals in itertools.product(*axes.values())]


def _task(fn: Callable, config, profile: str, store_dir: str | None, force: bool) -> store.Record:
    """Runs on a worker: the result is in the store before this returns."""
    os.environ["DECOUPLING_PROGRESS"] = "0"  # many workers' bars would interleave; the client shows one
    return store.run(fn, config, profile=profile, store=Path(store_dir) if store_dir else None, force=force)


def _task_key(fn: Callable, config, profile: str) -> str:
    """A readable, unique dask key: experiment, a hash of (config, profile), a nonce (a grid submitted
    twice is two sets of tasks; the store, not dask, is what deduplicates work)."""
    h = hashlib.sha256(files.canonical({"config": config, "profile": profile}).encode()).hexdigest()
    return f"{store.experiment_name(fn)}-{h[:12]}-{uuid.uuid4().hex[:8]}"


def run_grid(fn: Callable, configs: list, profile: str, *, scheduler: str | None = None, client=None,
             store_dir: str | os.PathLike | None = None, retries: int = 2, force: bool = False,
             desc: str | None = None) -> list[store.Record]:
    """`store.run(fn, cfg, profile=profile)` for every config, on a Dask cluster; records in config order.

    `client`: an existing dask Client (else `connect(scheduler)` makes one for this call). `store_dir`:
    the results store as the workers see it (default: each worker's decoupling.paths.STORE_DIR).
    `retries`: re-runs of a task that raised (a dead worker's tasks are rescheduled by dask regardless).
    Raises SweepError after every other config has finished if some failed.
    """
    check_profile(profile)
    if client is None:
        with connect(scheduler) as c:
            return run_grid(fn, configs, profile, client=c, store_dir=store_dir, retries=retries, force=force,
                            desc=desc)
    from distributed import as_completed

    from decoupling import progress
    where = str(store_dir) if store_dir is not None else None
    futures = [client.submit(_task, fn, cfg, profile, where, force, key=_task_key(fn, cfg, profile),
                             retries=retries) for cfg in configs]
    order = {f.key: i for i, f in enumerate(futures)}
    records: list[store.Record | None] = [None] * len(configs)
    errors: list[str] = []
    with progress.bar(total=len(configs), unit="run", desc=desc or store.experiment_name(fn),
                      leave=True) as bar:
        for fut in as_completed(futures):
            i = order[fut.key]
            try:
                records[i] = fut.result()
            except Exception as e:  # noqa: BLE001 - reported with its config below
                errors.append(f"config #{i} {configs[i]!r}: {type(e).__name__}: {e}")
            bar.update(1)
    if errors:
        raise SweepError(f"{len(errors)} of {len(configs)} runs failed (the others are in the store):\n  "
                         + "\n  ".join(errors))
    return records  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------- CLI
def _values(text: str, like) -> list:
    """An axis's values from the command line: a JSON list without its brackets ("0,1,2", "[0],[1,2]",
    '"a","b"'), else plain strings split on commas ("code,prose"). A list becomes a tuple where the
    config's field holds a tuple (frozen configs hold tuples)."""
    try:
        vals = json.loads(f"[{text}]")
    except json.JSONDecodeError:
        vals = text.split(",")
    return [tuple(v) if isinstance(v, list) and isinstance(like, tuple) else v for v in vals]


def _axes(base, specs: list[str]) -> dict[str, list]:
    fields = {f.name for f in dataclasses.fields(base)}
    axes = {}
    for spec in specs:
        name, _, values = spec.partition("=")
        if name not in fields or not values:
            raise SystemExit(f"--grid {spec!r}: want FIELD=V1,V2,… with FIELD one of {', '.join(sorted(fields))}")
        axes[name] = _values(values, getattr(base, name))
    return axes


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m decoupling.pipeline.sweeps", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a grid of one experiment's configs on a Dask cluster through the results store.",
        epilog="examples:\n"
               "  python -m decoupling.pipeline.sweeps decoupling.experiments.memory:context_gating --presets GATING \\\n"
               "      --grid 'seeds=[0],[1],[2]' --profile smoke\n"
               "  DECOUPLING_SCHEDULER=tcp://head:8786 python -m decoupling.pipeline.sweeps MODULE:FN --profile full "
               "--store /shared/store\n\n" + (__doc__ or "").split("Where it runs:")[1].split("This module")[0])
    p.add_argument("experiment", help="MODULE:FUNCTION, e.g. decoupling.experiments.memory:context_gating")
    p.add_argument("--presets", default="PRESETS", help="the module's dict of per-profile configs (default PRESETS)")
    p.add_argument("--profile", default="smoke", help="smoke or full (default smoke)")
    p.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                   help="an axis of the grid (repeatable): JSON values separated by commas, e.g. "
                        "steps=100,200 or 'seeds=[0,1],[2,3]'; otherwise strings, e.g. domain=code,prose")
    p.add_argument("--scheduler", help="tcp://HOST:8786 of a running cluster (default $DECOUPLING_SCHEDULER, "
                                       "else a LocalCluster here)")
    p.add_argument("--workers", type=int, default=N_WORKERS, help=f"LocalCluster worker processes (default {N_WORKERS}: this machine's cores, at most 4)")
    p.add_argument("--store", help="results store directory as the workers see it (default .cache/store)")
    p.add_argument("--retries", type=int, default=2, help="re-runs of a task that raised (default 2)")
    p.add_argument("--force", action="store_true", help="recompute even when the store has the result")
    p.add_argument("--dry-run", action="store_true", help="list the configs and exit")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    check_profile(args.profile)
    mod_name, _, fn_name = args.experiment.partition(":")
    module = importlib.import_module(mod_name)
    fn = getattr(module, fn_name)
    from decoupling.profiles import preset
    base = preset(getattr(module, args.presets), args.profile)
    axes = _axes(base, args.grid)
    configs = grid(base, **axes)
    print(f"{store.experiment_name(fn)} at {args.profile}: {len(configs)} config(s) over "
          f"{', '.join(axes) or 'no axes'}")
    if args.dry_run:
        for c in configs:
            print(f"  {c!r}")
        return 0
    if args.scheduler is None and not os.environ.get("DECOUPLING_SCHEDULER"):
        cm = connect(n_workers=args.workers)
    else:
        cm = connect(args.scheduler)
    try:
        with cm as client:
            print(f"cluster: {client.scheduler_info().get('address', client.scheduler.address)}, "
                  f"{len(client.scheduler_info()['workers'])} worker(s)")
            recs = run_grid(fn, configs, args.profile, client=client, store_dir=args.store, retries=args.retries,
                            force=args.force)
    except SweepError as e:
        print(f"decoupling.pipeline.sweeps: {e}", file=sys.stderr)
        return 1
    for c, r in zip(configs, recs):
        point = {k: getattr(c, k) for k in axes}
        print(f"  {json.dumps(point, default=str):40s} {'cached ' if r.cache_hit else 'trained'} "
              f"{r.meta.get('wall_time_s', 0):8.1f} s  {r.meta.get('path')}")
    print(f"{len(recs)} result(s); {sum(r.cache_hit for r in recs)} from the store")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
