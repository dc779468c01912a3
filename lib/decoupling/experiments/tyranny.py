"""Chapter 3, "The tyranny of memory" (book/tyranny.md): how loss scales with parameters, how many bits a
network can memorize, and why compression, not memorization, is what generalizes.

(Over 500 lines on purpose: the chapter's four experiments share the digits task, the memorized-bits
estimator and the MLP fits, and each is one config, one function and its presets.)

Four experiments, each a plain function of a frozen config returning a JSON-able dict:

- `scaling`: decoder LMs of several sizes trained on Python source, each on a byte budget proportional to
  its parameter count (Hoffmann et al. 2022's ~20 tokens per parameter at `full`), several seeds per
  size, each at its own learning rate; the power-law fits (pure, Kaplan et al. 2020; with an irreducible
  term, Hoffmann et al. 2022) get bootstrap CIs over seeds, the per-seed exponent and the bend of the curve
  (larger-half minus smaller-half exponent) Student-t intervals over seeds (core.intervals).
- `memorization`: Zhang et al. 2017's random-label experiment on handwritten digits with MLPs of several
  widths, and memorized bits per parameter (Morris et al. 2025's capacity, in our estimator).
- `compression`: prequential code length of the digit labels (Blier & Ollivier 2018) against test loss,
  across models, with a random-label memorizer for contrast.
- `double_descent`: min-norm least squares on random Fourier features of digits (Belkin et al. 2019;
  Nakkiran et al. 2020): test error peaks where the number of features equals the number of samples.

The chapter's fifth experiment, ΔL against the pretraining tokens of a body, is `experiments.tyranny_data`.
The digits MLPs of `memorization` and `compression` are trained as one batched run per experiment on a
GPU (`core.padded_mlp`), one after another on a CPU. Digits are sklearn's 8×8 handwritten digits (Alpaydin
& Kaynak 1998) as prepared by `decoupling.data` ("digits/0-4" and "digits/5-9" put back together: 10
classes, its train/test split).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from decoupling.core import prequential
from decoupling.core.device import cpu_threads  # every experiment runs on one CPU thread (see its docstring)
# the batched digits MLPs (names re-exported: the tests reach them here, and may replace `_fit_mlps`)
from decoupling.core.padded_mlp import (PaddedMLP, _fit_mlp, _fit_mlps, _log_proba, _recipe,  # noqa: F401
                                         mlp, n_params)

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


def memorized_bits(q, y, K: int, log: bool = False) -> np.ndarray:
    """Per-example memorized bits, log2 K − (−log2 q(y_i|x_i)): what the model knows about each random
    label beyond the uniform code. Summed over a random-label set, it is information that can only have
    come from storing the labels (they are independent of the inputs). A perfect predictor scores log2 K
    per example; a uniform one 0; a confidently wrong one is negative. q: probabilities (n, K), or
    natural-log probabilities with log=True (measures.log_loss_bits)."""
    from decoupling.core.measures import log_loss_bits
    return math.log2(K) - log_loss_bits(q, y, reduction="none", log=log)



# ---------------------------------------------------------------------------------------------- scaling
@dataclass(frozen=True)
class ScalingConfig:
    """GPT-2-style decoders over ≥ 2 decades of non-embedding parameters N, each trained on a token budget
    that grows with its size, D = tokens_per_param · P (P = every parameter, embeddings included, as
    Hoffmann et al. 2022 count them), on the bytes of the Python standard library (the "code" corpus),
    several seeds per size; the CIs resample seeds.

    Why a budget per size: with one budget for all (this ladder's first design, 20M bytes at `full`, ≈ 3
    bytes per parameter for the largest), the larger models run out of data and L(N) bends for that reason
    alone; Hoffmann et al. 2022 found the compute-optimal budget near 20 tokens per parameter, the rule at
    `full`. Here a token is a byte, which carries less than a BPE token does, so 20 bytes per parameter is,
    if anything, short of their optimum.

    Why bytes (vocabulary 256) and not the book's BPE (4,096): with a 4,096-way softmax, a CPU-sized budget
    (0.2M tokens) leaves every model from d_model 8 to 32 at the unigram entropy (measured 6.30–6.34 nats
    vs 6.26 for unigram counts): no scaling to see. On bytes the same budget separates the sizes.

    Seeds are init and window order together. On a GPU the seeds of one size train as one batched run
    (decoupling.core.batched.train_many_lm: same shape, launch-bound steps); on a CPU one after another
    (equal up to float rounding)."""
    sizes: tuple[tuple[int, int], ...] = ((1, 8), (1, 12), (1, 16), (1, 24), (1, 32))  # (n_layer, d_model)
    head_dim: int = 16  # n_head = max(1, d_model // head_dim)
    domain: str = "code"  # decoupling.data corpus (Python stdlib, docstrings/comments stripped)
    unit: str = "byte"  # "byte": UTF-8 bytes, vocab 256; "bpe": the book's tokenizer, vocab 4,096
    block_size: int = 128  # context T (in units)
    batch_size: int = 2  # sequences per step: small, so that the smallest model still takes ~30 steps
    tokens_per_param: float = 2.0  # D = this × P; smoke: a tenth of Hoffmann et al.'s 20 (CPU time)
    lr_width: float = 0.32  # per-size peak lr = lr_width / d_model (see `lr_for`)
    eval_units: int = 200_000  # the stream's tail, held out (other documents: the order is random)
    eval_windows: int = 64  # evenly spaced eval windows of block_size (the same for every model)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # init and window order; the CIs resample them
    n_boot: int = 1000  # bootstrap resamples of the seeds, for every CI (both fits included)


def lr_for(d_model: int, lr_width: float) -> float:
    """Per-size peak learning rate lr = lr_width / d_model: Adam's best rate falls as 1/width (Yang et al.
    2022, "Tensor Programs V", μP's rule for hidden weights; here applied to all weights, a simplification).

    The constant comes from one pilot at a fixed budget (300 steps × 8 × 128 bytes, seed 0; held-out nats):
      d_model 8:  lr 0.0069 → 2.699, 0.023 → 2.659, 0.04 (= 0.32/8) → 2.561, 0.08 → 2.573
      d_model 24: lr 0.0067 (= 0.16/24) → 2.512, 0.0133 (= 0.32/24) → 2.468
      d_model 64: lr 0.0025 (= 0.16/64) → 2.419, 0.0049 (≈ 0.32/64) → 2.373, 0.01 → 2.485, 0.016 → 2.620
    so 0.32 is the best of {0.16, 0.32, 0.64} at every size tried. Kaplan et al. 2020's eq. D.1
    (`train.kaplan_lr`, fit to 2.5·10⁵-step runs) is too flat across sizes for runs this short: ×3 of it is
    too small at d 8 and ×10 too large at d 64. The pilot (10 runs) is not charged to the curve; it was not
    repeated at the per-size budgets, so each size's rate is the rule's, not a tuned one."""
    return lr_width / d_model


def scaling_steps(params: int, cfg: ScalingConfig) -> int:
    """Optimizer steps of a model with `params` parameters: its budget D = tokens_per_param · params,
    rounded up to whole steps of batch_size · block_size units."""
    return max(1, math.ceil(cfg.tokens_per_param * params / (cfg.batch_size * cfg.block_size)))


def stream(domain: str, unit: str) -> torch.Tensor:
    """A corpus as one 1-D LongTensor: its UTF-8 bytes, or its ids under the book's BPE tokenizer."""
    from decoupling import data
    if unit == "bpe":
        return data.token_ids(domain)
    if unit != "byte":
        raise ValueError(f"unit must be 'byte' or 'bpe', got {unit!r}")
    return torch.from_numpy(np.frombuffer(data.corpus(domain).encode("utf-8"), np.uint8).astype(np.int64))


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


def seed_resamples(n_seeds: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_seeds) row indices: each row one bootstrap resample of the seeds, drawn as
    measures.fit_power_law draws them for a (seeds, sizes) matrix (same generator, same order)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, n_seeds, n_seeds) for _ in range(n_boot)])


def _floor_profile(N, curves) -> np.ndarray:
    """L = E + A·N^−α fitted to each row of `curves` (B, k) at once: (B, 4) rows of E, A, α, R² (log space).

    Profile least squares: for each α of a grid, (E, A) by least squares of L on [1, N^−α] weighted by 1/L²
    (relative errors, i.e. log space to first order), E held in [0, min L] and A ≥ 0; then the α with the
    smallest squared error of log L, refined on a finer grid around it. Vectorized over the rows, so 1,000
    bootstrap fits cost well under a second (measures.fit_power_law_floor runs ~12 nonlinear fits per curve,
    ~0.3 s each); tests/test_tyranny.py checks the two agree on the point estimate."""
    N, Y = np.asarray(N, float), np.atleast_2d(np.asarray(curves, float))
    lY = np.log(Y)[:, None, :]  # (B, 1, k)
    w = (1.0 / Y ** 2)[:, None, :]
    ymin = Y.min(1)[:, None]

    def fit(grid):  # grid (B, G) -> E, A, sse (B, G)
        x = N[None, None, :] ** -grid[..., None]  # (B, G, k)
        Sw, Sx, Sxx = w.sum(-1), (w * x).sum(-1), (w * x * x).sum(-1)
        Sy, Sxy = (w * Y[:, None, :]).sum(-1), (w * x * Y[:, None, :]).sum(-1)
        det = np.where(np.abs(Sw * Sxx - Sx ** 2) > 0, Sw * Sxx - Sx ** 2, np.inf)
        A = (Sw * Sxy - Sx * Sy) / det
        E = np.clip((Sy - A * Sx) / Sw, 0.0, ymin)
        A = np.maximum((w * x * (Y[:, None, :] - E[..., None])).sum(-1) / Sxx, 0.0)  # refit A at the clipped E
        pred = E[..., None] + A[..., None] * x
        with np.errstate(divide="ignore", invalid="ignore"):
            sse = ((np.log(pred) - lY) ** 2).sum(-1)
        return E, A, np.where(np.isfinite(sse), sse, np.inf)

    grid = np.broadcast_to(np.geomspace(1e-3, 5.0, 400), (len(Y), 400))
    _, _, sse = fit(grid)
    a0 = grid[np.arange(len(Y)), sse.argmin(1)]
    fine = a0[:, None] * np.geomspace(0.97, 1.03, 201)[None, :]  # the coarse grid's step is ~2.2 %
    E, A, sse = fit(fine)
    i = sse.argmin(1)
    r = np.arange(len(Y))
    ss_tot = ((lY[:, 0] - lY[:, 0].mean(1, keepdims=True)) ** 2).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1 - sse[r, i] / ss_tot, np.nan)
    return np.stack([E[r, i], A[r, i], fine[r, i], r2], 1)


def fit_floor(N, L, n_boot: int, seed: int = 0, ci_alpha: float = 0.05) -> dict:
    """L = E + A·N^−α (Hoffmann et al. 2022's N term; their α = 0.34) to the seed mean of L (seeds, sizes),
    with percentile CIs from n_boot resamples of the seeds (`seed_resamples`). Same keys as
    measures.fit_power_law_floor."""
    L = np.atleast_2d(np.asarray(L, float))
    point = _floor_profile(N, L.mean(0))[0]
    boots = _floor_profile(N, np.stack([L[rows].mean(0) for rows in seed_resamples(len(L), n_boot, seed)]))

    def ci(col):
        return np.quantile(boots[:, col], [ci_alpha / 2, 1 - ci_alpha / 2]).tolist()
    return {"form": "L = E + A*N^-alpha", "E": float(point[0]), "A": float(point[1]), "alpha": float(point[2]),
            "r2": float(point[3]), "E_ci": ci(0), "A_ci": ci(1), "alpha_ci": ci(2), "n_boot": n_boot}


def _train_seeds(mc, seeds, train_ids, tc):
    """One size, every seed: [(trained LM, its train result or None)], batched on a GPU (launch-bound
    steps), one train_lm after another on a CPU (where stacking only adds arithmetic)."""
    from decoupling.core import batched, models, train
    if prequential.batch_fits() and len(seeds) > 1:  # the book's one rule for batching (a GPU)
        many = batched.train_many_lm(lambda s: models.build_lm(mc, seed=s), seeds, lambda k: train_ids, tc,
                                     data_seeds=seeds, desc=f"tyranny L={mc.n_layer} d={mc.d_model}")
        return [(many.member(k), None) for k in range(len(seeds))]
    out = []
    for s in seeds:
        lm = models.build_lm(mc, seed=s)
        res = train.train_lm(lm, train_ids, dataclasses.replace(tc, seed=s),
                             desc=f"tyranny L={mc.n_layer} d={mc.d_model} seed {s}")
        out.append((lm, res))
    return out


def scaling(cfg: ScalingConfig) -> dict:
    """Train every size, every seed, on its own budget (`scaling_steps`); fit L(N) two ways; test whether
    returns diminish.

    Loss is next-unit cross-entropy in nats on the same held-out windows for every model; N is Kaplan's
    non-embedding parameter count (the x axis of both fits), P every parameter (the token rule). Every CI
    resamples seeds (cfg.n_boot times): it covers init and data order, not the choice of evaluation text."""
    from decoupling import data
    from decoupling.core import intervals, measures, models, train
    from decoupling.progress import bar

    ids = stream(cfg.domain, cfg.unit)
    vocab = 256 if cfg.unit == "byte" else data.VOCAB_SIZE
    train_ids, eval_ids = ids[:-cfg.eval_units], ids[-cfg.eval_units:]
    units_per_step = cfg.batch_size * cfg.block_size
    runs = []
    with cpu_threads(1):
        for n_layer, d in bar(cfg.sizes, desc="tyranny: scaling ladder"):
            mc = models.ModelConfig(n_layer=n_layer, n_head=max(1, d // cfg.head_dim), d_model=d,
                                    vocab_size=vocab, block_size=cfg.block_size)
            params = sum(p.numel() for p in models.build_lm(mc, seed=0).parameters())
            steps = scaling_steps(params, cfg)
            lr = lr_for(d, cfg.lr_width)
            tc = train.TrainConfig(steps=steps, batch_size=cfg.batch_size, lr=lr, seed=cfg.seeds[0],
                                   eval_windows=cfg.eval_windows, progress=False)
            fitted = _train_seeds(mc, list(cfg.seeds), train_ids, tc)
            losses = [train.eval_lm(lm, eval_ids, cfg.block_size, cfg.eval_windows) for lm, _ in fitted]
            flops = steps * cfg.batch_size * models.flops_per_example(fitted[0][0], cfg.block_size)
            runs.append({
                "n_layer": n_layer, "d_model": d, "n_head": mc.n_head, "N": models.non_embedding_params(mc),
                "params_total": params, "lr": lr, "steps": steps, "units": steps * units_per_step,
                "units_per_param": steps * units_per_step / params, "flops": flops,
                "wall_s": sum(r["wall_s"] for _, r in fitted if r) or None,
                "seed_loss_nats": losses, "eval_loss_nats": float(np.mean(losses)),
            })
            del fitted
    N = np.array([r["N"] for r in runs], float)
    S = np.array([r["seed_loss_nats"] for r in runs]).T  # (seeds, sizes), nats
    L = S.mean(0)
    pure = measures.fit_power_law(N, S, n_boot=cfg.n_boot, seed=cfg.seeds[0])  # resamples seeds the same way
    floor = fit_floor(N, S, n_boot=cfg.n_boot, seed=cfg.seeds[0])
    a_lo, a_hi = half_exponents(N, L)
    # the bend, seed by seed: (top − bottom) half exponent of each seed's own curve, a t interval over the
    # seeds (intervals.mean_ci); the 90% interval is the equivalence test's (returns-not-diminishing)
    seed_deltas = [float(np.subtract(*half_exponents(N, row)[::-1])) for row in S]
    bend, bend90 = intervals.mean_ci(seed_deltas), intervals.mean_ci(seed_deltas, level=0.90)
    seed_alpha = [float(-np.polyfit(np.log(N), np.log(row), 1)[0]) for row in S]  # pure-form exponent per seed
    alpha_t = intervals.mean_ci(seed_alpha)
    for r, col in zip(runs, S.T):
        c = intervals.mean_ci(col)
        r["eval_loss_ci"] = [c.lo, c.hi]
    return {
        "runs": runs, "unit": cfg.unit, "seeds": list(cfg.seeds), "n_boot": cfg.n_boot,
        "tokens_per_param": cfg.tokens_per_param,
        "N": N.tolist(), "loss_nats": L.tolist(), "loss_bits": (L / LN2).tolist(), "seed_loss_nats": S.tolist(),
        "decades": float(np.log10(N.max() / N.min())),
        "pure": {**pure, "n_boot": cfg.n_boot}, "floor": floor,
        "local_slopes": local_slopes(N, L), "local_slope_at": np.sqrt(N[1:] * N[:-1]).tolist(),
        "alpha_bottom": a_lo, "alpha_top": a_hi,
        "alpha_delta_of_mean": a_hi - a_lo,  # the bend of the seed-mean curve
        "alpha_delta_seeds": seed_deltas, "alpha_delta": bend.value, "alpha_delta_ci": [bend.lo, bend.hi],
        "alpha_delta_ci90": [bend90.lo, bend90.hi], "alpha_delta_se": bend.se, "alpha_delta_df": bend.df,
        "alpha_seeds": seed_alpha, "alpha_t": alpha_t.value, "alpha_t_ci": [alpha_t.lo, alpha_t.hi],
        "alpha_t_p": alpha_t.p,
        "train_units": int(len(train_ids)), "eval_units": int(len(eval_ids)),
        "max_epochs": max(r["units"] for r in runs) / len(train_ids),
    }


scaling.runs_on_cpu = True  # byte-level LMs below 0.4M parameters: `full` is computed on a CPU


# ---------------------------------------------------------------------------------------------- memorization
@dataclass(frozen=True)
class MemorizationConfig:
    """Random labels on digits (Zhang et al. 2017) for MLPs of several widths, plus the true-label control,
    repeated over seeds; every CI is a Student-t interval over the seeds (runs), not over the examples of
    one run.

    The seed rule: run `s` draws its own random labels, `np.random.default_rng(s).integers(0, 10, n)`, and
    its own init, `mlp(64, width, 10, seed=s)` for every width (the true-label control of run s starts from
    the same init as its random-label twin). Every (seed, width, labels) job goes through one `_fit_mlps`
    call (per-member seeds): on a GPU one batched run, since the seeds share the architecture and stack like
    widths do; on a CPU one fit after another, which was faster there (18 fits × 300 steps: 17 s vs 21–25 s).

    The 1,436 random training labels hold 1,436·log2 10 ≈ 4,770 bits; widths below ~32 cannot store them
    all (their bits/param measure capacity), wider ones memorize everything (train accuracy → 1). On a GPU
    the forward pass runs under bf16 autocast (decoupling.core.device), which Morris et al. 2025 found to lower
    capacity slightly (3.51 vs 3.83 bits/param); the CPU runs are fp32."""
    widths: tuple[int, ...] = (4, 8, 16, 32, 64, 128)  # hidden units; params = 75·width + 10
    control_widths: tuple[int, ...] = (128,)  # also trained on the TRUE labels (the control)
    steps: int = 2500  # full-batch AdamW steps (memorizing random labels is slow: Zhang et al. 2017 fig. 1a)
    lr: float = 1e-2
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # run s: random labels AND init from seed s (docstring)


_MEM_METRICS = ("train_acc", "test_acc", "train_bits", "test_bits", "stored_bits", "bits_per_param")


def memorization(cfg: MemorizationConfig) -> dict:
    """One row per width (mean over seeds, with `<metric>_ci` over seeds) in `rows`; every run's own rows,
    capacity and widest model in `runs`; the capacity (per run: the plateau, the best bits/param over
    widths) as the mean over runs with a Student-t CI over runs (core.intervals); `worst`: the widest model's
    checks at their worst run."""
    from decoupling.core import intervals, measures

    d = digits10()
    (Xtr, ytr), (Xte, yte) = d["train"], d["test"]
    K = 10
    labels_of = {s: {"random": np.random.default_rng(s).integers(0, K, len(ytr)), "true": ytr}
                 for s in cfg.seeds}
    jobs = [(s, w, labels) for s in cfg.seeds for w in cfg.widths for labels in ("random", "true")
            if labels == "random" or w in cfg.control_widths]
    with cpu_threads(1):  # every seed, width, random labels and controls: one `_fit_mlps` call
        models = _fit_mlps([(Xtr, labels_of[s][labels], w) for s, w, labels in jobs], K, cfg.steps, cfg.lr,
                           0.0, [s for s, _, _ in jobs], desc="tyranny: memorization",
                           batch=prequential.batch_fits())  # on a CPU one fit after another is faster
        rows = {s: {} for s in cfg.seeds}  # seed -> width -> row
        for (s, w, labels), model in zip(jobs, models):
            row, y_fit = rows[s].setdefault(w, {"width": w}), labels_of[s][labels]
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
    runs = []
    for s in cfg.seeds:
        r = [rows[s][w] for w in cfg.widths]
        best = int(np.argmax([x["random"]["bits_per_param"] for x in r]))  # the plateau of this run
        runs.append({"seed": s, "rows": r, "capacity_bits_per_param": r[best]["random"]["bits_per_param"],
                     "capacity_width": r[best]["width"], "widest": max(r, key=lambda x: x["params"])})

    def mean_ci(values) -> tuple[float, list[float]]:
        c = intervals.mean_ci(values)
        return c.value, [c.lo, c.hi]

    mean_rows = []
    for i, w in enumerate(cfg.widths):
        row = {"width": w, "params": runs[0]["rows"][i]["params"]}
        for labels in ("random", "true"):
            if labels not in runs[0]["rows"][i]:
                continue
            row[labels] = {}
            for m in _MEM_METRICS:
                row[labels][m], row[labels][m + "_ci"] = mean_ci([r["rows"][i][labels][m] for r in runs])
        mean_rows.append(row)
    caps = [r["capacity_bits_per_param"] for r in runs]
    cap_t = intervals.mean_ci(caps)
    cap, cap_ci = cap_t.value, [cap_t.lo, cap_t.hi]
    chance = 1.0 / K
    widest = [r["widest"] for r in runs]
    far = max(widest, key=lambda x: abs(x["random"]["test_acc"] - chance))
    worst = {  # the widest model's checks, each at its worst run
        "random_train_acc": min(x["random"]["train_acc"] for x in widest),
        "random_test_acc": far["random"]["test_acc"],  # the farthest from chance
        "true_test_acc": min(x["true"]["test_acc"] for x in widest if "true" in x) if "true" in widest[0]
        else float("nan"),
    }
    return {
        "rows": mean_rows, "runs": runs, "seeds": list(cfg.seeds), "interval": "student-t over seeds",
        "K": K, "n_train": int(len(ytr)), "n_test": int(len(yte)),
        "label_bits_total": float(len(ytr) * math.log2(K)),
        "chance": chance,
        # a margin stated before looking: 4 binomial standard errors of chance accuracy on the test set
        "chance_margin": 4 * math.sqrt(chance * (1 - chance) / len(yte)),
        "widest": max(mean_rows, key=lambda x: x["params"]), "worst": worst,
        "capacity_bits_per_param": cap, "capacity_ci": cap_ci, "capacity_seeds": caps,
        "capacity_se": cap_t.se, "capacity_df": cap_t.df,
        "capacity_widths": [r["capacity_width"] for r in runs],
    }


memorization.runs_on_cpu = True  # full-batch MLPs on 1,436 digits


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
                           cfg.lr, cfg.weight_decay, cfg.seed, desc="tyranny: prequential",
                           batch=prequential.batch_fits())  # on a CPU one fit after another is faster
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


compression.runs_on_cpu = True


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
        # what the chapter's check reads: how tall the spike stands over the smallest model's loss, whether
        # every fit well past the threshold interpolates, and test error at p = n against the widest p
        "spike_factor": float(np.median(mse, 0).max() / np.median(mse[:, 0])),
        "train_mse_past_threshold": float(np.median(train_mse, 0)[ps_arr >= 1.5 * cfg.n_train].max()),
        "err_at_threshold": float(err.mean(0)[ps.index(cfg.n_train)]), "err_at_widest": float(err.mean(0)[-1]),
        "n_boot": cfg.n_boot,
        "best_test_err": float(err.mean(0).min()), "best_p": int(ps_arr[np.argmin(err.mean(0))]),
    }


double_descent.runs_on_cpu = True  # SVDs in numpy


# ---------------------------------------------------------------------------------------------- presets
# `full` is sized for two CPU cores, one thread per experiment (every function above `runs_on_cpu`). The times
# are process CPU seconds on one thread of a 2-core Xeon with bf16 units, measured while the machine was
# shared (so, if anything, high), each from the pilot its comment names.
SCALING = {
    "smoke": ScalingConfig(),
    # full: six shapes, N = 3.3k → 0.34M non-embedding parameters (2.0 decades), evenly spaced in log N
    # (0.3–0.5 decades apart), context 128 bytes, 32 sequences a step, 20 bytes per parameter (Hoffmann et al.
    # 2022): 0.19M → 7.5M bytes, 47 → 1,820 steps, 3 seeds. The largest budget is 2.0 passes over the 3.65M
    # training bytes, within the ~4 epochs Muennighoff et al. 2023 found nearly as good as fresh data.
    # What each size reaches (seed 0, held-out nats/byte; the bytes' unigram cross-entropy is 3.05):
    # 1×16 2.67, 1×24 2.55, 1×40 2.41, 2×48 1.99, 2×72 1.53, so every shape learns more than byte
    # frequencies (1×12, N = 1.9k, stayed at 3.05 after its 32 steps: too small to be a point of the curve,
    # which is why the ladder starts at 1×16). Cost per seed: 1 + 2 + 5 + 22 + 77 s for those five, and
    # ≈ 346 s for 3×96 (35 s for a tenth of its steps); ≈ 7.6 min a seed, ≈ 23 CPU-minutes in all. Every
    # width is below 128, so the CPU trains in fp32 (decoupling.core.device). The top is set by compute: the
    # previous top, 4×128 (N = 0.79M), alone would cost ~30 CPU-minutes a seed.
    "full": ScalingConfig(sizes=((1, 16), (1, 24), (1, 40), (2, 48), (2, 72), (3, 96)), block_size=128,
                          batch_size=32, tokens_per_param=20.0, eval_units=500_000, eval_windows=256,
                          seeds=(0, 1, 2)),
}
MEMORIZATION = {
    # smoke: 3 seeds, not 5: one seed (4 random-label widths + the control, 1,000 steps, one fit after
    # another on one CPU thread) took 13 s on the shared 2-core machine, so five would not fit the chapter's
    # budget. To pay for three, width 8 is dropped (never the plateau: below width 4's bits/param in seed 0's
    # runs of 500 to 1,500 steps) and steps go 1,500 → 1,000, which lowers each run's capacity (a lower
    # bound: more steps keep adding bits); the widest still fits its random labels in every seed.
    "smoke": MemorizationConfig(widths=(4, 16, 32, 128), steps=1000, seeds=(0, 1, 2)),
    # full: five seeds, ten times smoke's steps, widths 2 → 128 (160 → 9,610 parameters), the true-label
    # control at the widest. Width 128 already fits its random labels at 1,000 steps (train accuracy 1.00,
    # seed 0), so wider nets would only add cost: on a CPU a step of these full-batch fits costs ~1 ms of
    # overhead plus its arithmetic (width 2: 1.1 ms, 128: 1.8 ms, 256: 3.1 ms, 512: 5.8 ms). One seed is
    # 8 fits × 10,000 steps ≈ 105–130 s, five ≈ 9–11 CPU-minutes. The steps matter: seed 0's bits/parameter at
    # width 4 went 0.96 → 1.55 from 3,000 to 10,000 steps, so the capacity is a lower bound still rising.
    "full": MemorizationConfig(widths=(2, 4, 8, 16, 32, 64, 128), control_widths=(128,), steps=10_000,
                               seeds=(0, 1, 2, 3, 4)),
}
COMPRESSION = {
    "smoke": CompressionConfig(),
    # full: 9 models + the memorizer, 11 prequential blocks, 1,000 steps per fit (110 fits, most on small
    # prefixes): 139 CPU-seconds, measured whole. Every true-label model from width 8 up reaches test accuracy
    # ≥ 0.93 and fits its training labels; the memorizer fits its random labels (train accuracy 1.00).
    "full": CompressionConfig(widths=(0, 2, 4, 8, 16, 32, 64, 128, 256),
                              fracs=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.55, 0.7, 0.85, 1.0), steps=1000),
}
DOUBLE_DESCENT = {
    "smoke": DoubleDescentConfig(),
    # full: n = 500, 31 ratios p/n from 0.1 to 10, 10 feature draws (310 min-norm solves up to 500 × 5,000):
    # 45 CPU-seconds, measured whole (numpy's SVD; the spike at p = n stands ~850× above the smallest p).
    "full": DoubleDescentConfig(n_train=500, ratios=tuple(float(r) for r in np.round(np.geomspace(0.1, 10, 31), 4)),
                                feature_seeds=tuple(range(10))),
}
PRESETS = {"scaling": SCALING, "memorization": MEMORIZATION, "compression": COMPRESSION,  # function -> presets
           "double_descent": DOUBLE_DESCENT}
