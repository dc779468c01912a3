"""K small models trained as one batched run (decoupling.core.batched) vs one after another (decoupling.core.train).

Why this exists: the book trains many tiny, same-shaped models (fine-tune grids, seeds, digits MLPs). One
of them leaves a GPU idle between kernel launches; batched.train_many stacks K of them so each step is one
launch sequence for all K. Goal: ≥ 8× on GPU, ≥ 1.5× on CPU at K = 32.

Both sides train the same K members — same init seeds, same data, same data order, same TrainConfig —
and each side is timed end to end (setup included) after a short warm-up of both. The batched losses are
compared with the sequential ones as a sanity check (equal up to float rounding). Models:
  mlp   the digits MLP shape (64 -> hidden -> 5), synthetic or real digits data
  gpt2  a GPT-2 sequence classifier from decoupling.core.models (preset `test` on CPU, `tiny` on GPU) on
        synthetic right-padded token sequences

    python benchmarks/bench_batched.py --quick            # CPU, a minute
    python benchmarks/bench_batched.py --json out.json    # GPU: both models at K = 32
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings

os.environ.setdefault("DECOUPLING_PROGRESS", "0")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["mlp", "gpt2", "both"], default="both")
    p.add_argument("-K", "--members", type=int, default=32, help="models trained together (default 32)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per model (default 200; --quick 40)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--preset", default=None, help="decoupling.core.models.PRESETS for gpt2 (default test on CPU, "
                                                  "tiny on GPU)")
    p.add_argument("--data", choices=["synthetic", "digits"], default="synthetic",
                   help="mlp data: synthetic, or the real digits/0-4 task (needs `decoupling data`)")
    p.add_argument("--compile", action="store_true", help="torch.compile both sides (TrainConfig.compile)")
    p.add_argument("--quick", action="store_true", help="fewer steps (a CPU smoke of the benchmark)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads on CPU (default 1: on a shared, busy CPU more threads mostly wait)")
    p.add_argument("--json", help="also write the numbers to this JSON file")
    return p.parse_args(argv)


def mlp_setup(args):
    import torch
    from torch import nn

    from decoupling.core import models
    if args.data == "digits":
        from decoupling import data
        x, y = data.arrays("digits/0-4")["train"]
        x, y = torch.from_numpy(x), torch.from_numpy(y)
    else:  # a random linear teacher: learnable, no files needed
        g = torch.Generator().manual_seed(0)
        x = torch.randn(900, 64, generator=g)
        y = (x @ torch.randn(64, 5, generator=g)).argmax(1)

    def make(seed):
        return models.seeded(seed, lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 5)))
    return make, lambda k: ((x,), y), "digits MLP 64-128-5"


def gpt2_setup(args, gpu):
    import torch

    from decoupling.core import models
    name = args.preset or ("tiny" if gpu else "test")
    cfg = models.PRESETS[name]
    T, n = min(cfg.block_size, 64), 1024
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(4, T + 1, (n,), generator=g)
    mask = (torch.arange(T)[None] < lengths[:, None]).long()
    ids = torch.randint(4, cfg.vocab_size, (n, T), generator=g) * mask  # right-padded with pad id 0
    y = ids[:, 0] % 3  # the label is readable from the first token

    def make(seed):
        return models.build_classifier(cfg, num_labels=3, seed=seed)
    return make, lambda k: ((ids, mask), y), f"GPT-2 classifier preset {name!r} (T={T})"


def measure(model: str, args, gpu: bool) -> dict:
    import torch

    from decoupling.core import batched, train
    make, data_for, what = mlp_setup(args) if model == "mlp" else gpt2_setup(args, gpu)
    steps = args.steps or (40 if args.quick else 200)
    seeds = list(range(args.members))
    cfg = train.TrainConfig(steps=steps, batch_size=args.batch_size, lr=3e-3, compile=args.compile, progress=False)
    warm = train.TrainConfig(steps=3, batch_size=args.batch_size, compile=args.compile, progress=False)
    batched.train_many(make, seeds[:2], data_for, warm)  # warm-up: kernels, allocator, compile caches
    batched.sequential(make, seeds[:1], data_for, warm)

    t0 = time.perf_counter()
    many = batched.train_many(make, seeds, data_for, cfg)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, seq = batched.sequential(make, seeds, data_for, cfg)
    t_seq = time.perf_counter() - t0
    diff = max(abs(a - b) for r, s in zip(many.results, seq) for a, b in zip(r["loss"], s["loss"]))
    ratio = t_seq / t_batched
    goal = 8.0 if gpu else 1.5
    print(f"[{model}] {what}: K={args.members} × {steps} steps × batch {args.batch_size}")
    print(f"  sequential (train.train_module/classifier ×K): {t_seq:8.2f} s")
    print(f"  batched    (batched.train_many, one run)     : {t_batched:8.2f} s"
          f"   (max |loss diff| vs sequential {diff:.1e})")
    print(f"  ratio: {ratio:.2f}×  (goal ≥ {goal}× on {'GPU' if gpu else 'CPU'}: "
          f"{'met' if ratio >= goal else 'NOT met'})")
    mfu = many.results[0]["mfu"]
    return {"model": model, "what": what, "K": args.members, "steps": steps, "batch_size": args.batch_size,
            "sequential_s": t_seq, "batched_s": t_batched, "ratio": ratio, "goal": goal,
            "met": ratio >= goal, "max_loss_diff": diff, "batched_mfu": mfu, "compile": args.compile}


def main(argv=None):
    args = parse_args(argv)
    import torch
    import transformers

    from decoupling.core import device
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    gpu = device.DEVICE.type == "cuda"
    if not gpu:
        torch.set_num_threads(args.threads or 1)
    print(f"device: {device.describe()}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}")
    runs = []
    for m in (["mlp", "gpt2"] if args.model == "both" else [args.model]):
        try:
            runs.append(measure(m, args, gpu))
        except Exception as e:  # noqa: BLE001 - keep the other model's numbers
            import traceback
            traceback.print_exc()
            runs.append({"model": m, "error": f"{type(e).__name__}: {e}"})
    out = {"benchmark": "batched", "device": device.name(), "runs": runs}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
