"""What the `full` profile costs, counted without training anything.

The counting lives in the library (`decoupling.pipeline.cost`, called by `decoupling compute --count`):
every declared run's experiment is called with its `full` config while the loops and forward passes are
replaced by recorders, giving optimizer steps, tokens and forward-only work per model shape, and minutes
at each shape's rate measured on this machine (counts and rates cached under .cache/cost, so a second
call is instant). This script prints that table for every declared run (computed or not), or what each
pretrained body reads:

    PYTHONPATH=lib python benchmarks/full_cost.py                     # every chapter (cold: minutes)
    PYTHONPATH=lib python benchmarks/full_cost.py --chapters memory tyranny
    PYTHONPATH=lib python benchmarks/full_cost.py --bodies            # steps, tokens seen, epochs per body
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    from decoupling.pipeline import plan
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chapters", nargs="+", choices=plan.CHAPTERS, default=list(plan.CHAPTERS),
                   help="chapters to count (default: all, in book order)")
    p.add_argument("--profile", default="full", help="profile to count (default full)")
    p.add_argument("--bodies", action="store_true",
                   help="only print what each pretrained body reads at smoke and full: steps, tokens seen, unique "
                        "tokens, epochs (full: <= 4; fetches the full corpora the first time)")
    return p.parse_args(argv)


def bodies_table() -> int:
    """Per body and profile: optimizer steps, token positions seen, unique training tokens, epochs. Exit 1
    when a full body would read its corpus more than pretrain.MAX_EPOCHS_FULL times."""
    from decoupling.experiments import pretrain as P
    print(f"{'profile':<7} {'body':<9} {'corpus':<6} {'steps':>6} {'tokens seen':>12} {'unique tokens':>14} "
          f"{'epochs':>7} {'held out':>9}")
    worst = 0.0
    for profile in ("smoke", "full"):
        for domain in P.COMPARED + ("shuffled",):
            p = P.plan(P.config(profile, domain))
            print(f"{profile:<7} {domain:<9} {p['corpus']:<6} {p['steps']:>6} {p['tokens_seen']:>12,} "
                  f"{p['unique_tokens']:>14,} {p['epochs']:>7.2f} {p['eval_tokens']:>9,}")
            if profile == "full":
                worst = max(worst, p["epochs"])
    ok = worst <= P.MAX_EPOCHS_FULL
    print(f"full: at most {worst:.2f} epochs per body ({'<=' if ok else '>'} {P.MAX_EPOCHS_FULL:g}); every body of a "
          "profile reads the same number of unique tokens (the smallest compared corpus, less the held-out tokens)")
    return 0 if ok else 1


def main(argv=None) -> int:
    sys.path.insert(0, str(REPO / "lib"))
    args = parse_args(argv)
    if args.bodies:
        return bodies_table()
    from decoupling.pipeline import compute
    return compute.main(["--profile", args.profile, "--count", "--all", "--chapters", *args.chapters])


if __name__ == "__main__":
    sys.exit(main())
