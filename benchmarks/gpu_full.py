"""On a machine with a CUDA GPU: the GPU benchmarks, then the book's `full` records with `decoupling compute`.

The records are the same ones a CPU computes (`pipeline.plan` declares them; `decoupling compute` is the
one way to compute them): on a GPU the whole `full` profile takes minutes. Where the repository and its
prepared data are (`make data`, then `decoupling data --profile full` for the larger corpora):

    python benchmarks/gpu_full.py --count                 # what is missing and what it costs, nothing run
    python benchmarks/gpu_full.py --budget-min 50         # benchmarks, then compute for at most 50 minutes

The records land in results/ with their provenance (commit, device, dtype, torch version, wall time);
commit them. An interrupted call keeps every finished record and the next one continues.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = (("bench_trainer.py", "--compile", "ours", "--compile-mode", "reduce-overhead"),
              ("bench_batched.py",), ("bench_mfu.py", "--data", "code"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-min", type=float, default=None, help="passed to decoupling compute")
    p.add_argument("--count", action="store_true", help="only `decoupling compute --profile full --count`")
    p.add_argument("--skip-bench", action="store_true", help="compute only, no benchmarks")
    a = p.parse_args(argv)
    compute = [sys.executable, "-m", "decoupling", "compute", "--profile", "full"]
    if a.count:
        return subprocess.call(compute + ["--count"], cwd=REPO)
    if not a.skip_bench:
        for script, *args in BENCHMARKS:
            print(f"== {script}", flush=True)
            subprocess.call([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO)
    if a.budget_min is not None:
        compute += ["--budget-min", str(a.budget_min)]
    return subprocess.call(compute, cwd=REPO)


if __name__ == "__main__":
    sys.exit(main())
