"""The `full` results that need no GPU, computed on a CPU and written into results/ to be committed.

Some `full` experiments are forward passes and linear probes (the zoo of lab-pretrained platforms,
`experiments.zoo`): a laptop computes them in about an hour, so they are computed here, once, and
committed under results/ with their provenance (device `cpu`) like the records a GPU returns. A `full`
build on any machine then draws them instead of recomputing (the store looks results/ up by key), and
`decoupling rebuild --profile full` on a CPU computes any of them that is missing (store.runs_on_cpu).

    python -m decoupling.pipeline.cpu_full --count            # what it will cost, before running it
    python -m decoupling.pipeline.cpu_full                    # compute what is missing, into results/
    python -m decoupling.pipeline.cpu_full --models minilm --targets sentiment/tweets

Each cell's record is written the moment the cell finishes, so an interrupted run (Ctrl-C, a closed
laptop) keeps every finished cell and the next run starts from the first missing one; the random
encoders' features are cached too (`core.encoders.random_features`), so even a half-finished cell
resumes from its finished passes. Cells run cheapest first, so a short run decides the most findings.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from decoupling import paths
from decoupling.experiments import zoo
from decoupling.pipeline import store
from decoupling.progress import report

ORDER = ("body:code", "body:prose", "minilm", "mpnet", "smollm2")  # cheapest rows first


def plan(profile: str = "full", models: tuple[str, ...] = ORDER, targets: tuple[str, ...] = zoo.TARGETS) -> list:
    """(experiment, config) pairs: the reference of every target, then every (model, target) cell."""
    out = [(zoo.zoo_reference, zoo.reference_config(t, profile)) for t in targets]
    out += [(zoo.zoo_cell, zoo.config(m, t, profile)) for m in models for t in targets]
    return out


def missing(jobs: list, profile: str, root=None) -> list:
    """The jobs to compute, each with the path of the stale record it replaces (or None): those with no
    record, and those whose record was computed by another library source or data (a CPU computes these
    itself, so a stale one is recomputed, never shown)."""
    out = []
    for fn, cfg in jobs:
        rec = store.lookup(fn, cfg, profile, root)
        if rec is None or rec.meta.get("stale"):
            out.append((fn, cfg, rec.meta.get("path") if rec is not None else None))
    return out


def compute(fn, cfg, profile: str, root, stale: str | None) -> store.Record:
    """One job of `missing`: computed afresh into `root`; a stale record it replaces in results/ is
    removed, so results/ holds one record per cell, the current one."""
    rec = store.run(fn, cfg, profile=profile, store=root, force=stale is not None)
    if stale is not None and Path(stale).resolve().is_relative_to(paths.RESULTS_DIR.resolve()):
        Path(stale).unlink(missing_ok=True)
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m decoupling.pipeline.cpu_full", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="full", choices=("smoke", "full"))
    ap.add_argument("--models", nargs="+", default=list(ORDER), choices=list(zoo.MODELS), metavar="MODEL",
                    help=f"rows to compute (default all: {', '.join(ORDER)})")
    ap.add_argument("--targets", nargs="+", default=list(zoo.TARGETS), choices=list(zoo.TARGETS), metavar="TARGET",
                    help="targets (default all six text targets)")
    ap.add_argument("--count", action="store_true", help="print each cell's encoder passes and tokens, run nothing")
    ap.add_argument("--into", choices=("results", "store"), default="results",
                    help="results: write into results/ (to commit); store: the local results store")
    a = ap.parse_args(argv)
    root = paths.RESULTS_DIR if a.into == "results" else None
    jobs = plan(a.profile, tuple(a.models), tuple(a.targets))
    if a.count:
        rows = zoo.count([cfg for fn, cfg in jobs if fn is zoo.zoo_cell])
        for r in rows:
            print(f"  {r['model']:<11} {r['target']:<18} {r['runs']} runs  {r['passes']:>2} passes  "
                  f"{r['tokens']:>9,} tokens")
        per = {}
        for r in rows:
            per[r["model"]] = per.get(r["model"], 0) + r["tokens"]
        print("tokens per model: " + ", ".join(f"{m} {t:,}" for m, t in per.items()))
        return 0
    todo = missing(jobs, a.profile, root)
    n_stale = sum(stale is not None for *_, stale in todo)
    report(f"[cpu-full] {len(jobs) - len(todo)} of {len(jobs)} records current ({n_stale} stale); computing {len(todo)} "
           f"into {root or paths.STORE_DIR}")
    t0 = time.perf_counter()
    try:
        for i, (fn, cfg, stale) in enumerate(todo, 1):
            t = time.perf_counter()
            compute(fn, cfg, a.profile, root, stale)
            name = getattr(cfg, "model", "tf-idf reference")
            report(f"[cpu-full] {i}/{len(todo)} {name} {cfg.inputs.target}: {time.perf_counter() - t:.0f} s "
                   f"(total {(time.perf_counter() - t0) / 60:.1f} min)")
    except KeyboardInterrupt:
        report("[cpu-full] stopped; every finished cell is kept: run the same command again to resume")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
