"""One training loop, for pretraining a language model and for fine-tuning a classifier (or any module).

Why our own loop and not `transformers.Trainer`: our models are tiny, so per-step overhead (DataLoader,
collator, host-to-device copies, callbacks, accelerate wrappers) is a large share of the wall time, and a
tiny GPU model is launch-bound unless compiled with CUDA graphs (`compile="reduce-overhead"`). Here the
data is moved to the device once, batches are gathered on the device from indices drawn up front, and the
loss stays on the device, read back once at the end. benchmarks/bench_trainer.py measures the difference.

- Device and dtype come from `decoupling.core.device` (chosen once): bf16 autocast + fused AdamW on CUDA, fp32
  on CPU, where two runs with one seed give bitwise-identical weights.
- AdamW with decoupled weight decay on matrices only (Loshchilov & Hutter 2019; nanoGPT's grouping),
  linear warmup then cosine decay to min_lr_frac·lr (Chinchilla-style), global-norm gradient clipping.
- Randomness: a torch.Generator seeded from `TrainConfig.seed` draws the data order; dropout runs under a
  forked, seeded global RNG (`models.seeded`, on the training device too), so nothing leaks to the caller.
- One skeleton for every run: `step_loop` (schedule, optimizer step, progress bar, clock, RNG) and
  `run_record` (the result keys) serve `_loop` here and `batched`'s K stacked members alike.
- Predictions: `predict_log_proba` is a float64 log_softmax of the logits, exact at any logit gap;
  `predict_proba` is its exp. Code lengths and KLs should read the log-probabilities (`measures`, log=True).
- LM data order depends only on (seed, steps, batch_size, block_size, len(tokens)) — the same windows in
  the same order for every model size (so a scaling ladder or a θ0/θP pair differs only in the model).

Used by chapters 1, 3 and 4 through the experiments modules.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from decoupling import progress
from decoupling.core import models
from .device import DEVICE, autocast, describe, peak_flops, sync

LN2 = math.log(2.0)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 200  # optimizer steps (LM: each sees batch_size·block_size tokens)
    batch_size: int = 32  # sequences (LM) or examples per step; ≥ n means full-batch
    lr: float = 3e-3  # peak learning rate; small models tolerate large rates (Kaplan 2020 eq. D.1)
    weight_decay: float = 0.1  # AdamW decoupled decay, on ≥2-D tensors only (not biases, not LayerNorm)
    warmup_frac: float = 0.05  # fraction of steps of linear warmup before the cosine decay
    min_lr_frac: float = 0.1  # cosine decays to this fraction of lr (Hoffmann et al. 2022 decay 10×)
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas; 0.95 as in GPT-3/nanoGPT for stability
    body_lr_mult: float = 1.0  # lr multiplier for a pretrained body (base_model_prefix); 0 = linear probe
    seed: int = 0  # data order and dropout; model init has its own seed (models.build_*)
    # torch.compile the model; a string is the mode. On an H100, "reduce-overhead" (CUDA graphs) trained the
    # mini LM 4.8× faster than Trainer, plain compile 1.8×, eager 1.15× (benchmarks/bench_trainer.py): tiny
    # models are launch-bound. It pays for long fixed-shape runs only: each new shape compiles again (~30 s).
    compile: bool | str = False
    log_every: int = 50  # refresh the progress bar's loss every N steps (one host sync each, bar only)
    eval_every: int = 0  # evaluate (LM: on eval_tokens; else the `evaluate` hook) every N steps; 0 = at the end
    eval_windows: int = 64  # LM: evenly spaced eval windows of block_size tokens
    progress: bool = True  # tqdm bar with tokens/s (decoupling.progress); DECOUPLING_PROGRESS=0 turns all off


def kaplan_lr(n_params: int) -> float:
    """Kaplan et al. 2020 eq. D.1: a learning rate that works across sizes, LR(N) ≈ 0.003239 − 0.0001395·ln N
    (N = non-embedding parameters). A starting point for the per-size rate of the scaling ladder."""
    return 0.003239 - 0.0001395 * math.log(n_params)


def _progress_on(cfg: TrainConfig) -> bool:
    return cfg.progress and progress.enabled()


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine from lr down to min_lr_frac·lr at the last step."""
    warmup = int(cfg.warmup_frac * cfg.steps)
    if step < warmup:
        return cfg.lr * (step + 1) / (warmup + 1)
    frac = min(1.0, (step - warmup) / max(1, cfg.steps - 1 - warmup))
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * frac)))


def adamw(model: nn.Module, cfg: TrainConfig, named=None, member_dims: int = 0
          ) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
    """AdamW; decay on matrices and embeddings, none on biases and norms (nanoGPT). A pretrained body
    (the module under `base_model_prefix`) gets lr·body_lr_mult; with 0 it is frozen (a linear probe).

    `named` (name, tensor) pairs to optimise instead of `model.named_parameters()`: the stacked tensors of
    `batched`, whose first `member_dims` dims index members (so a member's bias is not a matrix); a tensor
    whose parameter in `model` is frozen stays frozen."""
    prefix = getattr(model, "base_model_prefix", None) if cfg.body_lr_mult != 1.0 else None
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in (model.named_parameters() if named is None else named):
        if not trainable[name]:
            p.requires_grad_(False)
            continue
        body = bool(prefix) and name.startswith(prefix + ".")
        if body and cfg.body_lr_mult == 0.0:
            p.requires_grad_(False)  # restored by the caller; no gradient is computed for a frozen body
            continue
        groups.setdefault((p.dim() - member_dims >= 2, body), []).append(p)
    param_groups = [{"params": ps, "weight_decay": cfg.weight_decay if decay else 0.0,
                     "lr_mult": cfg.body_lr_mult if body else 1.0} for (decay, body), ps in groups.items()]
    params = [p for g in param_groups for p in g["params"]]
    # fused: one kernel for the whole update (CUDA, and CPU since torch 2.4) instead of a loop over tensors
    opt = torch.optim.AdamW(param_groups, lr=cfg.lr, betas=cfg.betas, fused=True)
    return opt, params


def compiled(fn: Callable, cfg: TrainConfig) -> Callable:
    """fn under torch.compile when cfg.compile asks for it (a string is the mode), else fn itself."""
    if not cfg.compile:
        return fn
    return torch.compile(fn, mode=cfg.compile if isinstance(cfg.compile, str) else None)


@dataclass
class Steps:
    """What `step_loop` measured."""
    losses: torch.Tensor  # (steps, *loss shape), still on the device
    wall_s: float  # the loop's seconds, evaluation included
    evals: list[tuple[int, float, float]]  # (step, value, training seconds before it), before the last step
    eval_s: float  # seconds of wall_s spent evaluating


def step_loop(cfg: TrainConfig, opt: torch.optim.Optimizer, step_loss: Callable[[int], torch.Tensor],
              loss_shape: tuple, units_per_step: int, unit: str, desc: str,
              evaluate: Callable[[], float] | None = None) -> Steps:
    """The optimizer-step skeleton of every training run here, one model (`_loop`) or K stacked members
    (`batched`): the learning-rate schedule, the optimizer step, the progress bar, the clock, and dropout
    drawing from a seeded, private global RNG (`models.seeded` on the training device).

    step_loss(step) does one step's forward and backward (and gradient clipping) and returns its loss,
    of shape loss_shape. Per-step losses stay on the device (no per-step host sync). evaluate(), when
    given, runs every cfg.eval_every steps before the last; its seconds are timed apart from training's,
    so a learning curve can be read against training time alone."""
    losses = torch.zeros(cfg.steps, *loss_shape, device=DEVICE)
    evals: list[tuple[int, float, float]] = []
    eval_s = 0.0
    show = _progress_on(cfg)
    bar = progress.bar(total=cfg.steps * units_per_step, unit=unit, unit_scale=True, desc=desc,
                       disable=not show)  # to the terminal, not into the executed notebook

    def run() -> float:
        nonlocal eval_s
        sync()
        t0 = time.perf_counter()
        for step in range(cfg.steps):
            lr = lr_at(step, cfg)
            for g in opt.param_groups:
                g["lr"] = lr * g["lr_mult"]
            loss = step_loss(step)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses[step] = loss.detach()
            bar.update(units_per_step)
            if show and cfg.log_every and (step + 1) % cfg.log_every == 0:
                bar.set_postfix(loss=f"{loss.mean().item():.3f}", refresh=False)  # a sync, only with a bar
            if evaluate is not None and cfg.eval_every and (step + 1) % cfg.eval_every == 0 \
                    and step + 1 < cfg.steps:
                sync()  # let the queued steps finish before reading the clock
                te = time.perf_counter()
                evals.append((step + 1, evaluate(), te - t0 - eval_s))
                eval_s += time.perf_counter() - te
        sync()
        return time.perf_counter() - t0

    cuda = [DEVICE.index or 0] if DEVICE.type == "cuda" else []
    try:
        wall = models.seeded(cfg.seed, run, devices=cuda)
    finally:
        bar.close()
    return Steps(losses, wall, evals, eval_s)


def run_record(losses: list[float], cfg: TrainConfig, unit: str, units_per_step: int, flops_per_step: float,
               wall: float, run_flops: float) -> dict:
    """The keys every training run reports: per-step loss, its mean over the last tenth, units seen
    (examples or tokens) and their rate, wall time, training FLOPs, and MFU — of `run_flops`, the FLOPs of
    everything the wall time covers (all the members of a batched run)."""
    peak = peak_flops()
    return {
        "loss": losses,
        "final_train_loss": float(np.mean(losses[-max(1, cfg.steps // 10):])) if losses else float("nan"),
        "steps": cfg.steps,
        unit + "s": units_per_step * cfg.steps,
        unit + "s_per_s": units_per_step * cfg.steps / wall if wall > 0 else float("nan"),
        "wall_s": wall,
        "flops": flops_per_step * cfg.steps,
        "flops_per_step": flops_per_step,
        "mfu": (run_flops / wall / peak) if peak and wall > 0 else None,
        "device": describe(),
    }


def _loop(model: nn.Module, cfg: TrainConfig, batch_at: Callable[[int], tuple], loss_of: Callable,
          units_per_step: int, unit: str, flops_per_step: float, desc: str,
          evaluate: Callable[[nn.Module], float] | None = None) -> dict:
    """One model's run, shared by train_lm / train_classifier / train_module.

    batch_at(step) -> batch (already on DEVICE); loss_of(forward, batch) -> scalar loss tensor.
    evaluate(model), when given, runs every cfg.eval_every steps and after the last step (`step_loop`).
    """
    model.to(DEVICE)
    frozen_before = {id(p) for p in model.parameters() if not p.requires_grad}
    opt, params = adamw(model, cfg)
    forward = compiled(model, cfg)  # the module's weights are shared; only the forward (and backward) compile

    def step_loss(step):
        batch = batch_at(step)
        with autocast(model):
            loss = loss_of(forward, batch)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        return loss

    def evaluate_mid():
        value = evaluate(model)
        model.train()  # the hook may have switched to eval mode
        return value

    model.train()
    try:
        run = step_loop(cfg, opt, step_loss, (), units_per_step, unit, desc,
                        evaluate_mid if evaluate is not None else None)
    finally:
        for p in model.parameters():
            if id(p) not in frozen_before:
                p.requires_grad_(True)
    model.eval()
    flops = flops_per_step * cfg.steps
    out = run_record(run.losses.float().cpu().tolist(), cfg, unit, units_per_step, flops_per_step, run.wall_s,
                     flops)  # the one host transfer of the run
    if evaluate is not None:
        evals = run.evals + [(cfg.steps, evaluate(model), run.wall_s - run.eval_s)]
        out["eval"] = [[s, v] for s, v, _ in evals]  # [step, evaluate(model)] per evaluation
        out["eval_train_s"] = [t for _, _, t in evals]  # training seconds before each, evaluation excluded
        out["eval_s"] = run.eval_s  # seconds of wall_s spent evaluating: wall_s − eval_s is training alone
    return out


# ---------------------------------------------------------------------------------------------- LM
def lm_windows(n_tokens: int, block_size: int, batch_size: int, steps: int, seed: int) -> torch.Tensor:
    """Start offsets of the training windows, (steps, batch_size), from a generator seeded with `seed`.
    Drawn row by row, so a shorter run sees a prefix of a longer run's windows."""
    if n_tokens < block_size + 2:
        raise ValueError(f"need more than block_size+1 = {block_size + 1} tokens, got {n_tokens}")
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n_tokens - block_size, (steps, batch_size), generator=g)  # window = start..start+T


def _lm_loss(forward, batch) -> torch.Tensor:
    x, y = batch  # (B, T), (B, T)
    logits = forward(input_ids=x).logits  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))


@torch.no_grad()
def eval_lm(model: nn.Module, tokens: torch.Tensor, block_size: int | None = None, n_windows: int = 64,
            batch_size: int = 32) -> float:
    """Mean next-token cross-entropy in nats on `n_windows` evenly spaced windows of `tokens` (deterministic;
    every position of a window is scored, so the early positions see a short context)."""
    block_size = block_size or model.config.n_positions
    tokens = tokens.to(DEVICE)
    last = len(tokens) - block_size - 1
    starts = torch.linspace(0, last, min(n_windows, last + 1), device=DEVICE).long()  # (W,)
    offsets = torch.arange(block_size + 1, device=DEVICE)
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=DEVICE)
    for i in range(0, len(starts), batch_size):
        w = tokens[starts[i:i + batch_size, None] + offsets]  # (B, T+1)
        with autocast(model):
            logits = model(input_ids=w[:, :-1]).logits  # (B, T, V)
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), w[:, 1:].reshape(-1),
                                 reduction="sum")
    model.train(was_training)
    return float(total) / (len(starts) * block_size)


def train_lm(model: nn.Module, tokens: torch.Tensor, cfg: TrainConfig,
             eval_tokens: torch.Tensor | None = None, desc: str = "pretrain") -> dict:
    """Pretrain a causal LM on random contiguous windows of a 1-D token stream.

    Returns per-step training loss (nats), final eval loss in nats and bits/token (if eval_tokens),
    tokens, tokens/s, wall time, training FLOPs (PaLM appendix B) and MFU on GPU.
    """
    T = model.config.n_positions
    tokens = tokens.to(DEVICE, torch.long)  # (N,) moved once
    starts = lm_windows(len(tokens), T, cfg.batch_size, cfg.steps, cfg.seed).to(DEVICE)  # (steps, B)
    offsets = torch.arange(T + 1, device=DEVICE)  # (T+1,)

    def batch_at(step):
        w = tokens[starts[step, :, None] + offsets]  # (B, T+1), gathered on the device
        return w[:, :-1], w[:, 1:]

    evaluate = None
    if eval_tokens is not None:
        eval_tokens = eval_tokens.to(DEVICE, torch.long)
        evaluate = lambda m: eval_lm(m, eval_tokens, T, cfg.eval_windows, cfg.batch_size)  # noqa: E731
    out = _loop(model, cfg, batch_at, _lm_loss, cfg.batch_size * T, "token",
                cfg.batch_size * models.flops_per_example(model, T), desc, evaluate)
    if evaluate is not None:
        out["eval_loss_nats"] = out["eval"][-1][1]
        out["eval_bits_per_token"] = out["eval"][-1][1] / LN2
    return out


# ---------------------------------------------------------------------------------------------- classifiers
def redundant_mask(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> bool:
    """True when a GPT-2 model's attention mask changes nothing we read, so it can be left out: right
    padding (each row ones, then zeros) under causal attention — no real token attends to a later one —
    with the pad id in every padded position, so the classifier still pools the last real token.
    Without a mask, SDPA takes its causal (flash) kernel and `transformers` skips its look at the mask's
    values (a host sync per forward on GPU; a data-dependent branch `vmap` cannot trace). Checked once."""
    if attention_mask is None or not isinstance(model, (models.GPT2LMHeadModel,
                                                        models.GPT2ForSequenceClassification)):
        return False
    m = torch.as_tensor(attention_mask).bool()
    if m.ndim != 2 or bool((m[:, 1:] & ~m[:, :-1]).any()):  # a 0 followed by a 1: not right padding
        return False
    pad = model.config.pad_token_id
    return not bool((~m).any()) or (pad is not None and bool((torch.as_tensor(input_ids)[~m] == pad).all()))


def drop_redundant_mask(model: nn.Module, inputs: tuple) -> tuple:
    """`inputs` without the attention mask when `redundant_mask` says it changes nothing. Then the
    model's own per-forward padding check is turned off too: with a pad id and no mask, `transformers`
    looks at the ids' values on every forward (`warn_if_padding_and_no_attention_mask`: a host sync per
    step on GPU) — we have just checked the padding ourselves, once."""
    if len(inputs) != 2 or not redundant_mask(model, *inputs):
        return inputs
    body = getattr(model, getattr(model, "base_model_prefix", ""), model)
    body.warn_if_padding_and_no_attention_mask = _padding_checked  # an instance attribute: this model only
    return inputs[:1]


def _padding_checked(input_ids, attention_mask) -> None:
    return None


def _logits(forward, inputs: tuple) -> torch.Tensor:
    """Logits of a Hugging Face classifier (input_ids, attention_mask) or of any module mapping x -> logits."""
    if len(inputs) == 2:
        return forward(input_ids=inputs[0], attention_mask=inputs[1]).logits
    out = forward(*inputs)
    return out.logits if hasattr(out, "logits") else out


def _supervised_loss(forward, batch) -> torch.Tensor:
    inputs, y = batch
    return F.cross_entropy(_logits(forward, inputs).float(), y)  # (B, K) vs (B,)


def example_order(n: int, batch_size: int, steps: int, seed: int) -> torch.Tensor:
    """Minibatch indices (steps, min(batch_size, n)): epochs of seeded permutations, concatenated.
    Full batch (every example every step, fixed order) when batch_size ≥ n."""
    if batch_size >= n:
        return torch.arange(n).expand(steps, n)
    g = torch.Generator().manual_seed(seed)
    need = steps * batch_size
    perms = [torch.randperm(n, generator=g) for _ in range(-(-need // n))]
    return torch.cat(perms)[:need].view(steps, batch_size)


def _fit_supervised(model: nn.Module, inputs: tuple, y: torch.Tensor, cfg: TrainConfig, desc: str,
                    evaluate: Callable[[nn.Module], float] | None) -> dict:
    n = len(y)
    hf = len(inputs) == 2
    inputs = drop_redundant_mask(model, inputs)  # flash attention, no per-step look at the mask
    inputs = tuple(t.to(DEVICE) for t in inputs)  # moved once
    y = y.to(DEVICE, torch.long)
    order = example_order(n, cfg.batch_size, cfg.steps, cfg.seed).to(DEVICE)  # (steps, B)
    B = order.shape[1]

    def batch_at(step):
        idx = order[step]
        return tuple(t[idx] for t in inputs), y[idx]

    seq_len = inputs[0].shape[1] if hf else 1
    return _loop(model, cfg, batch_at, _supervised_loss, B, "example",
                 B * models.flops_per_example(model, seq_len), desc, evaluate)


def train_classifier(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     labels: torch.Tensor, cfg: TrainConfig, desc: str = "fine-tune",
                     evaluate: Callable[[nn.Module], float] | None = None) -> dict:
    """Fine-tune (or train from scratch) a sequence classifier with cross-entropy. Same loop as train_lm.

    With `evaluate` (e.g. test accuracy of the model it is given): a learning curve, `evaluate(model)`
    every cfg.eval_every steps and after the last; the result then has "eval" ([step, value] pairs),
    "eval_train_s" (training seconds before each point) and "eval_s" (evaluation's share of wall_s).
    Training FLOPs: models.flops_per_example."""
    return _fit_supervised(model, (input_ids, attention_mask), labels, cfg, desc, evaluate)


def train_module(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                 desc: str = "train", evaluate: Callable[[nn.Module], float] | None = None) -> dict:
    """Train any module mapping x -> logits (e.g. the digits MLP) with cross-entropy. Same loop, same
    `evaluate` hook as train_classifier."""
    return _fit_supervised(model, (x,), y, cfg, desc, evaluate)


@torch.no_grad()
def predict_log_proba(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      batch_size: int = 256) -> np.ndarray:
    """log q(y|x) in nats, float64 numpy (n, K): a float64 log_softmax of the logits (which may come out of
    bf16 autocast). Finite at any logit gap, so a confidently wrong label costs its true bits (a gap of
    200 nats: 288.5 bits) where a float32 softmax underflows to 0 past a gap of ~104 nats. With
    attention_mask: a Hugging Face classifier; without: any module mapping x -> logits."""
    was_training = model.training
    model.to(DEVICE).eval()
    inputs = (input_ids,) if attention_mask is None else drop_redundant_mask(model, (input_ids, attention_mask))
    inputs = tuple(t.to(DEVICE) for t in inputs)
    out = []
    for i in range(0, len(inputs[0]), batch_size):
        with autocast(model):
            logits = _logits(model, tuple(t[i:i + batch_size] for t in inputs))
        out.append(torch.log_softmax(logits.double(), dim=-1))
    model.train(was_training)
    if not out:
        return np.zeros((0, 0))
    return torch.cat(out).cpu().numpy()


def predict_proba(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                  batch_size: int = 256) -> np.ndarray:
    """Predictive distribution q(y|x), float64 numpy (n, K): exp of `predict_log_proba` (a probability
    underflows to 0 only past a gap of ~745 nats; code lengths from `predict_log_proba` never do)."""
    return np.exp(predict_log_proba(model, input_ids, attention_mask, batch_size))
