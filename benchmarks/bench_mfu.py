"""Model FLOPs utilisation of the largest scaling-ladder model, trained by the library's loop.

MFU (PaLM, Chowdhery et al. 2022, appendix B) = achieved model FLOP/s ÷ the device's peak dense bf16
FLOP/s. Model FLOPs per trained token = 6N + 12·L·d·T (models.flops_per_token: N counts the body's and
the tied output head's matmul parameters; attention as PaLM counts it, causal masking ignored), so
rematerialisation or padding never inflate it. Peak comes from decoupling.core.device.PEAK_BF16.
Goal: ≥ 35 % on an H100 for models.LADDER[-1].

torch.compile pays only if the compile time is won back: the script trains a short warm-up run (which
compiles) and then a long run on the same model (which reuses the compiled graph), and reports steady
tokens/s, MFU, the compile time (warm-up wall minus its steps at the steady rate) and — with
--compile both — the eager rate and the break-even number of steps.

    python benchmarks/bench_mfu.py --quick                 # CPU: tokens/s only ("MFU n/a on CPU")
    python benchmarks/bench_mfu.py --json mfu.json         # GPU: LADDER[-1], compiled and eager
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
    p.add_argument("--preset", default=None, help="decoupling.core.models.PRESETS name (default: the largest of "
                                                   "models.LADDER; --quick on CPU: tiny-cpu)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 300 GPU, 10 CPU, 20 --quick)")
    p.add_argument("--warmup-steps", type=int, default=None, help="steps of the warm-up run that compiles "
                                                                  "(default 20 GPU, 2 CPU)")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per step (default 256 GPU, 8 CPU)")
    p.add_argument("--compile", choices=["auto", "on", "off", "both"], default="auto",
                   help="torch.compile the model: auto = both on GPU (compiled and eager), off on CPU")
    p.add_argument("--mode", default=None, help="torch.compile mode for the compiled run (e.g. max-autotune, "
                                                 "reduce-overhead); default: torch's default")
    p.add_argument("--data", choices=["random", "code"], default="random",
                   help="random tokens, or decoupling.data.token_ids('code') (needs the data cache)")
    p.add_argument("--threads", type=int, default=None, help="torch threads on CPU (default: torch's)")
    p.add_argument("--quick", action="store_true", help="CPU smoke: a small preset, few steps")
    p.add_argument("--json", help="also write the numbers to this JSON file")
    return p.parse_args(argv)


def run(cfg, tokens, steps: int, warmup: int, batch: int, compile_: bool | str) -> dict:
    """Warm-up run (compiles when compile_), then the timed run on the same model object, whose
    compiled graph dynamo reuses (same module, same shapes)."""
    from decoupling.core import models, train
    model = models.build_lm(cfg, seed=0)
    tc = train.TrainConfig(steps=warmup, batch_size=batch, lr=1e-3, compile=compile_, progress=False)
    t0 = time.perf_counter()
    train.train_lm(model, tokens, tc)
    warm_wall = time.perf_counter() - t0
    out = train.train_lm(model, tokens, train.TrainConfig(steps=steps, batch_size=batch, lr=1e-3,
                                                          compile=compile_, progress=False))
    step_s = out["wall_s"] / steps
    return {"compile": bool(compile_), "mode": compile_ if isinstance(compile_, str) else None,
            "tokens_per_s": out["tokens_per_s"], "mfu": out["mfu"],
            "step_ms": 1e3 * step_s, "warmup_wall_s": warm_wall,
            "compile_s": max(0.0, warm_wall - warmup * step_s) if compile_ else 0.0,
            "final_loss": out["loss"][-1]}


def main(argv=None):
    args = parse_args(argv)
    import torch
    import transformers

    from decoupling.core import device, models
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    gpu = device.DEVICE.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.preset or ("tiny-cpu" if args.quick and not gpu else models.LADDER[-1])
    cfg = models.PRESETS[name]
    steps = args.steps or (300 if gpu else (20 if args.quick else 10))
    warmup = args.warmup_steps or (20 if gpu else 2)
    batch = args.batch_size or (256 if gpu else 8)
    modes = {"auto": [True, False] if gpu else [False], "on": [True], "off": [False],
             "both": [True, False]}[args.compile]
    if args.data == "code":
        from decoupling import data
        tokens = data.token_ids("code") % cfg.vocab_size
    else:
        tokens = torch.randint(0, cfg.vocab_size, (2_000_000,), generator=torch.Generator().manual_seed(0))
    fpt = models.flops_per_token(cfg, cfg.block_size)
    peak = device.peak_flops()
    print(f"device: {device.describe()}; peak bf16 {peak / 1e12:.0f} TFLOP/s" if peak else
          f"device: {device.describe()}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"model: {name} {cfg}; non-embedding N = {models.non_embedding_params(cfg):,}; "
          f"{fpt / 1e6:.1f} MFLOP per trained token (PaLM app. B: 6N + 12·L·d·T, head included)")
    print(f"{steps} timed steps × {batch} × {cfg.block_size} tokens (after a {warmup}-step warm-up); data: {args.data}")
    runs = [run(cfg, tokens, steps, warmup, batch, (args.mode or True) if c else False) for c in modes]
    for r in runs:
        mfu = f"MFU {100 * r['mfu']:.1f} % (goal ≥ 35 %: {'met' if r['mfu'] >= 0.35 else 'NOT met'})" \
            if r["mfu"] is not None else "MFU n/a on CPU"
        print(f"  {'compiled' if r['compile'] else 'eager   '}: {r['tokens_per_s']:12,.0f} tokens/s  "
              f"{r['step_ms']:8.2f} ms/step  {mfu}"
              + (f"; compile {r['compile_s']:.1f} s" if r["compile"] else ""))
    out = {"benchmark": "mfu", "device": device.name(), "preset": name, "steps": steps, "batch_size": batch,
           "block_size": cfg.block_size, "flops_per_token": fpt, "peak_flops": peak, "goal_mfu": 0.35, "runs": runs}
    best = max(runs, key=lambda r: r["tokens_per_s"])
    out.update(tokens_per_s=best["tokens_per_s"], mfu=best["mfu"], compiled=best["compile"])
    comp = [r for r in runs if r["compile"]]
    eager = [r for r in runs if not r["compile"]]
    if comp and eager:
        gain = eager[0]["step_ms"] - comp[0]["step_ms"]
        out["compile_speedup"] = eager[0]["step_ms"] / comp[0]["step_ms"]
        out["compile_break_even_steps"] = comp[0]["compile_s"] / (gain / 1e3) if gain > 0 else None
        print(f"  torch.compile: {out['compile_speedup']:.2f}× per step; pays after "
              + (f"{out['compile_break_even_steps']:.0f} steps" if gain > 0 else "never (no per-step gain)"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
