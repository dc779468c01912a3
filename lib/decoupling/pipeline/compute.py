"""`decoupling compute`: every record a profile's pages read, computed without notebooks.

The runs are the ones the chapters declare (`pipeline.plan`); the pages ask the results store for exactly
those, so after `decoupling compute --profile P` a `decoupling rebuild --profile P --draw-only` executes no
experiment at all. What it does, in order:

1. looks every declared run up: *current* (in the store or in results/, computed by today's code and
   data), *stale* (a results/ record computed by other code or data: recomputed, its file replaced) or
   *missing*;
2. `--count`: prints what computing the rest costs (records, bodies to pretrain, optimizer steps, tokens,
   and minutes on this machine: the work counted per model shape over each shape's rate measured here,
   `pipeline.cost`), runs nothing; counts and rates are cached, so a second count is instant;
3. otherwise computes the missing runs: the pretrained bodies a missing record reads first, then the
   records in book order, each written the moment it finishes. `--budget-min M` starts no new run after
   M minutes, so a long profile is computed in chunks that each end cleanly; Ctrl-C keeps what finished;
   the same command again continues where the last one stopped.

At `full` the records go to results/ (to be committed; `--into store` keeps them local), at `smoke` to the
local store. `--jobs N` runs N experiments side by side, one CPU thread each.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from decoupling import paths
from decoupling.args import Parser, at_least, one_of
from decoupling.pipeline import plan, store
from decoupling.profiles import PROFILES
from decoupling.progress import bar, report


@dataclass
class Item:
    """One declared run and what the store holds of it."""
    index: int              # its place in plan.book(...)
    run: plan.Run
    state: str              # "current", "stale" or "missing"
    stale_path: str | None = None  # the results/ record a stale one replaces


def survey(runs: list[plan.Run], root: Path | None) -> list[Item]:
    """What the store (`root`, then results/) holds of each run."""
    out = []
    for i, r in enumerate(runs):
        if r.artifact:
            done = (store.artifact_path(r.fn, r.cfg, r.profile) / "DONE").exists()
            out.append(Item(i, r, "current" if done else "missing"))
            continue
        rec = store.lookup(r.fn, r.cfg, r.profile, root)
        if rec is None:
            out.append(Item(i, r, "missing"))
        elif rec.stale:
            out.append(Item(i, r, "stale", rec.meta.get("path")))
        else:
            out.append(Item(i, r, "current"))
    return out


def todo(items: list[Item]) -> list[Item]:
    """The records to compute and, before the first record that reads it, each missing body they need.
    A body no missing record reads is not trained (its readers are all computed)."""
    by_run = {it.run: it for it in items}
    out, queued = [], set()
    for it in items:
        if it.run.artifact or it.state == "current":
            continue
        for body in it.run.needs:
            b = by_run.get(body)
            if b is not None and b.state == "missing" and body not in queued:
                queued.add(body)
                out.append(b)
        out.append(it)
    return out


def compute_one(it: Item, root: Path | None) -> float:
    """Compute one item (a body into the local store, a record into `root`); its wall seconds."""
    t0 = time.perf_counter()
    r = it.run
    if r.artifact:
        store.artifact(r.fn, r.cfg, profile=r.profile)
    else:
        store.run(r.fn, r.cfg, profile=r.profile, store=root, force=it.state == "stale")
        if it.stale_path and Path(it.stale_path).resolve().is_relative_to(paths.RESULTS_DIR.resolve()) \
                and Path(it.stale_path).exists():
            # results/ holds one record per run, the current one (the new one has another key)
            new = store.lookup(r.fn, r.cfg, r.profile, root)
            if new is not None and Path(new.meta["path"]).resolve() != Path(it.stale_path).resolve():
                Path(it.stale_path).unlink()
    return time.perf_counter() - t0


def worker_threads(jobs: int) -> int:
    """CPU threads each of `jobs` side-by-side runs takes: its share of the cores."""
    return max(1, (os.cpu_count() or 1) // jobs)


def _worker_init(threads: int) -> None:
    import torch

    from decoupling.core import encoders
    torch.set_num_threads(threads)
    os.environ[encoders.WORKER_THREADS] = str(threads)  # the passes that take every core take this share
    os.environ[store.ALLOW_CPU_FULL] = "1"


def _compute_in_worker(profile: str, chapters: tuple, seed: int, index: int, state: str, stale: str | None,
                       root: str | None) -> float:
    runs = plan.book(profile, chapters, seed)
    return compute_one(Item(index, runs[index], state, stale), Path(root) if root else None)


# ------------------------------------------------------------------------------------------ printing
def _fmt_count(x: float) -> str:
    return f"{x:,.0f}" if x < 1e6 else f"{x:.3g}"


def _fmt_rate(r: float | None, unit: str) -> str:
    if not r:
        return "not measured"
    return (f"{r / 1e6:.3g}M" if r >= 1e6 else f"{r / 1e3:.3g}k" if r >= 1e3 else f"{r:.3g}") + f" {unit}/s"


def print_count(items: list[Item], work: list[Item], profile: str, chapters: tuple, seed: int,
                every: bool, remeasure: bool = False, jobs: int = 1) -> None:
    """The cost of the runs to compute (every declared run with `every`): per run, per chapter and per shape,
    in steps, tokens and minutes on this machine (`pipeline.cost`), and what the minutes leave out."""
    from decoupling.pipeline import cost
    from decoupling.pipeline.rates import cache_dir
    shown = items if every else work
    report(f"[compute] counting {len(shown)} runs ({'every declared run' if every else 'those to compute'}) with "
           "the training loops and forward passes replaced by recorders (nothing trains; counts and rates are "
           f"cached under {cache_dir()}; a `full` body needs the larger corpora, `decoupling data --profile full`)")
    t0 = time.perf_counter()
    res = cost.count([it.run for it in shown], remeasure=remeasure, threads=worker_threads(jobs) if jobs > 1 else None)
    report(f"[compute] {len(shown) - res.counted} runs from the count cache, {res.counted} counted, "
           f"{len(res.measured)} shapes measured, in {time.perf_counter() - t0:.0f} s")
    rates = res.rates
    owner: dict = {}  # each run under the first chapter that declares it, so chapters add up to the total
    for ch in chapters:
        for r in plan.runs(ch, profile, seed):
            owner.setdefault(r, ch)
    print(f"{'run':<50} {'state':<8} {'steps':>8} {'tokens':>9} {'examples':>9} {'fwd tok':>9} {'fwd ex':>9} "
          f"{'est min':>8}  not in it")
    per_ch = {ch: cost.Tally() for ch in chapters}
    n_ch = dict.fromkeys(chapters, 0)
    total = cost.Tally()
    for it, t in zip(shown, res.tallies):
        total.add(t)
        per_ch[owner[it.run]].add(t)
        n_ch[owner[it.run]] += 1
        print(f"{it.run.label[:50]:<50} {it.state:<8} {t.steps:>8,} {_fmt_count(t.tokens):>9} "
              f"{_fmt_count(t.examples):>9} {_fmt_count(t.fwd_tokens):>9} {_fmt_count(t.fwd_examples):>9} "
              f"{cost.estimate(t, rates).seconds / 60:>8.1f}  "
              + ", ".join(f"{c} {w.split(' fits')[0]} fits" for w, (c, _) in sorted(t.untimed.items())))
    print("-" * 118)
    print(f"{'chapter':<12} {'runs':>5} {'records: current/stale/missing':>31} {'bodies (untrained)':>19} "
          f"{'steps':>9} {'tokens':>9} {'fwd tok':>9} {'est min':>8}")
    for ch in chapters:
        mine = [it for it in items if owner.get(it.run) == ch]
        recs = [it for it in mine if not it.run.artifact]
        states = "/".join(str(sum(it.state == s for it in recs)) for s in ("current", "stale", "missing"))
        bodies = [it for it in mine if it.run.artifact]
        untrained = f"{len(bodies)} ({sum(b.state == 'missing' for b in bodies)})"
        t = per_ch[ch]
        print(f"{ch:<12} {n_ch[ch]:>5} {states:>31} {untrained:>19} "
              f"{t.steps:>9,} {_fmt_count(t.tokens):>9} {_fmt_count(t.fwd_tokens):>9} "
              f"{cost.estimate(t, rates).seconds / 60:>8.1f}")
    est = cost.estimate(total, rates)
    print(f"{'total':<12} {len(shown):>5} {'':>31} {'':>19} {total.steps:>9,} {_fmt_count(total.tokens):>9} "
          f"{_fmt_count(total.fwd_tokens):>9} {est.seconds / 60:>8.1f}")
    print("(a run several chapters declare, a shared body or the zoo, is listed under the first of them)")
    print("-" * 118)
    by_shape = sorted(((u / rates[k]["rate"] if (rates.get(k) or {}).get("rate") else float("inf"), k, c, u)
                       for k, (c, u) in total.work.items()), reverse=True)
    print(f"{'the shapes that take longest':<78} {'calls':>9} {'rate here':>15} {'est min':>8}")
    for s, k, c, u in by_shape[:15]:
        sh = total.shapes[k]
        name = f"{sh['kind']} {sh['model']} {sh['inputs']}" + (f" K={sh['members']}" if sh["members"] > 1 else "") \
            + (f" {sh['threads']} threads" if sh["threads"] > 1 else "")
        print(f"{name[:78]:<78} {c:>9,} {_fmt_rate((rates.get(k) or {}).get('rate'), sh['unit']):>15} "
              f"{s / 60 if s != float('inf') else float('nan'):>8.1f}")
    ctx = res.context
    print(f"estimate     {est.seconds / 60:.1f} min: one run at a time, each on the threads it uses (one, the zoo's "
          f"encoder passes every core), at {ctx['dtype'].replace('torch.', '')} on {ctx['name']} (torch {ctx['torch']}); "
          f"`--jobs N` runs N side by side")
    print(f"             {len(total.work)} shapes, each timed here on its real batch for a fraction of a second "
          f"({len(res.measured)} now; rates measured while others load the machine are lower than an idle one's: "
          "`--remeasure` measures again)")
    if total.host:
        names = ", ".join(sorted(total.host))
        print(f"             of which {est.host_s / 60:.1f} min of host work timed while counting ({names}; run for "
              "real, on made-up features where features are faked)")
    for what, (calls, rows) in sorted(total.untimed.items()):
        print(f"not in it    {what}: {calls:,} on {_fmt_count(rows)} rows in all (stand-ins while counting)")
    if est.unmeasured:
        print(f"not in it    {len(est.unmeasured)} shapes with no rate here: "
              + "; ".join(f"{k} ({(rates.get(k) or {}).get('error', 'not measured')})" for k in est.unmeasured[:5]))
    print(f"not in it    other host work: reading data, tokenizing, cutting texts, building, loading and saving models "
          f"(counting, which does most of it once, took {total.count_s / 60:.1f} min)")
    print(f"counted      {total.steps:,} optimizer steps ({total.member_steps:,} member steps), "
          f"{_fmt_count(total.tokens)} tokens and {_fmt_count(total.examples)} examples trained on, "
          f"{_fmt_count(total.fwd_tokens)} tokens and {_fmt_count(total.fwd_examples)} rows read forward only, "
          f"{total.flops / 1e12:.1f} training TFLOP (6N per token)")


# ------------------------------------------------------------------------------------------ the command
def parser() -> Parser:
    p = Parser(prog="decoupling compute", description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="smoke", type=one_of("profile", PROFILES),
                   help=f"one of: {', '.join(PROFILES)} (default smoke)")
    p.add_argument("--chapters", nargs="+", metavar="NAME", type=one_of("chapter", plan.CHAPTERS),
                   default=list(plan.CHAPTERS), help=f"only these chapters' runs (default all: {', '.join(plan.CHAPTERS)})")
    p.add_argument("--seed", type=at_least(0), default=0, help="the book's base seed, as `rebuild --seed` (default 0)")
    p.add_argument("--count", action="store_true",
                   help="print what the missing runs cost (records, steps, tokens, minutes here); run nothing")
    p.add_argument("--all", action="store_true", help="with --count: count every declared run, computed or not")
    p.add_argument("--remeasure", action="store_true",
                   help="with --count: measure every shape's rate again (this machine's load changed), which "
                        "counts every run again")
    p.add_argument("--budget-min", type=at_least(0, float, strict=True), metavar="M",
                   help="start no new run after M minutes (a run under way finishes); the next call continues")
    p.add_argument("--jobs", type=at_least(1), default=1, metavar="N",
                   help="compute N runs side by side, one CPU thread each (default 1: every core for one run)")
    p.add_argument("--into", choices=("results", "store"),
                   help="results: write records into results/ to commit; store: the local results store "
                        "(default: results at full, store otherwise)")
    return p


def main(argv=None) -> int:
    p = parser()
    a = p.parse_args(argv)
    if (a.all or a.remeasure) and not a.count:
        p.error(f"--{'all' if a.all else 'remeasure'} only goes with --count")
    into = a.into or ("results" if a.profile == "full" else "store")
    root = paths.RESULTS_DIR if into == "results" else None
    chapters = tuple(a.chapters)
    with _cpu_full_allowed():  # this command is how a CPU computes `full`
        return _main(a, chapters, root)


@contextlib.contextmanager
def _cpu_full_allowed():
    """store.run computes `full` records on a CPU while this command runs, and only then (a caller in the
    same process, a test session say, gets its environment back)."""
    before = os.environ.get(store.ALLOW_CPU_FULL)
    os.environ[store.ALLOW_CPU_FULL] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(store.ALLOW_CPU_FULL, None)
        else:
            os.environ[store.ALLOW_CPU_FULL] = before


def _main(a, chapters: tuple, root: Path | None) -> int:
    runs = plan.book(a.profile, chapters, a.seed)
    items = survey(runs, root)
    work = todo(items)
    n_rec = sum(not it.run.artifact for it in items)
    report(f"[compute] {a.profile}: {n_rec} records declared by {', '.join(chapters)}; "
           f"{sum(it.state == 'current' for it in items if not it.run.artifact)} current, "
           f"{sum(not it.run.artifact for it in work)} to compute "
           f"({sum(it.state == 'stale' for it in work)} stale), {sum(it.run.artifact for it in work)} bodies to pretrain")
    if a.count:
        print_count(items, work, a.profile, chapters, a.seed, a.all, a.remeasure, a.jobs)
        return 0
    if not work:
        return 0
    return _compute(work, a, chapters, root)


def _compute(work: list[Item], a, chapters: tuple, root: Path | None) -> int:
    budget_s = a.budget_min * 60 if a.budget_min else None
    t0 = time.perf_counter()
    finished: list[Item] = []  # filled as runs finish, so an interrupted call still reports them
    progress = bar(total=len(work), desc=f"compute {a.profile}", unit="run")
    try:
        if a.jobs == 1:
            for it in work:
                if budget_s is not None and time.perf_counter() - t0 >= budget_s:
                    break
                progress.set_postfix_str(it.run.label[:40])
                s = compute_one(it, root)
                finished.append(it)
                progress.update(1)
                report(f"[compute] {len(finished)}/{len(work)} {it.run.label}: {s:.0f} s")
        else:
            _compute_parallel(work, a, chapters, root, budget_s, t0, progress, finished)
    except KeyboardInterrupt:
        progress.close()
        report(f"[compute] stopped after {len(finished)} of {len(work)}; every finished run is kept: the same "
               "command continues")
        return 130
    progress.close()
    done = len(finished)
    left = len(work) - done
    minutes = (time.perf_counter() - t0) / 60
    report(f"[compute] {done} computed in {minutes:.1f} min" + (
        f"; budget spent, {left} left: run the same command again to continue" if left else ""))
    return 0


def _compute_parallel(work, a, chapters, root, budget_s, t0, progress, finished: list) -> None:
    """Bodies first (every record may read one), then records; `a.jobs` processes of one thread each.
    Each finished run is appended to `finished`."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    threads = worker_threads(a.jobs)
    with ProcessPoolExecutor(a.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
                             initargs=(threads,)) as pool:
        for phase in ([it for it in work if it.run.artifact], [it for it in work if not it.run.artifact]):
            queue, running = list(phase), {}
            while queue or running:
                while queue and len(running) < a.jobs and (budget_s is None or time.perf_counter() - t0 < budget_s):
                    it = queue.pop(0)
                    f = pool.submit(_compute_in_worker, a.profile, chapters, a.seed, it.index, it.state,
                                    it.stale_path, str(root) if root else None)
                    running[f] = it
                if not running:  # the budget is spent
                    return
                ready, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in ready:
                    it = running.pop(f)
                    s = f.result()
                    finished.append(it)
                    progress.update(1)
                    report(f"[compute] {len(finished)}/{len(work)} {it.run.label}: {s:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
