"""Tokens per second on one CPU thread, fp32 against bf16 autocast, for the models the book runs on a CPU.

For every GPT-2 size of `decoupling.core.models.PRESETS` from nano up (a training step as `train._loop` takes
it: the library's AdamW groups, its LM loss, gradient clipping) and for every lab encoder of
`decoupling.data.platforms.ZOO` (a frozen forward pass, as the zoo's features take it), the same step is
timed twice in one process: with no autocast (fp32) and under `torch.autocast("cpu", dtype=torch.bfloat16)`.
Each rate comes from `decoupling.pipeline.rates.measure`, the probe `decoupling compute --count` measures every
shape with: one warm-up call, then calls for `--seconds`. The table says where bf16 pays on this CPU (it
needs bf16 units: avx512_bf16 or AMX; elsewhere it is emulated and slower).

    PYTHONPATH=lib python benchmarks/cpu_pilot.py                    # nano .. medium and the three encoders
    PYTHONPATH=lib python benchmarks/cpu_pilot.py --sizes nano small --encoders minilm --seconds 1

On a machine others share the rates move with their load; the ratio, measured back to back, moves less.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("DECOUPLING_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

SIZES = ("nano", "micro", "tiny", "mini", "small", "medium")  # models.PRESETS the book may train at full on a CPU


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="*", default=list(SIZES), help=f"GPT-2 presets (default: {' '.join(SIZES)})")
    p.add_argument("--encoders", nargs="*", default=None, help="lab encoders (default: every one of data.platforms.ZOO)")
    p.add_argument("--batch", type=int, default=32, help="GPT-2 sequences per step (default 32, the full bodies')")
    p.add_argument("--encoder-batch", type=int, default=16, help="texts per encoder pass (default 16)")
    p.add_argument("--encoder-tokens", type=int, default=64, help="tokens per text (default 64, the zoo's cut)")
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measurement (default 2)")
    return p.parse_args(argv)


def precisions():
    """(name, autocast context factory): fp32 is no autocast at all."""
    import torch
    return (("fp32", contextlib.nullcontext), ("bf16", lambda: torch.autocast("cpu", dtype=torch.bfloat16)))


def gpt2_step(preset: str, batch: int, ctx):
    """(run(n), tokens per call) for a training step of the GPT-2 `preset` on random tokens."""
    import torch

    from decoupling.core import models, train
    from decoupling.pipeline.rates import timed
    cfg = models.PRESETS[preset]
    lm = models.build_lm(cfg, seed=0)
    opt, params = train.adamw(lm, train.TrainConfig())
    ids = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size + 1), generator=torch.Generator().manual_seed(0))
    x, y = ids[:, :-1], ids[:, 1:]
    lm.train()

    def step():
        with ctx():
            loss = train._lm_loss(lm, (x, y))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return timed(step), batch * cfg.block_size


def encoder_pass(model, batch: int, tokens: int, ctx):
    """(run(n), tokens per call) for a frozen forward pass of a lab encoder over batch x tokens."""
    import torch

    from decoupling.pipeline.rates import timed
    vocab = model.config.vocab_size
    x = torch.randint(5, vocab, (batch, tokens), generator=torch.Generator().manual_seed(0))
    m = torch.ones_like(x)

    @torch.no_grad()
    def call():
        with ctx():
            model(input_ids=x, attention_mask=m)
    return timed(call), batch * tokens


def main(argv=None) -> int:
    a = parse_args(argv)
    import torch
    from transformers import AutoModel

    from decoupling.core import models
    from decoupling.data import platforms
    from decoupling.pipeline.rates import cpu_name, measure
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = []
    for size in a.sizes:
        c = models.PRESETS[size]
        rates = [measure(*gpt2_step(size, a.batch, ctx), seconds=a.seconds) for _, ctx in precisions()]
        rows.append((f"GPT-2 {size}", f"train {c.n_layer}x{c.d_model}", f"{a.batch}x{c.block_size}",
                     f"{models.non_embedding_params(c) / 1e6:.2f}M", *rates))
    for name in a.encoders if a.encoders is not None else list(platforms.ZOO):
        try:
            path = platforms.path(name)
        except Exception as e:  # noqa: BLE001 - a platform not obtained here is reported, not fatal
            print(f"{name}: not available here ({type(e).__name__}: {e}); `decoupling data --platforms {name}`")
            continue
        model = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32).eval()
        rates = [measure(*encoder_pass(model, a.encoder_batch, a.encoder_tokens, ctx), seconds=a.seconds)
                 for _, ctx in precisions()]
        n = sum(p.numel() for p in model.parameters())
        rows.append((name, f"forward {type(model).__name__}", f"{a.encoder_batch}x{a.encoder_tokens}",
                     f"{n / 1e6:.1f}M", *rates))
        del model
    print(f"one thread, {cpu_name()}, torch {torch.__version__}")
    print(f"{'model':<14} {'what':<24} {'batch':>7} {'params':>7} {'fp32 tok/s':>11} {'bf16 tok/s':>11} {'bf16/fp32':>9}")
    for name, what, shape, params, fp32, bf16 in rows:
        print(f"{name:<14} {what:<24} {shape:>7} {params:>7} {fp32:>11,.0f} {bf16:>11,.0f} {bf16 / fp32:>9.2f}")
    print(f"({time.perf_counter() - t0:.0f} s; GPT-2 params are non-embedding, encoders' all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
