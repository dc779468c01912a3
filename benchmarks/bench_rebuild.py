"""Cold vs warm rebuild of the real book: `decoupling rebuild` twice, in fresh temporary store and build dirs.

Why this exists: the results store is what makes a rebuild with nothing changed cheap (a
rebuild with nothing changed trains nothing). Cold = empty DECOUPLING_STORE and DECOUPLING_BUILD: every
experiment trains, every chapter executes, the HTML is built. Warm = the same command again: chapters
whose fingerprint is unchanged are not re-executed, and the HTML is not rebuilt. Goal: warm/cold ≤ 0.05.
--force-warm adds a third run that re-executes every chapter (`rebuild --force`) with all results from
the store — the cost of a plotting or prose change. At `--profile full` the cold time is also the book's
time on this device (goal on one H100: ≤ 20 minutes).

The data cache (DECOUPLING_DATA) is shared with the repository, not copied; committed `full` records in
results/ are visible to both runs (that is what they are for) and are counted in the output.

    python benchmarks/bench_rebuild.py --quick                    # CPU: smoke, no HTML
    python benchmarks/bench_rebuild.py --chapters memory --json rebuild.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="smoke", help="smoke (default) or full")
    p.add_argument("--chapters", nargs="+", metavar="NAME", help="only these chapters (default: all)")
    p.add_argument("--root", default=None, help="the book's root (default: this repository)")
    p.add_argument("--no-html", action="store_true", help="execute chapters and check claims, skip jupyter-book")
    p.add_argument("--force-warm", action="store_true", help="also time a forced re-execution from the store")
    p.add_argument("--timeout", type=float, default=None, help="seconds per chapter (passed to rebuild)")
    p.add_argument("--keep", action="store_true", help="keep the temporary store and build dirs")
    p.add_argument("--jobs", type=int, default=2, help="chapters side by side (default 2, as `make book`)")
    p.add_argument("--quick", action="store_true", help="= --no-html (a CPU smoke of the benchmark)")
    p.add_argument("--json", help="also write the numbers to this JSON file")
    return p.parse_args(argv)


def rebuild(args, env: dict, force: bool = False) -> tuple[float, subprocess.CompletedProcess]:
    cmd = [sys.executable, "-m", "decoupling", "rebuild", "--profile", args.profile]
    cmd += ["--chapters", *args.chapters] if args.chapters else []
    cmd += ["--no-html"] if args.no_html or args.quick else []
    cmd += ["--timeout", str(args.timeout)] if args.timeout else []
    cmd += ["--force"] if force else []
    cmd += ["--jobs", str(args.jobs)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, r


def main(argv=None):
    args = parse_args(argv)
    root = Path(args.root).resolve() if args.root else Path(__file__).resolve().parents[1]
    data_dir = os.environ.get("DECOUPLING_DATA", str(Path(__file__).resolve().parents[1] / ".cache" / "data"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-rebuild-"))
    env = {**os.environ, "DECOUPLING_ROOT": str(root), "DECOUPLING_DATA": data_dir,
           "DECOUPLING_STORE": str(tmp / "store"), "DECOUPLING_BUILD": str(tmp / "build"),
           "DECOUPLING_PROGRESS": "0"}
    committed = len(list((root / "results").rglob("*.json"))) if (root / "results").exists() else 0
    from decoupling.core import device  # the device the chapters will train on (same process environment)
    print(f"device: {device.describe()}")
    print(f"book: {root}  profile: {args.profile}  jobs: {args.jobs}  chapters: {' '.join(args.chapters or ['(all)'])}  "
          f"html: {not (args.no_html or args.quick)}  committed results/ records: {committed}")
    out = {"benchmark": "rebuild", "device": device.name(), "profile": args.profile, "jobs": args.jobs,
           "chapters": args.chapters, "html": not (args.no_html or args.quick), "committed_records": committed}
    try:
        runs = [("cold", False), ("warm", False)] + ([("warm_force", True)] if args.force_warm else [])
        for label, force in runs:
            wall, r = rebuild(args, env, force)
            out[f"{label}_s"], out[f"{label}_rc"] = wall, r.returncode
            print(f"  {label:10s}: {wall:8.1f} s  (exit {r.returncode})")
            if r.returncode != 0:
                tail = (r.stdout + r.stderr).strip().splitlines()[-15:]
                print("    " + "\n    ".join(tail))
            if label == "cold":
                out["store_records"] = len(list((tmp / "store").rglob("*.json")))
        if out["cold_rc"] == 0:
            for label in [k for k, _ in runs if k != "cold"]:
                ratio = out[f"{label}_s"] / out["cold_s"]
                out[f"{label}_ratio"] = ratio
                print(f"  {label}/cold: {ratio:.3f}  (goal ≤ 0.05: {'met' if ratio <= 0.05 else 'NOT met'})")
            if args.profile == "full" and not args.chapters:
                met = out["cold_s"] <= 1200
                print(f"  whole book at full: {out['cold_s'] / 60:.1f} min (goal ≤ 20 min on one H100: "
                      f"{'met' if met else 'NOT met'} on {device.name()})")
        else:
            print("  the cold rebuild failed: no ratio (output above)")
    finally:
        if args.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    raise SystemExit(0 if main().get("cold_rc") == 0 else 1)
