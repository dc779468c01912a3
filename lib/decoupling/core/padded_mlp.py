"""Many one-hidden-layer MLPs of different widths (and seeds), trained as ONE batched run: a model utility
of chapter 3 (book/tyranny.md), kept in `core` because it is not an experiment.

The digits experiments of `experiments.tyranny` (`memorization`, `compression`) fit every width, every seed,
every label set and every prequential block with one recipe (`_recipe`: full-batch AdamW, no
regularization). On a GPU these fits are launch-bound, so they train together: each width embedded in the
widest (`PaddedMLP`) and stacked by decoupling.core.batched (`_fit_mlps`). Each member equals its own
sequential fit (`_fit_mlp`) up to float rounding (tests/test_tyranny.py).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

def mlp(d_in: int, width: int, k: int, seed: int) -> nn.Module:
    """One-hidden-layer ReLU MLP d_in → width → k (width 0: a linear model, multinomial logistic
    regression), PyTorch's default init under a private seed."""
    from decoupling.core.models import seeded
    if width == 0:
        return seeded(seed, lambda: nn.Linear(d_in, k))
    return seeded(seed, lambda: nn.Sequential(nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, k)))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _recipe(n: int, steps: int, lr: float, weight_decay: float, seed: int):
    """The one training recipe of every digits MLP here: full-batch AdamW on cross-entropy (n examples per
    step), no augmentation, no dropout, no early stopping, so nothing stands between the network and
    memorizing its training set. Linear warmup over 2 % of the steps, cosine decay to 1 % of lr."""
    from decoupling.core import train
    return train.TrainConfig(steps=steps, batch_size=n, lr=lr, weight_decay=weight_decay, warmup_frac=0.02,
                             min_lr_frac=0.01, grad_clip=0.0, seed=seed, progress=False)


def _fit_mlp(X, y, width: int, K: int, steps: int, lr: float, weight_decay: float, seed: int):
    """One fit of `_recipe` (decoupling.core.train.train_module): the reference that `_fit_mlps` equals per
    member (tests/test_tyranny.py). The experiments call `_fit_mlps`."""
    from decoupling.core import train
    model = mlp(X.shape[1], width, K, seed)
    train.train_module(model, torch.as_tensor(X), torch.as_tensor(y),
                       _recipe(len(y), steps, lr, weight_decay, seed), desc=f"mlp w={width}")
    return model


class PaddedMLP(nn.Module):
    """`mlp(d_in, width, k)` embedded in a wider network, so that MLPs of different widths can share one
    vmapped training step (decoupling.core.batched stacks members of ONE architecture):

        f(x) = relu(x W1ᵀ + b1) (W2 diag m)ᵀ + b2 + s·(x Sᵀ)

    W1 (top, d_in), W2 (k, top) hold a width-w member in their first w rows/columns; the fixed 0/1 mask m
    (a buffer: per member under vmap) is 1 on those w units. A linear member (width 0, logistic regression)
    has m = 0 and its weights in the skip S, switched on by the buffer s ∈ {0, 1}; b2 is every member's
    output bias. The skip exists only when some member is linear (`skip=True`).

    Why a member is exactly its width-w model under AdamW: every weight outside its block starts at 0 and
    gets gradient exactly 0. A masked unit's column of W2 enters only as W2[:, j]·m_j = W2[:, j]·0, so its
    gradient is 0, and so is the signal back into the unit (∂f/∂h_j = (W2 diag m)[:, j] = 0), hence W1's
    row j and b1[j] get 0; S enters only as s·S = 0. Adam's moments then stay 0, its update
    0/(√0 + ε) = 0, and decoupled weight decay shrinks 0 to 0: those weights are 0 for the whole run, and
    the rest computes the width-w network (up to float summation order: the sums run over zeros too). The
    masks multiply the weights (k × top), not the activations (members × batch × top): cheaper on a CPU."""

    def __init__(self, d_in: int, top: int, k: int, skip: bool):
        super().__init__()
        self.hidden = nn.Linear(d_in, max(1, top))
        self.out = nn.Linear(max(1, top), k)
        self.skip = nn.Linear(d_in, k, bias=False) if skip else None
        self.register_buffer("mask", torch.zeros(max(1, top)))  # m: 1 on the member's hidden units
        self.register_buffer("skip_on", torch.zeros(()))  # s: 1 for a linear member

    def forward(self, x):
        y = F.linear(torch.relu(self.hidden(x)), self.out.weight * self.mask, self.out.bias)
        if self.skip is not None:
            y = y + F.linear(x, self.skip.weight * self.skip_on)
        return y

    @classmethod
    @torch.no_grad()
    def embed(cls, model: nn.Module, top: int, skip: bool) -> "PaddedMLP":
        """`model` (an `mlp(...)`, trained or not) in the top-left block of a zero PaddedMLP of width top."""
        lin = isinstance(model, nn.Linear)
        first = model if lin else model[0]
        d_in, k = first.in_features, (model if lin else model[2]).out_features
        if lin and not skip:
            raise ValueError("a linear member needs skip=True")
        p = cls(d_in, top, k, skip)
        for t in (*p.parameters(), *p.buffers()):
            t.zero_()
        if lin:
            p.skip.weight.copy_(model.weight)
            p.out.bias.copy_(model.bias)
            p.skip_on.fill_(1.0)
            return p
        w = first.out_features
        if w > top:
            raise ValueError(f"width {w} does not fit in {top}")
        p.hidden.weight[:w].copy_(first.weight)
        p.hidden.bias[:w].copy_(first.bias)
        p.out.weight[:, :w].copy_(model[2].weight)
        p.out.bias.copy_(model[2].bias)
        p.mask[:w] = 1.0
        return p

    @torch.no_grad()
    def unpad(self, seed: int = 0) -> nn.Module:
        """The member as the plain `mlp(d_in, width, k)` it stands for (its block of the weights)."""
        d_in, k = self.hidden.in_features, self.out.out_features
        if self.skip is not None and bool(self.skip_on):
            m = mlp(d_in, 0, k, seed)
            m.weight.copy_(self.skip.weight)
            m.bias.copy_(self.out.bias)
            return m.eval()
        w = int(self.mask.sum())
        m = mlp(d_in, w, k, seed)
        m[0].weight.copy_(self.hidden.weight[:w])
        m[0].bias.copy_(self.hidden.bias[:w])
        m[2].weight.copy_(self.out.weight[:, :w])
        m[2].bias.copy_(self.out.bias)
        return m.eval()


def _fit_mlps(fits, K: int, steps: int, lr: float, weight_decay: float, seed: int | Sequence[int],
              desc: str = "mlps", batch: bool = True) -> list[nn.Module]:
    """Every fit (X_k, y_k, width_k) of `_fit_mlp`, as ONE batched run: each member a `PaddedMLP` of the
    widest width holding the seeded init of its own width (`mlp(d_in, width_k, K, seed_k)`), trained by
    decoupling.core.batched.train_many on its own data (sizes may differ; each is full batch) with the shared
    recipe. `seed`: one int for every member, or one per fit (seed_k: its init, and its recipe's seed).
    Returns the trained models unpadded, in order — equal to `[_fit_mlp(X_k, y_k, width_k, ..., seed_k)]`
    up to float rounding (tests/test_tyranny.py). batch=False: one `_fit_mlp` after another.

    Why: on a GPU these models are launch-bound (~5–10 ms per optimizer step whatever the batch), so the
    cost is the number of sequential steps. One run of `steps` replaces len(fits)·steps. On a CPU the cost
    is arithmetic, and padding makes a width-2 member on 29 examples cost a width-128 one on the largest
    set: the smoke compression run (42 fits of 6 widths and 7 sizes) took 2.4× longer batched than one
    after another, while memorization (full-size fits) was faster batched; each experiment chooses."""
    fits = list(fits)
    seeds = [int(seed)] * len(fits) if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    if len(seeds) != len(fits):
        raise ValueError(f"_fit_mlps: {len(seeds)} seeds for {len(fits)} fits")
    if not batch:
        return [_fit_mlp(X, y, w, K, steps, lr, weight_decay, s) for (X, y, w), s in zip(fits, seeds)]
    from decoupling.core import batched
    d_in = fits[0][0].shape[1]
    widths = [int(w) for _, _, w in fits]
    top, skip = max(widths), 0 in widths
    # ≥ every n: full batch. Its seed orders the data, which a full batch does not use; each member's init
    # seed and data seed are its own (`data_seeds`), as in its `_fit_mlp`.
    cfg = _recipe(max(len(y) for _, y, _ in fits), steps, lr, weight_decay, seeds[0])
    cfg = dataclasses.replace(cfg, progress=True)  # one long run now: its bar replaces the per-fit loop's
    many = batched.train_many(
        lambda k: PaddedMLP.embed(mlp(d_in, widths[k], K, seeds[k]), top, skip), range(len(fits)),
        lambda k: ((torch.as_tensor(fits[k][0]),), torch.as_tensor(fits[k][1])), cfg,
        data_seeds=seeds, desc=desc)
    return [many.member(k).unpad(seeds[k]) for k in range(len(fits))]


def _log_proba(model, X) -> np.ndarray:
    """log q(y|x) (train.predict_log_proba): a model that memorized random labels is confidently wrong on
    the test set, and its code lengths stay exact however large the logit gap."""
    from decoupling.core import train
    return train.predict_log_proba(model, torch.as_tensor(X))
