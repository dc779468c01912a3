"""Chapter 3, "The tyranny of memory" (book/tyranny.md): how loss scales with parameters, how many bits a
network can memorize, and why compression, not memorization, is what generalizes.

Four experiments, each a plain function of a frozen config returning a JSON-able dict:

- `scaling`: decoder LMs of ≥ 6 widths trained on the same Python source in the same window order, each
  at its own learning rate; eval loss per held-out window, so the power-law fits (pure, Kaplan et al.
  2020; with an irreducible term, Hoffmann et al. 2022) get bootstrap CIs over windows.
- `memorization`: Zhang et al. 2017's random-label experiment on handwritten digits with MLPs of several
  widths, and memorized bits per parameter (Morris et al. 2025's capacity, in our estimator).
- `compression`: prequential code length of the digit labels (Blier & Ollivier 2018) against test loss,
  across models, with a random-label memorizer for contrast.
- `double_descent`: min-norm least squares on random Fourier features of digits (Belkin et al. 2019;
  Nakkiran et al. 2020): test error peaks where the number of features equals the number of samples.

The digits MLPs of `memorization` and `compression` (every width, every label set, every prequential
block) are trained as one batched run per experiment (`_fit_mlps`: decoupling.core.batched with each width
embedded in the widest, `PaddedMLP`); each member equals its own sequential fit up to float rounding.

Digits are sklearn's 8×8 handwritten digits (Alpaydin & Kaynak 1998) as prepared by `decoupling.data`
("digits/0-4" and "digits/5-9" put back together: 10 classes, its train/test split).

Why one module of ~580 lines: the book keeps one experiments module per chapter (its results keys come from
this module's import graph, and the chapter imports it as one `E`), and the three digits experiments share
the data, the MLP recipe and `PaddedMLP`; each section below stands alone, read top to bottom.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from decoupling.core.device import cpu_threads  # every experiment runs on one CPU thread (see its docstring)

LN2 = math.log(2.0)


# ---------------------------------------------------------------------------------------------- shared
def digits10() -> dict:
    """The 10-class digits task: {"train": (X, y), "test": (X, y)}, X float32 (n, 64) in [0, 1], y int64.
    `decoupling.data` prepares digits as two 5-class tasks (for the transfer chapter); here they are put
    back together, labels mapped by their names ("0".."9"), keeping the prepared train/test split."""
    from decoupling import data
    out = {}
    parts = {name: (data.arrays(name), [int(s) for s in data.label_names(name)])
             for name in ("digits/0-4", "digits/5-9")}
    for split in ("train", "test"):
        X = np.concatenate([a[split][0] for a, _ in parts.values()]).astype(np.float32)
        y = np.concatenate([np.asarray(names)[a[split][1]] for a, names in parts.values()]).astype(np.int64)
        out[split] = (X, y)
    return out


def mlp(d_in: int, width: int, k: int, seed: int) -> nn.Module:
    """One-hidden-layer ReLU MLP d_in → width → k (width 0: a linear model, multinomial logistic
    regression), PyTorch's default init under a private seed."""
    from decoupling.core.models import seeded
    if width == 0:
        return seeded(seed, lambda: nn.Linear(d_in, k))
    return seeded(seed, lambda: nn.Sequential(nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, k)))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def memorized_bits(q, y, K: int, log: bool = False) -> np.ndarray:
    """Per-example memorized bits, log2 K − (−log2 q(y_i|x_i)): what the model knows about each random
    label beyond the uniform code. Summed over a random-label set, it is information that can only have
    come from storing the labels (they are independent of the inputs). A perfect predictor scores log2 K
    per example; a uniform one 0; a confidently wrong one is negative. q: probabilities (n, K), or
    natural-log probabilities with log=True (measures.log_loss_bits)."""
    from decoupling.core.measures import log_loss_bits
    return math.log2(K) - log_loss_bits(q, y, reduction="none", log=log)


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


def _fit_mlps(fits, K: int, steps: int, lr: float, weight_decay: float, seed: int,
              desc: str = "mlps") -> list[nn.Module]:
    """Every fit (X_k, y_k, width_k) of `_fit_mlp`, as ONE batched run: each member a `PaddedMLP` of the
    widest width holding the seeded init of its own width (`mlp(d_in, width_k, K, seed)`), trained by
    decoupling.core.batched.train_many on its own data (sizes may differ; each is full batch) with the shared
    recipe. Returns the trained models unpadded, in order — equal to `[_fit_mlp(X_k, y_k, width_k, ...)]`
    up to float rounding (tests/test_tyranny.py).

    Why: on a GPU these models are launch-bound (~5–10 ms per optimizer step whatever the batch), so the
    cost is the number of sequential steps. One run of `steps` replaces len(fits)·steps."""
    from decoupling.core import batched
    fits = list(fits)
    d_in = fits[0][0].shape[1]
    widths = [int(w) for _, _, w in fits]
    top, skip = max(widths), 0 in widths
    cfg = _recipe(max(len(y) for _, y, _ in fits), steps, lr, weight_decay, seed)  # ≥ every n: full batch
    cfg = dataclasses.replace(cfg, progress=True)  # one long run now: its bar replaces the per-fit loop's
    many = batched.train_many(
        lambda k: PaddedMLP.embed(mlp(d_in, widths[k], K, seed), top, skip), range(len(fits)),
        lambda k: ((torch.as_tensor(fits[k][0]),), torch.as_tensor(fits[k][1])), cfg,
        data_seeds=[seed] * len(fits), desc=desc)
    return [many.member(k).unpad(seed) for k in range(len(fits))]


def _log_proba(model, X) -> np.ndarray:
    """log q(y|x) (train.predict_log_proba): a model that memorized random labels is confidently wrong on
    the test set, and its code lengths stay exact however large the logit gap."""
    from decoupling.core import train
    return train.predict_log_proba(model, torch.as_tensor(X))


# ---------------------------------------------------------------------------------------------- scaling
@dataclass(frozen=True)
class ScalingConfig:
    """≥ 6 GPT-2-style decoders over ≥ 2 decades of non-embedding parameters N, one token budget for all,
    trained on the bytes of the Python standard library (the "code" corpus) in one window order.

    Why bytes (vocabulary 256) and not the book's BPE (4,096): with a 4,096-way softmax, a CPU-sized budget
    (0.2M tokens) leaves every model from d_model 8 to 32 at the unigram entropy (measured 6.30–6.34 nats
    vs 6.26 for unigram counts): no scaling to see. On bytes the same budget separates the sizes, and at
    `full` the 5.7 MB corpus gives 5.7M training positions instead of 1.7M tokens (fewer repeated epochs).
    smoke (2 CPU cores, ~1 min): N ≈ 0.9k → 0.1M, 0.3M bytes each — a tiny, undertrained range that shows
    the method, not a scaling law. full (one GPU; not yet timed on one): N ≈ 13k → 6.3M (the models.LADDER
    shapes), 20M bytes each."""
    sizes: tuple[tuple[int, int], ...] = ((1, 8), (1, 12), (1, 16), (1, 24), (2, 32), (2, 48), (2, 64))  # (n_layer, d_model)
    head_dim: int = 16  # n_head = max(1, d_model // head_dim)
    domain: str = "code"  # decoupling.data corpus (Python stdlib, docstrings/comments stripped)
    unit: str = "byte"  # "byte": UTF-8 bytes, vocab 256; "bpe": the book's tokenizer, vocab 4,096
    block_size: int = 128  # context T (in units)
    batch_size: int = 8  # sequences per step (small batches, more steps: better for a tiny budget)
    steps: int = 300  # optimizer steps: units per model = steps·batch_size·block_size
    lr_width: float = 0.32  # per-size peak lr = lr_width / d_model (see `lr_for`)
    eval_units: int = 200_000  # the stream's tail, held out (other documents: the order is random)
    eval_windows: int = 64  # evenly spaced eval windows of block_size (the bootstrap's units)
    n_evals: int = 5  # eval points along training, for the loss-vs-data/compute curves
    n_boot: int = 1000  # bootstrap resamples of the eval windows
    n_boot_floor: int = 20  # fewer for the E + A·N^−α fit: each resample is ~12 nonlinear fits (~0.3 s)
    seed: int = 0  # init and window order — the same window order for every size


def lr_for(d_model: int, lr_width: float) -> float:
    """Per-size peak learning rate lr = lr_width / d_model: Adam's best rate falls as 1/width (Yang et al.
    2022, "Tensor Programs V", μP's rule for hidden weights; here applied to all weights, a simplification).

    The constant comes from one pilot at the smoke budget (300 steps × 8 × 128 bytes, seed 0; held-out nats):
      d_model 8:  lr 0.0069 → 2.699, 0.023 → 2.659, 0.04 (= 0.32/8) → 2.561, 0.08 → 2.573
      d_model 24: lr 0.0067 (= 0.16/24) → 2.512, 0.0133 (= 0.32/24) → 2.468
      d_model 64: lr 0.0025 (= 0.16/64) → 2.419, 0.0049 (≈ 0.32/64) → 2.373, 0.01 → 2.485, 0.016 → 2.620
    so 0.32 is the best of {0.16, 0.32, 0.64} at every size tried. Kaplan et al. 2020's eq. D.1
    (`train.kaplan_lr`, fit to 2.5·10⁵-step runs) is too flat across sizes for runs this short: ×3 of it is
    too small at d 8 and ×10 too large at d 64. The pilot (10 runs) is not charged to the curve."""
    return lr_width / d_model


def stream(domain: str, unit: str) -> torch.Tensor:
    """A corpus as one 1-D LongTensor: its UTF-8 bytes, or its ids under the book's BPE tokenizer."""
    from decoupling import data
    if unit == "bpe":
        return data.token_ids(domain)
    if unit != "byte":
        raise ValueError(f"unit must be 'byte' or 'bpe', got {unit!r}")
    return torch.from_numpy(np.frombuffer(data.corpus(domain).encode("utf-8"), np.uint8).astype(np.int64))


def _window_losses(model, tokens: torch.Tensor, block_size: int, n_windows: int) -> list[float]:
    """Mean next-token loss (nats) in each of the `n_windows` evenly spaced windows that
    `train.eval_lm` averages over (same starts), kept per window for the bootstrap."""
    from decoupling.core.train import eval_lm
    last = len(tokens) - block_size - 1
    starts = torch.linspace(0, last, min(n_windows, last + 1)).long().tolist()
    return [eval_lm(model, tokens[s:s + block_size + 1], block_size, n_windows=1) for s in starts]


def local_slopes(N, L) -> list[float]:
    """−Δlog L / Δlog N between consecutive sizes: the power-law exponent the curve shows locally."""
    lN, lL = np.log(np.asarray(N, float)), np.log(np.asarray(L, float))
    return (-(np.diff(lL) / np.diff(lN))).tolist()


def half_exponents(N, L) -> tuple[float, float]:
    """(α_bottom, α_top): least-squares exponents −d log L/d log N over the smaller and the larger half of
    the sizes (split at the median log N; with an odd count the middle size belongs to both halves)."""
    N, L = np.asarray(N, float), np.asarray(L, float)
    order = np.argsort(N)
    k = len(N)
    lo, hi = order[: (k + 1) // 2], order[k // 2:]

    def alpha(idx):
        return float(-np.polyfit(np.log(N[idx]), np.log(L[idx]), 1)[0])
    return alpha(lo), alpha(hi)


def scaling(cfg: ScalingConfig) -> dict:
    """Train every size on the same windows; fit L(N) two ways; test whether returns diminish.

    Loss is next-unit cross-entropy in nats on held-out windows (per window, for the bootstrap); N is
    Kaplan's non-embedding parameter count. The CIs resample eval windows (paired across sizes): they
    cover which text we evaluate on, not seed-to-seed training noise (one seed per size)."""
    from decoupling import data
    from decoupling.core import measures, models, train
    from decoupling.progress import bar

    ids = stream(cfg.domain, cfg.unit)
    vocab = 256 if cfg.unit == "byte" else data.VOCAB_SIZE
    train_ids, eval_ids = ids[:-cfg.eval_units], ids[-cfg.eval_units:]
    eval_every = max(1, cfg.steps // cfg.n_evals)
    units_per_step = cfg.batch_size * cfg.block_size
    runs = []
    with cpu_threads(1):
        for n_layer, d in bar(cfg.sizes, desc="tyranny: scaling ladder"):
            mc = models.ModelConfig(n_layer=n_layer, n_head=max(1, d // cfg.head_dim), d_model=d,
                                    vocab_size=vocab, block_size=cfg.block_size)
            lr = lr_for(d, cfg.lr_width)
            tc = train.TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=lr, seed=cfg.seed,
                                   eval_every=eval_every, eval_windows=cfg.eval_windows)
            lm = models.build_lm(mc, seed=cfg.seed)
            res = train.train_lm(lm, train_ids, tc, eval_tokens=eval_ids, desc=f"tyranny L={n_layer} d={d}")
            per_window = _window_losses(lm, eval_ids, cfg.block_size, cfg.eval_windows)
            loss_ci = measures.bootstrap_ci(per_window, n_boot=cfg.n_boot, seed=cfg.seed)
            runs.append({
                "n_layer": n_layer, "d_model": d, "n_head": mc.n_head, "N": models.non_embedding_params(mc),
                "params_total": n_params(lm), "lr": lr, "units": res["tokens"], "flops": res["flops"],
                "units_per_s": res["tokens_per_s"], "wall_s": res["wall_s"],
                "eval_loss_nats": loss_ci.value, "eval_loss_ci": [loss_ci.lo, loss_ci.hi],
                "curve": [[s * units_per_step, v] for s, v in res["eval"]],  # (units seen, eval nats)
                "window_loss_nats": per_window,
            })
            del lm
    N = np.array([r["N"] for r in runs], float)
    W = np.array([r["window_loss_nats"] for r in runs]).T  # (windows, sizes), nats
    L = W.mean(0)
    # fit_power_law* treat rows as replicates: the fit is to the row mean, the bootstrap resamples rows
    pure = measures.fit_power_law(N, W, n_boot=cfg.n_boot, seed=cfg.seed)
    floor = measures.fit_power_law_floor(N, W, n_boot=cfg.n_boot_floor, seed=cfg.seed)
    a_lo, a_hi = half_exponents(N, L)

    def delta(rows):  # top-half exponent minus bottom-half exponent: < 0 means the curve flattens
        lo, hi = half_exponents(N, W[np.asarray(rows, int)].mean(0))
        return hi - lo
    d_ci = measures.bootstrap_ci(np.arange(len(W)), stat=delta, n_boot=cfg.n_boot, seed=cfg.seed)
    return {
        "runs": runs, "unit": cfg.unit,
        "N": N.tolist(), "loss_nats": L.tolist(), "loss_bits": (L / LN2).tolist(),
        "decades": float(np.log10(N.max() / N.min())),
        "pure": pure, "floor": floor,
        "local_slopes": local_slopes(N, L), "local_slope_at": np.sqrt(N[1:] * N[:-1]).tolist(),
        "alpha_bottom": a_lo, "alpha_top": a_hi,
        "alpha_delta": d_ci.value, "alpha_delta_ci": [d_ci.lo, d_ci.hi],
        "units_per_model": runs[0]["units"], "train_units": int(len(train_ids)),
        "eval_units": int(len(eval_ids)),
    }


# ---------------------------------------------------------------------------------------------- memorization
@dataclass(frozen=True)
class MemorizationConfig:
    """Random labels on digits (Zhang et al. 2017) for MLPs of several widths, plus the true-label control.

    The 1,436 random training labels hold 1,436·log2 10 ≈ 4,770 bits; widths below ~32 cannot store them
    all (their bits/param measure capacity), wider ones memorize everything (train accuracy → 1). On a GPU
    the forward pass runs under bf16 autocast (decoupling.core.device), which Morris et al. 2025 found to lower
    capacity slightly (3.51 vs 3.83 bits/param); the CPU runs are fp32."""
    widths: tuple[int, ...] = (4, 8, 16, 32, 64, 128)  # hidden units; params = 75·width + 10
    control_widths: tuple[int, ...] = (128,)  # also trained on the TRUE labels (the control)
    steps: int = 2500  # full-batch AdamW steps (memorizing random labels is slow: Zhang et al. 2017 fig. 1a)
    lr: float = 1e-2
    label_seed: int = 0  # draws the random labels
    seed: int = 0  # init
    n_boot: int = 1000  # bootstrap over training examples for the capacity CI


def memorization(cfg: MemorizationConfig) -> dict:
    from decoupling.core import measures

    d = digits10()
    (Xtr, ytr), (Xte, yte) = d["train"], d["test"]
    K = 10
    y_rand = np.random.default_rng(cfg.label_seed).integers(0, K, len(ytr))
    labels_of = {"random": y_rand, "true": ytr}
    jobs = [(w, labels) for w in cfg.widths for labels in ("random", "true")
            if labels == "random" or w in cfg.control_widths]
    with cpu_threads(1):  # every width, random labels and controls: one batched run
        models = _fit_mlps([(Xtr, labels_of[labels], w) for w, labels in jobs], K, cfg.steps, cfg.lr, 0.0,
                           cfg.seed, desc="tyranny: memorization")
        rows, bits_cols = [], []
        for (w, labels), model in zip(jobs, models):
            if labels == "random":
                rows.append({"width": w})
            row, y_fit = rows[-1], labels_of[labels]
            p_tr, p_te = _log_proba(model, Xtr), _log_proba(model, Xte)
            bits = memorized_bits(p_tr, y_fit, K, log=True)
            row["params"] = n_params(model)
            row[labels] = {
                "train_acc": float((p_tr.argmax(1) == y_fit).mean()),
                "test_acc": float((p_te.argmax(1) == yte).mean()),  # always against the TRUE test labels
                "train_bits": float(measures.log_loss_bits(p_tr, y_fit, log=True)),
                "test_bits": float(measures.log_loss_bits(p_te, yte, log=True)),
                "stored_bits": float(bits.sum()),
                "bits_per_param": float(bits.sum() / row["params"]),
            }
            if labels == "random":
                bits_cols.append(bits)
    P = np.array([r["params"] for r in rows], float)
    B = np.stack(bits_cols, 1)  # (examples, widths) memorized bits of the random labels

    def capacity(idx):  # the plateau: the best bits/param over widths, same examples for every width
        return float((B[np.asarray(idx, int)].sum(0) / P).max())
    cap = measures.bootstrap_ci(np.arange(len(B)), stat=capacity, n_boot=cfg.n_boot, seed=cfg.seed)
    chance = 1.0 / K
    widest = rows[int(np.argmax(P))]
    return {
        "rows": rows, "K": K, "n_train": int(len(ytr)), "n_test": int(len(yte)),
        "label_bits_total": float(len(ytr) * math.log2(K)),
        "chance": chance,
        # a margin stated before looking: 4 binomial standard errors of chance accuracy on the test set
        "chance_margin": 4 * math.sqrt(chance * (1 - chance) / len(yte)),
        "widest": widest,
        "capacity_bits_per_param": cap.value, "capacity_ci": [cap.lo, cap.hi],
        "capacity_width": rows[int(np.argmax(B.sum(0) / P))]["width"],
    }


# ---------------------------------------------------------------------------------------------- compression
@dataclass(frozen=True)
class CompressionConfig:
    """Prequential code length of the digit labels (true labels, one random order) for several models,
    each model's test loss after training on the whole training set, and a random-label memorizer."""
    widths: tuple[int, ...] = (0, 2, 8, 32, 128)  # 0 = linear (multinomial logistic regression)
    fracs: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0)  # prequential block ends, × n
    steps: int = 300  # full-batch AdamW steps per fit (every block, every model: one recipe)
    lr: float = 1e-2
    weight_decay: float = 0.0
    memorizer_width: int = 128  # trained on random labels for contrast (they cannot be compressed)
    order_seed: int = 0  # the order in which labels are transmitted
    label_seed: int = 0  # random labels of the memorizer (train and test)
    seed: int = 0  # init


def compression(cfg: CompressionConfig) -> dict:
    from scipy.stats import spearmanr

    from decoupling.core import measures

    d = digits10()
    (Xtr, ytr), (Xte, yte) = d["train"], d["test"]
    K = 10
    order = np.random.default_rng(cfg.order_seed).permutation(len(ytr))
    Xtr, ytr = Xtr[order], ytr[order]
    ends = measures.block_schedule(len(ytr), cfg.fracs)
    rng = np.random.default_rng(cfg.label_seed)
    y_rand_tr, y_rand_te = rng.integers(0, K, len(ytr)), rng.integers(0, K, len(yte))
    labels_of = {"true": (ytr, yte), "random": (y_rand_tr, y_rand_te)}
    jobs = [(w, "true") for w in cfg.widths] + [(cfg.memorizer_width, "random")]
    # Per job, one fit per prequential block (on the blocks before it) and one on the whole training set:
    # every fit of every job in one batched run (members of different widths and dataset sizes).
    fits = [(w, labels, n) for w, labels in jobs for n in [*ends[:-1], len(ytr)]]
    with cpu_threads(1):
        models = _fit_mlps([(Xtr[:n], labels_of[labels][0][:n], w) for w, labels, n in fits], K, cfg.steps,
                           cfg.lr, cfg.weight_decay, cfg.seed, desc="tyranny: prequential")
        fitted = {(w, labels, n): m for (w, labels, n), m in zip(fits, models)}
        rows = []
        for w, labels in jobs:
            y_fit, y_test = labels_of[labels]
            # the block [start, stop) is coded by the model fitted on the examples before it, [0, start)
            def fit_predict(train_idx, test_idx, key=(w, labels)):  # the fit was done above: look it up
                return _log_proba(fitted[(*key, len(train_idx))], Xtr[test_idx])
            preq = measures.prequential(fit_predict, Xtr, y_fit, K, ends, log=True)
            model = fitted[w, labels, len(ytr)]
            p_tr, p_te = _log_proba(model, Xtr), _log_proba(model, Xte)
            rows.append({
                "width": w, "labels": labels, "params": n_params(model),
                "preq_bits_per_label": preq["bits_per_label"], "preq_total_bits": preq["total_bits"],
                "block_bits": preq["block_bits"],
                "train_bits": float(measures.log_loss_bits(p_tr, y_fit, log=True)),
                "test_bits": float(measures.log_loss_bits(p_te, y_test, log=True)),
                "test_acc": float((p_te.argmax(1) == y_test).mean()),
                "train_acc": float((p_tr.argmax(1) == y_fit).mean()),
            })
    true = [r for r in rows if r["labels"] == "true"]
    rho = spearmanr([r["preq_bits_per_label"] for r in true], [r["test_bits"] for r in true]).statistic
    return {"rows": rows, "ends": ends, "K": K, "uniform_bits_per_label": math.log2(K),
            "spearman_preq_vs_test": float(rho)}


# ---------------------------------------------------------------------------------------------- double descent
@dataclass(frozen=True)
class DoubleDescentConfig:
    """Min-norm least squares on p random Fourier features of n digits, p swept across p = n."""
    n_train: int = 300  # samples (a fixed random subset of the digits training set)
    ratios: tuple[float, ...] = tuple(float(r) for r in np.round(np.geomspace(0.1, 10, 25), 4))  # p / n
    feature_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # independent draws of the random features
    subset_seed: int = 0
    n_boot: int = 1000  # bootstrap over feature seeds for the peak's location


def min_norm_solve(Phi, Y, rcond: float | None = None) -> np.ndarray:
    """The minimum-norm least-squares solution β = Φ⁺Y via the SVD (float64), as `np.linalg.lstsq` and
    `np.linalg.pinv` define it: singular values below rcond·σ_max are treated as zero (default rcond =
    machine epsilon × max(n, p), lstsq's). Under- or over-determined alike: for p > n it interpolates."""
    Phi, Y = np.asarray(Phi, np.float64), np.asarray(Y, np.float64)
    U, s, Vt = np.linalg.svd(Phi, full_matrices=False)
    if rcond is None:
        rcond = np.finfo(np.float64).eps * max(Phi.shape)
    keep = s > rcond * (s[0] if len(s) else 0.0)
    return (Vt[keep].T / s[keep]) @ (U[:, keep].T @ Y)


def random_fourier_features(d_in: int, p: int, bandwidth: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rahimi & Recht 2007: φ(x) = √(2/p)·cos(Wx + b), W ~ N(0, σ⁻²I), b ~ U[0, 2π) — an unbiased
    approximation of the Gaussian kernel of bandwidth σ. Returns (W, b) applied by `_rff`."""
    rng = np.random.default_rng(seed)
    W = rng.normal(0.0, 1.0 / bandwidth, (d_in, p))
    b = rng.uniform(0.0, 2 * math.pi, p)
    return W, b


def _rff(X, W, b) -> np.ndarray:
    return np.sqrt(2.0 / W.shape[1]) * np.cos(X @ W + b)


def double_descent(cfg: DoubleDescentConfig) -> dict:
    from decoupling.core import measures
    from scipy.spatial.distance import pdist

    d = digits10()
    (Xall, yall), (Xte, yte) = d["train"], d["test"]
    idx = np.random.default_rng(cfg.subset_seed).permutation(len(yall))[: cfg.n_train]
    Xtr, ytr = Xall[idx].astype(np.float64), yall[idx]
    mu, sd = Xtr.mean(0), Xtr.std(0)
    sd[sd == 0] = 1.0  # always-blank corner pixels
    Xtr, Xte = (Xtr - mu) / sd, (Xte.astype(np.float64) - mu) / sd
    bandwidth = float(np.median(pdist(Xtr)))  # the median heuristic for a Gaussian kernel's width
    K = 10
    Ytr, Yte = np.eye(K)[ytr], np.eye(K)[yte]
    ps = sorted({max(1, int(round(r * cfg.n_train))) for r in cfg.ratios} | {cfg.n_train})
    mse = np.zeros((len(cfg.feature_seeds), len(ps)))
    err, train_mse, norm = np.zeros_like(mse), np.zeros_like(mse), np.zeros_like(mse)
    with cpu_threads(1):
        for i, s in enumerate(cfg.feature_seeds):
            for j, p in enumerate(ps):
                W, b = random_fourier_features(Xtr.shape[1], p, bandwidth, seed=1000 * s + j)
                F, Ft = _rff(Xtr, W, b), _rff(Xte, W, b)
                beta = min_norm_solve(F, Ytr)
                pred = Ft @ beta
                mse[i, j] = ((pred - Yte) ** 2).sum(1).mean()
                err[i, j] = (pred.argmax(1) != yte).mean()
                train_mse[i, j] = ((F @ beta - Ytr) ** 2).sum(1).mean()
                norm[i, j] = np.linalg.norm(beta)
    ps_arr = np.array(ps, float)

    def peak_ratio(rows):  # where the median (over feature draws) test loss is highest, as p/n
        return float(ps_arr[np.argmax(np.median(mse[np.asarray(rows, int)], 0))] / cfg.n_train)
    ci = measures.bootstrap_ci(np.arange(len(cfg.feature_seeds)), stat=peak_ratio, n_boot=cfg.n_boot, seed=0)
    return {
        "n_train": cfg.n_train, "p": ps, "ratio": (ps_arr / cfg.n_train).tolist(), "bandwidth": bandwidth,
        "test_mse": mse.tolist(), "test_err": err.tolist(), "train_mse": train_mse.tolist(),
        "beta_norm": norm.tolist(),
        "peak_ratio": ci.value, "peak_ratio_ci": [ci.lo, ci.hi],
        "peak_ratio_err": float(ps_arr[np.argmax(err.mean(0))] / cfg.n_train),
        "best_test_err": float(err.mean(0).min()), "best_p": int(ps_arr[np.argmin(err.mean(0))]),
    }


# ---------------------------------------------------------------------------------------------- presets
SCALING = {
    "smoke": ScalingConfig(),
    # full: the models.LADDER shapes nano … medium (N ≈ 12.8k → 6.3M, 2.7 decades), context 256 bytes,
    # 32 sequences × 2,500 steps = 20M bytes per model (≈ 4 epochs of the 5.2M-byte training stream;
    # up to ~4 epochs repeated data is nearly as good as fresh, Muennighoff et al. 2023)
    "full": ScalingConfig(sizes=((1, 32), (2, 48), (3, 64), (4, 128), (6, 192), (8, 256)), block_size=256,
                          batch_size=32, steps=2500, n_evals=8, eval_units=500_000, eval_windows=256,
                          n_boot_floor=100),
}
MEMORIZATION = {
    "smoke": MemorizationConfig(),
    "full": MemorizationConfig(widths=(2, 4, 8, 16, 32, 64, 128, 256, 512), control_widths=(8, 32, 128, 512),
                               steps=10_000),
}
COMPRESSION = {
    "smoke": CompressionConfig(),
    "full": CompressionConfig(widths=(0, 2, 4, 8, 16, 32, 64, 128, 256),
                              fracs=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.55, 0.7, 0.85, 1.0), steps=1000),
}
DOUBLE_DESCENT = {
    "smoke": DoubleDescentConfig(),
    "full": DoubleDescentConfig(n_train=500, ratios=tuple(float(r) for r in np.round(np.geomspace(0.1, 10, 31), 4)),
                                feature_seeds=tuple(range(10))),
}
PRESETS = {"scaling": SCALING, "memorization": MEMORIZATION, "compression": COMPRESSION,  # function -> presets
           "double_descent": DOUBLE_DESCENT}
