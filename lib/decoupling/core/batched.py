"""Many small models trained as one: K members of one architecture stacked along a new leading dim.

Why: the book trains hundreds of tiny models (the generality grid's fine-tunes, seeds, prequential blocks,
the digits MLPs). One such model is far too small to fill a GPU — each step is a few dozen kernel
launches on (B, d=64) tensors, and the launch overhead is most of the wall time. Stacking K models turns
each matmul into one batched matmul over K, so K models cost about one launch sequence
(benchmarks/bench_batched.py measures it).

How: `torch.func.stack_module_state` stacks the members' parameters into tensors (K, ...);
`functional_call` runs the shared architecture with member k's slice; `vmap` maps that over k. Each
member keeps everything a sequential run (`train.train_module` / `train_classifier` / `train_lm`) has:

- its own init (`make_model(seed)`), its own data order (`train.example_order` / `train.lm_windows` with
  its data seed) and its own dataset (sizes may differ: shorter batches are padded and weighted out);
- its own loss: the step backpropagates the *sum* of the members' mean losses, and member k's
  parameters only enter member k's loss, so each gets exactly its own gradient;
- its own gradient clipping: the global-norm clip of `torch.nn.utils.clip_grad_norm_`, with the norm
  taken over member k's slice of every tensor and only that slice scaled;
- its own optimizer state: AdamW is elementwise, so one AdamW over the stacked tensors is K AdamWs (the
  schedule, weight decay groups and betas are shared — members share a TrainConfig).

So K batched runs equal K sequential runs up to floating-point summation order
(tests/test_batched.py checks it). Limits: members share the architecture (a scaling ladder's sizes do
not: batch seeds within a size); dropout draws differ from a sequential run (vmap randomness="different").

For GPT-2 classifiers a right-padded attention mask is dropped (`train.redundant_mask`): with causal
attention the real tokens never see the padding, and without a mask SDPA takes the causal flash kernel and
`transformers` does not inspect the mask (a data-dependent branch vmap cannot trace).

The API, from the top: `train_many` (classifiers and modules, cross-entropy) and `train_many_lm` (language
models) are one-line calls; both are `stack` (K untrained members) + `train_stacked` (one batched run with
any per-member loss), which an experiment with its own loss calls directly. A `Many` holds the members:
`.forward` runs all of them at once, `.predict_proba` / `.predict_log_proba` give each one's q(y|x),
`.member(k)` one module.

Used by the experiments that train many same-shaped models (chapters 1, 2 and 4).
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from decoupling.core import models, train
from decoupling.core.device import DEVICE, autocast


@dataclass
class Many:
    """K members: stacked parameters plus each member's results (the dict train.train_* returns; empty
    until trained)."""
    template: nn.Module  # the shared architecture (member 0's module, on the CPU, weights not trained)
    params: dict[str, torch.Tensor]  # name -> (K, ...) on DEVICE
    buffers: dict[str, torch.Tensor]  # name -> (K, ...) on DEVICE
    results: list[dict] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(next(iter(self.params.values())))

    def member(self, k: int) -> nn.Module:
        """Member k as an ordinary module on the CPU (a copy of the template with k's weights)."""
        m = copy.deepcopy(self.template)
        with torch.no_grad():
            for name, p in m.named_parameters():
                p.copy_(self.params[name][k])
            for name, b in m.named_buffers():
                if name in self.buffers:
                    b.copy_(self.buffers[name][k])
        return m.eval()

    def models(self) -> list[nn.Module]:
        return [self.member(k) for k in range(len(self))]

    def subset(self, ks: Sequence[int]) -> "Many":
        """Members ks only, as a Many (e.g. to evaluate just those)."""
        ix = torch.as_tensor(list(ks), device=next(iter(self.params.values())).device)
        return Many(self.template, {n: p[ix] for n, p in self.params.items()},
                    {n: v[ix] for n, v in self.buffers.items()}, [self.results[k] for k in ks] if self.results else [])

    @torch.no_grad()
    def forward(self, *inputs: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """Every member's output (the logits of a model that returns an object with .logits) in one vmapped
        forward, (K, ...). Each input has a leading member dim K — member k reads inputs[j][k] — or, with
        shared=True, every member reads the same inputs (a common evaluation set: paired comparisons)."""
        skel = _skeleton(self.template).eval()  # an evaluation: no dropout
        fwd = vmap(lambda p, b, *x: _logits(_member_forward(skel, p, b), x, hf=False),
                   in_dims=(0, 0) + (None if shared else 0,) * len(inputs))
        with autocast(self.template), _attention_backend():
            return fwd(self.params, self.buffers, *inputs)

    @torch.no_grad()
    def predict_log_proba(self, inputs_for_member: Callable[[int], tuple],
                          batch_size: int = 256) -> list[np.ndarray]:
        """Each member's log q(y|x) on its own inputs, as train.predict_log_proba gives it (a float64
        log_softmax of the logits: finite at any logit gap) — `inputs_for_member(k)` returns `(x,)` or
        `(input_ids, attention_mask)` as train.predict_proba takes them; float64 numpy (n_k, C) per member.
        All members are evaluated in one vmapped forward per batch (inputs are padded to the longest)."""
        per = [tuple(torch.as_tensor(t) for t in inputs_for_member(k)) for k in range(len(self))]
        hf, per = _prepare_inputs(self.template, per)
        ns = [len(p[0]) for p in per]
        n = max(ns)
        if n == 0:
            return [np.zeros((0, 0)) for _ in ns]
        # pad every member to the longest input by repeating a row (trimmed away below)
        per = [tuple(torch.cat([t, t[-1:].expand(n - len(t), *t.shape[1:])]) if len(t) else
                     torch.zeros(n, *t.shape[1:], dtype=t.dtype) for t in p) for p in per]
        xs = [torch.stack([p[j] for p in per]).to(DEVICE) for j in range(len(per[0]))]  # (K, n, ...)
        call = _member_logits_fn(self.template, hf)
        fwd = vmap(lambda p, b, *x: call(p, b, x))
        qs = []
        for i in range(0, n, batch_size):
            with autocast(self.template), _attention_backend():
                logits = fwd(self.params, self.buffers, *(x[:, i:i + batch_size] for x in xs))  # (K, b, C)
            qs.append(logits.double().log_softmax(-1))  # outside autocast: float64, as computed
        q = torch.cat(qs, 1).cpu()  # (K, n, C)
        return [q[k, :nk].numpy() for k, nk in enumerate(ns)]

    def predict_proba(self, inputs_for_member: Callable[[int], tuple], batch_size: int = 256) -> list[np.ndarray]:
        """Each member's q(y|x): exp of `predict_log_proba`, float64 numpy (n_k, C) per member."""
        return [np.exp(q) for q in self.predict_log_proba(inputs_for_member, batch_size)]


# ---------------------------------------------------------------------------------------------- stacking
def stack(make_model: Callable[[int], nn.Module], seeds: Sequence[int]) -> Many:
    """K = len(seeds) untrained members `make_model(seeds[k])`, stacked: a `Many` to pass to train_stacked.
    The members must share one architecture (parameter names and shapes)."""
    # one mode for all (stack_module_state insists; a from_pretrained model arrives in eval mode, a fresh
    # one in train mode); training and prediction set the mode they need on the shared skeleton anyway
    members = [make_model(s).train() for s in seeds]
    if not members:
        raise ValueError("train_many: need at least one member")
    shapes = [[(n, p.shape) for n, p in m.named_parameters()] for m in members]
    if any(s != shapes[0] for s in shapes[1:]):
        raise ValueError("train_many: members must share one architecture (same parameter names and shapes)")
    params, buffers = stack_module_state(members)  # (K, ...) copies, detached
    params = {n: p.detach().to(DEVICE).requires_grad_(True) for n, p in params.items()}
    buffers = {n: b.to(DEVICE) for n, b in buffers.items()}
    return Many(members[0], params, buffers)


def _skeleton(template: nn.Module) -> nn.Module:
    """The architecture for functional_call, which supplies every tensor. A CPU copy, not a "meta" one:
    moving to meta unties tied weights (the LM head and the embedding), and a member is small."""
    return copy.deepcopy(template)


def _attention_backend():
    """SDPA's math path (matmul + softmax) for vmapped members, on every device. Why: the fused kernels
    either have no batching rule (CPU flash: vmap falls back to a Python loop over members) or break under
    one (CUDA memory-efficient backward on an H100, torch 2.11: "LSE is not correctly aligned (strideH)",
    because folding the member dim into the batch leaves the saved log-sum-exp with strides the kernel
    rejects). The members here attend over ≤ 256 positions, so the L×L scores the math path materialises
    are cheap, and one code path on CPU and GPU keeps batched == sequential testable here."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    return sdpa_kernel(SDPBackend.MATH)


def _member_forward(skel: nn.Module, params: dict, buffers: dict) -> Callable:
    """Member-k's module as a function: forward(*args, **kwargs) runs the architecture with k's tensors."""
    def forward(*a, **kw):
        return functional_call(skel, (params, buffers), a, kw)
    return forward


def _logits(forward: Callable, inputs: tuple, hf: bool) -> torch.Tensor:
    if hf:  # a transformers classifier: input_ids (+ a mask when it cannot be dropped)
        out = forward(input_ids=inputs[0], attention_mask=inputs[1] if len(inputs) > 1 else None)
    else:
        out = forward(*inputs)
    return out.logits if hasattr(out, "logits") else out  # (B, C)


def _member_logits_fn(template: nn.Module, hf: bool):  # for evaluation: no dropout
    skel = _skeleton(template).eval()
    return lambda params, buffers, inputs: _logits(_member_forward(skel, params, buffers), inputs, hf)


def _prepare_inputs(template: nn.Module, per: list[tuple]) -> tuple[bool, list[tuple]]:
    """(is a transformers model, inputs with redundant masks dropped). A mask is dropped only when it is
    redundant for every member, so all members take the same path."""
    hf = isinstance(template, models.PreTrainedModel) and all(len(p) == 2 for p in per)
    if hf and all(train.redundant_mask(template, p[0], p[1]) for p in per):
        per = [train.drop_redundant_mask(template, p) for p in per]
    return hf, per


# ---------------------------------------------------------------------------------------------- clipping
@torch.no_grad()
def clip_per_member(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """clip_grad_norm_ for each member separately: member k's norm is over its slices [k] of every
    gradient; only those slices are scaled (same coefficient and epsilon as torch). Returns the (K,) norms."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads])  # (n_tensors, K)
    total = norms.norm(dim=0)  # (K,)
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))
    return total


# ---------------------------------------------------------------------------------------------- the loop
def _loop_many(template, params, buffers, cfg: train.TrainConfig, batch_at: Callable[[int], tuple],
               member_loss: Callable, units_per_step: list[int], unit: str, flops_per_step: list[float],
               desc: str) -> list[dict]:
    """train._loop for K stacked members: the same step loop (train.step_loop) and result keys
    (train.run_record) per member. member_loss(params_k, buffers_k, *batch_k) -> scalar; batch_at(step)
    gives tensors with a leading member dim K. The optimizer is train's AdamW groups over the stacked
    tensors (decay by the members' own dims): AdamW is elementwise, so one over the stack is K AdamWs."""
    K = len(units_per_step)
    opt, trainable = train.adamw(template, cfg, params.items(), member_dims=1)
    step_losses = train.compiled(vmap(member_loss, randomness="different"), cfg)  # the members as one graph

    def step_loss(step):
        with autocast(template), _attention_backend():
            loss = step_losses(params, buffers, *batch_at(step))  # (K,)
        loss.sum().backward()  # member k's parameters see only member k's loss
        if cfg.grad_clip > 0:
            clip_per_member(trainable, cfg.grad_clip)
        return loss

    try:
        run = train.step_loop(cfg, opt, step_loss, (K,), sum(units_per_step), unit, f"{desc} (K={K})")
    finally:
        for p in params.values():
            p.requires_grad_(False)
    per_member = run.losses.float().cpu().T.tolist()  # (K, steps): the one host transfer of the run
    total_flops = sum(flops_per_step) * cfg.steps
    all_rate = sum(units_per_step) * cfg.steps / run.wall_s if run.wall_s > 0 else float("nan")
    # wall_s is shared (the members trained together); mfu is of the whole batched run
    return [{**train.run_record(per_member[k], cfg, unit, units_per_step[k], flops_per_step[k], run.wall_s,
                                total_flops),
             "members": K, f"all_members_{unit}s_per_s": all_rate} for k in range(K)]


def train_stacked(many: Many, member_loss: Callable, batch_at: Callable[[int], tuple], cfg: train.TrainConfig,
                  units_per_step: int | Sequence[int], flops_per_step: float | Sequence[float],
                  unit: str = "example", desc: str = "train_many") -> Many:
    """Train the members of `many` in place as one batched run, each on its own loss; returns `many` with
    `.results` filled (train._loop's keys per member: loss curve, FLOPs, wall time shared by all).

    member_loss(forward, *batch_k) -> scalar: member k's loss, where forward(*args, **kwargs) calls member
    k's module (as train._loop's loss_of calls the model) and batch_k is member k's slice of
    batch_at(step) — tensors with a leading member dim K. Per member (or one value for all):
    units_per_step (examples or tokens a step sees, for the progress bar and throughput) and
    flops_per_step (training FLOPs of a step, e.g. B × models.flops_per_example)."""
    K = len(many)
    units = [units_per_step] * K if isinstance(units_per_step, int) else list(units_per_step)
    flops = [flops_per_step] * K if isinstance(flops_per_step, (int, float)) else list(flops_per_step)
    skel = _skeleton(many.template).train()  # as train._loop: dropout on where the architecture has it

    def loss(p, b, *batch_k):
        return member_loss(_member_forward(skel, p, b), *batch_k)

    many.results = _loop_many(many.template, many.params, many.buffers, cfg, batch_at, loss, units, unit, flops,
                              desc)
    return many


# ---------------------------------------------------------------------------------------------- supervised
def train_many(make_model: Callable[[int], nn.Module], seeds: Sequence[int],
               data_for_member: Callable[[int], tuple], cfg: train.TrainConfig,
               data_seeds: Sequence[int] | None = None, desc: str = "train_many") -> Many:
    """Train K = len(seeds) classifiers/modules with cross-entropy, as one batched run.

    Member k is `make_model(seeds[k])` trained on `data_for_member(k) = (inputs, y)` — inputs `(x,)` for a
    module mapping x -> logits, `(input_ids, attention_mask)` for a transformers classifier — with data
    order seed `data_seeds[k]` (default seeds[k]). Equals, up to float rounding,
        train.train_module(make_model(s), x, y, replace(cfg, seed=s))   (or train_classifier)
    for every member. Returns a `Many`: `.results[k]` has train_module's keys, `.member(k)` the model.
    """
    seeds = list(seeds)
    data_seeds = list(data_seeds) if data_seeds is not None else seeds
    if len(data_seeds) != len(seeds) or not seeds:
        raise ValueError("train_many: need one data seed per member and at least one member")
    many = stack(make_model, seeds)
    template = many.template
    data = [data_for_member(k) for k in range(len(seeds))]
    per = [tuple(torch.as_tensor(t) for t in inputs) for inputs, _ in data]
    hf, per = _prepare_inputs(template, per)
    ys = [torch.as_tensor(y).long() for _, y in data]
    ns = [len(y) for y in ys]
    # All members' data concatenated once on the device; member k's rows start at offsets[k].
    offsets = np.cumsum([0] + ns[:-1]).tolist()
    inputs = tuple(torch.cat([p[j] for p in per]).to(DEVICE) for j in range(len(per[0])))
    y_all = torch.cat(ys).to(DEVICE)
    # Full batch for every member: every step sees the same batch, so one step's indices are enough (the
    # (steps, K, B) table would take GBs for 10⁴ steps of 10² members of 10³ examples) and the batch is
    # gathered once.
    full_batch = cfg.batch_size >= max(ns)
    rows = 1 if full_batch else cfg.steps
    orders = [train.example_order(n, cfg.batch_size, rows, s) for n, s in zip(ns, data_seeds)]
    B = max(o.shape[1] for o in orders)
    # Members whose batches are shorter (a small dataset, full batch) are padded with a repeated row
    # that gets weight 0: their loss is still the mean over their own examples.
    idx = torch.zeros(rows, len(seeds), B, dtype=torch.long)
    w = torch.zeros(len(seeds), B)
    for k, (o, off) in enumerate(zip(orders, offsets)):
        idx[:, k, :o.shape[1]] = o + off
        idx[:, k, o.shape[1]:] = off
        w[k, :o.shape[1]] = 1.0
    idx, w = idx.to(DEVICE), w.to(DEVICE)

    def member_loss(forward, w_k, y_k, *x_k):
        ce = F.cross_entropy(_logits(forward, x_k, hf).float(), y_k, reduction="none")  # (B,)
        return (ce * w_k).sum() / w_k.sum()

    def gather(step):
        ix = idx[step]  # (K, B)
        return (w, y_all[ix], *(t[ix] for t in inputs))
    batch_at = (lambda step, batch=gather(0): batch) if full_batch else gather

    seq_len = per[0][0].shape[1] if hf else 1
    fpe = models.flops_per_example(template, seq_len)
    units = [o.shape[1] for o in orders]
    return train_stacked(many, member_loss, batch_at, cfg, units, [u * fpe for u in units], "example", desc)


# ---------------------------------------------------------------------------------------------- LM
def train_many_lm(make_model: Callable[[int], nn.Module], seeds: Sequence[int],
                  tokens_for_member: Callable[[int], torch.Tensor], cfg: train.TrainConfig,
                  data_seeds: Sequence[int] | None = None, desc: str = "pretrain_many") -> Many:
    """K language models of one size as one batched run: member k is `make_model(seeds[k])` trained on the
    1-D stream `tokens_for_member(k)` with train.lm_windows(seed=data_seeds[k]). Equals train.train_lm per
    member up to float rounding (no eval here: `Many.member(k)` then train.eval_lm)."""
    seeds = list(seeds)
    data_seeds = list(data_seeds) if data_seeds is not None else seeds
    many = stack(make_model, seeds)
    T = many.template.config.n_positions
    streams = [torch.as_tensor(tokens_for_member(k)).long() for k in range(len(seeds))]
    offsets = np.cumsum([0] + [len(s) for s in streams[:-1]]).tolist()
    tokens = torch.cat(streams).to(DEVICE)
    starts = torch.stack([train.lm_windows(len(s), T, cfg.batch_size, cfg.steps, d) + off
                          for s, d, off in zip(streams, data_seeds, offsets)], 1).to(DEVICE)  # (steps, K, B)
    window = torch.arange(T + 1, device=DEVICE)

    def member_loss(forward, x, y):
        logits = forward(input_ids=x).logits  # (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))

    def batch_at(step):
        wdw = tokens[starts[step][..., None] + window]  # (K, B, T+1)
        return wdw[..., :-1], wdw[..., 1:]

    fpe = models.flops_per_example(many.template, T)
    return train_stacked(many, member_loss, batch_at, cfg, cfg.batch_size * T, cfg.batch_size * fpe, "token", desc)


# ---------------------------------------------------------------------------------------------- helpers
def sequential(make_model: Callable[[int], nn.Module], seeds: Sequence[int],
               data_for_member: Callable[[int], tuple], cfg: train.TrainConfig,
               data_seeds: Sequence[int] | None = None) -> tuple[list[nn.Module], list[dict]]:
    """The reference train_many replaces: one train.train_module / train_classifier per member.
    For tests and benchmarks."""
    data_seeds = list(data_seeds) if data_seeds is not None else list(seeds)
    mods, outs = [], []
    for k, (s, ds) in enumerate(zip(seeds, data_seeds)):
        m = make_model(s)
        inputs, y = data_for_member(k)
        c = dataclasses.replace(cfg, seed=ds)
        if len(inputs) == 2:
            outs.append(train.train_classifier(m, inputs[0], inputs[1], torch.as_tensor(y), c))
        else:
            outs.append(train.train_module(m, inputs[0], torch.as_tensor(y), c))
        mods.append(m)
    return mods, outs
