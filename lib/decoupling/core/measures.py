"""Information-theoretic estimators: what pretraining gives a new task, in bits.

Notation (chapter 4): θ0 = random init, θP = pretrained init; q0, qP = the two models' predictive
distributions q(y|x) after both are trained on the same target data, given as arrays (n, K) of
probabilities or, with `log=True`, of natural-log probabilities (exact at any logit gap); y = integer
labels (n,). Everything is in bits (log base 2) unless a name says nats.

- `essay_kl` is the essay's quantity exactly as written, E_x D_KL(q0 ‖ qP). It needs no labels.
- `heldout_gain` is the labelled counterpart, E[log2 qP(y|x) − log2 q0(y|x)], with the right sign.
- `prequential` is the principled one: the online code length of the labels (Blier & Ollivier 2018),
  whose difference between inits, `delta_L`, is the side information (bits) the weights carry.
- `effective_data_transferred` (Hernandez et al. 2021) reads the same two learning curves horizontally.
- `bootstrap_ci`: THE percentile bootstrap of the book (every chapter's CIs over seeds, windows, pairs).
- `fit_power_law*` for the scaling chapter; `logme` (You et al. 2021) is the cheap frozen-feature proxy;
  `mutual_information_bits` / `conditional_mi_bits` for I(Y;T|X) in the memory chapter.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import numpy as np

LOG2E = 1.0 / math.log(2.0)
_TINY = 1e-300  # floor for probabilities inside logs: a zero-probability label costs ~997 bits, not inf


def _probs(p) -> np.ndarray:
    return np.asarray(p, dtype=np.float64)


def _labels(y) -> np.ndarray:
    return np.asarray(y, dtype=np.int64).reshape(-1)


# ---------------------------------------------------------------------------------------------- log loss
# Every function below that reads a predictive distribution takes probabilities, or with `log=True` natural-log
# probabilities (train.predict_log_proba, batched.Many.predict_log_proba): those stay exact at any logit gap,
# where a probability underflows to 0 (float32 past a gap of ~104 nats, float64 past ~745) and its code
# length would hit the floor below or its KL turn infinite.
def log_loss_bits(q, y, reduction: str = "mean", log: bool = False):
    """Code length of labels under a predictive distribution: −log2 q(y_i|x_i) (Shannon 1948; the
    cross-entropy in bits). q: probabilities (n, K), or natural-log probabilities with log=True.
    reduction: "mean" (bits/example), "sum" (total bits), or "none" (per example)."""
    q = _probs(q)
    y = _labels(y)
    picked = q[np.arange(len(y)), y]
    bits = -picked * LOG2E if log else -np.log2(np.maximum(picked, _TINY))
    if reduction == "none":
        return bits
    if reduction == "sum":
        return float(bits.sum())
    if reduction == "mean":
        return float(bits.mean()) if len(bits) else float("nan")
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def kl_bits(p, q, log: bool = False) -> np.ndarray:
    """Per-row D_KL(p ‖ q) = Σ_k p_k log2(p_k/q_k) (Kullback & Leibler 1951), with 0·log 0 = 0.
    p, q: probabilities, or natural-log probabilities with log=True (finite wherever both are)."""
    if log:
        lp, lq = _probs(p), _probs(q)
        pk = np.exp(lp)
        with np.errstate(invalid="ignore"):  # −inf − (−inf) where p_k = 0: the term is 0 by convention
            terms = np.where(pk > 0, pk * (lp - lq), 0.0)
        return terms.sum(axis=-1) * LOG2E
    from scipy.special import rel_entr  # rel_entr(p, q) = p·ln(p/q), 0 where p = 0, inf where q = 0 < p
    return rel_entr(_probs(p), _probs(q)).sum(axis=-1) * LOG2E


def essay_kl(q0, qP, log: bool = False) -> float:
    """The essay's information gain, EXACTLY as written: mean over inputs x of D_KL(q0(·|x) ‖ qP(·|x)), in
    bits — argument order q0 first (from-scratch model), then qP (pretrained). It uses no labels: it is
    disagreement between two models, > 0 even for two seeds of one init and whatever the sign of transfer.
    If qP ≈ p*, the held-out gain equals the REVERSE order, E_x D_KL(qP ‖ q0) (the generality chapter derives it).
    log=True: q0, qP are natural-log probabilities."""
    return float(np.mean(kl_bits(q0, qP, log)))


def heldout_gain(q0, qP, y, log: bool = False) -> float:
    """Held-out log-loss gain G = mean_i [log2 qP(y_i|x_i) − log2 q0(y_i|x_i)] in bits/example.
    Positive: pretraining helped on these labels; negative: it hurt (negative transfer).
    log=True: q0, qP are natural-log probabilities."""
    return log_loss_bits(q0, y, log=log) - log_loss_bits(qP, y, log=log)


# ---------------------------------------------------------------------------------------------- prequential
DEFAULT_FRACS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0)


def block_schedule(n: int, fracs: Sequence[float] = DEFAULT_FRACS, min_first: int = 1) -> list[int]:
    """Block ends for prequential coding: round(f·n) for each fraction (Voita & Titov 2020 use 0.1 % …
    100 %), at least `min_first` in the first block, strictly increasing, the last one n."""
    if n < 1:
        raise ValueError("need at least one example")
    ends = sorted({min(n, max(int(min_first), int(round(f * n)))) for f in fracs} | {n})
    return [e for e in ends if e >= 1]


def prequential(fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray], X, y, K: int,
                ends: Sequence[int], n_configs: int = 1, log: bool = False) -> dict:
    """Prequential (online) code length of labels y, in bits (Rissanen 1984; Blier & Ollivier 2018, "The
    description length of deep learning models"; Voita & Titov 2020, "Information-theoretic probing with
    minimum description length").

    The examples, in the given order, are cut at `ends` (e.g. `block_schedule`). Block 1 is sent with a
    uniform code, log2 K bits per label. Every later block [e_{i−1}, e_i) is sent with a model trained on
    all earlier examples: `fit_predict(train_idx, test_idx) -> probs (len(test_idx), K)` — the caller
    trains from θ0 or θP on train_idx (with log=True it returns natural-log probabilities instead). If
    hyperparameters were chosen among `n_configs` candidates (on the seen data only), naming the choice
    costs log2(n_configs) bits per block (Voita & Titov 2020, §2.2).

    Returns total bits, bits per block, bits per label, and the ends. `X` is only used for its length (the
    caller's fit_predict indexes its own data).
    """
    y = _labels(y)
    n = len(y)
    if X is not None and len(X) != n:
        raise ValueError(f"X has {len(X)} rows but y has {n}")
    ends = [int(e) for e in ends]
    if not ends or any(b <= a for a, b in zip([0] + ends, ends)) or ends[-1] > n:
        raise ValueError(f"ends must be strictly increasing within 1..{n}, got {ends}")
    block_bits = [ends[0] * math.log2(K)]  # uniform code for the first block
    charge = math.log2(n_configs) if n_configs > 1 else 0.0
    for start, stop in zip(ends[:-1], ends[1:]):
        train_idx, test_idx = np.arange(start), np.arange(start, stop)
        probs = _probs(fit_predict(train_idx, test_idx))
        if probs.shape != (len(test_idx), K):
            raise ValueError(f"fit_predict returned shape {probs.shape}, expected {(len(test_idx), K)}")
        block_bits.append(log_loss_bits(probs, y[test_idx], reduction="sum", log=log) + charge)
    total = float(sum(block_bits))
    coded = ends[-1]
    return {
        "total_bits": total,
        "block_bits": [float(b) for b in block_bits],
        "ends": ends,
        "n": coded,
        "K": int(K),
        "bits_per_label": total / coded,
        "uniform_bits": coded * math.log2(K),  # the code length with no model at all
        "hyperparameter_bits": charge * (len(ends) - 1),
    }


def delta_L(L0, LP):
    """ΔL = L_preq(θ0) − L_preq(θP): bits of side information about the target labels that the pretrained
    weights provide (positive: pretraining helps). Accepts numbers, arrays (e.g. per seed) or the dicts
    returned by `prequential`."""
    def total(L):
        return L["total_bits"] if isinstance(L, dict) else np.asarray(L, dtype=np.float64)
    d = total(L0) - total(LP)
    return float(d) if np.ndim(d) == 0 else d


# ---------------------------------------------------------------------------------------------- transfer
def effective_data_transferred(n_ft, loss_ft, n_scratch, loss_scratch) -> np.ndarray:
    """Effective data transferred D_T (Hernandez et al. 2021, "Scaling laws for transfer"): for each
    fine-tuning size n with loss l, the from-scratch model needs n_eq examples to reach the same loss;
    D_T = n_eq − n. n_eq is read off the scratch curve by linear interpolation in (log n, loss) at the
    first crossing of l; NaN where l lies outside the scratch curve's range. Negative D_T = negative
    transfer (the pretrained model is worse than scratch at the same n)."""
    n_ft, loss_ft = np.asarray(n_ft, float), np.asarray(loss_ft, float)
    order = np.argsort(n_scratch)
    ns, ls = np.asarray(n_scratch, float)[order], np.asarray(loss_scratch, float)[order]
    logn = np.log(ns)
    out = np.full(len(n_ft), np.nan)
    for i, (n, l) in enumerate(zip(n_ft, loss_ft)):
        for j in range(len(ns) - 1):
            a, b = ls[j], ls[j + 1]
            if min(a, b) <= l <= max(a, b):
                t = 0.0 if a == b else (a - l) / (a - b)
                out[i] = math.exp(logn[j] + t * (logn[j + 1] - logn[j])) - n
                break
        else:
            if len(ns) == 1 and l == ls[0]:
                out[i] = ns[0] - n
    return out


# ---------------------------------------------------------------------------------------------- statistics
class CI(NamedTuple):
    value: float  # the statistic on the full sample
    lo: float  # lower percentile bound
    hi: float  # upper percentile bound


def bootstrap_ci(values, stat: Callable = np.mean, n_boot: int = 2000, alpha: float = 0.05,
                 seed: int = 0) -> CI:
    """Percentile bootstrap confidence interval (Efron 1979; Efron & Tibshirani 1993, ch. 13): resample
    the values with replacement n_boot times, take the alpha/2 and 1−alpha/2 quantiles of the statistic.
    Over seeds, pass one value per seed."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return CI(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(n_boot, len(v)))
    boots = np.array([stat(v[i]) for i in idx])
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return CI(float(stat(v)), float(lo), float(hi))


def _loglog(x, y) -> tuple[float, float, float]:
    """Least squares of log y on log x: (slope, intercept, R² in log space)."""
    lx, ly = np.log(x), np.log(y)
    slope, intercept = np.polyfit(lx, ly, 1)
    resid = ly - (slope * lx + intercept)
    ss_tot = ((ly - ly.mean()) ** 2).sum()
    r2 = 1.0 - (resid ** 2).sum() / ss_tot if ss_tot > 0 else float("nan")
    return float(slope), float(intercept), float(r2)


def _resamples(N, L, n_boot: int, seed: int):
    """Bootstrap resamples of a learning curve: over seeds (rows of a matrix L, then averaged) when L is
    2-D (n_seeds, n_points), else over points."""
    rng = np.random.default_rng(seed)
    N, L = np.asarray(N, float), np.asarray(L, float)
    for _ in range(n_boot):
        if L.ndim == 2:
            rows = rng.integers(0, L.shape[0], L.shape[0])
            yield N, L[rows].mean(0)
        else:
            pts = rng.integers(0, len(N), len(N))
            if len(np.unique(N[pts])) >= 3:
                yield N[pts], L[pts]


def _ci(samples, alpha: float) -> list[float]:
    s = np.asarray([v for v in samples if np.isfinite(v)])
    return [float(np.quantile(s, alpha / 2)), float(np.quantile(s, 1 - alpha / 2))] if len(s) else [math.nan] * 2


def _pure_fit(N, L) -> tuple[float, float, float]:
    slope, intercept, r2 = _loglog(N, L)
    alpha = -slope
    # log L = α log Nc − α log N  →  Nc = exp(intercept / α)
    # a tiny |α| makes Nc astronomically large (inf, not an OverflowError: the fit is still reported)
    with np.errstate(over="ignore"):
        Nc = float(np.exp(intercept / alpha)) if alpha != 0 else float("nan")
    return alpha, Nc, r2


def fit_power_law(N, L, n_boot: int = 1000, ci_alpha: float = 0.05, seed: int = 0) -> dict:
    """Pure power law L = (N_c/N)^α (Kaplan et al. 2020, eq. 1.1; α_N = 0.076 for non-embedding N, nats),
    fitted by least squares in log-log space, R² in log space. L may be a matrix (n_seeds, n_points): the fit
    is to the seed mean and the bootstrap resamples seeds; otherwise it resamples points.
    Exponents of this form and of `fit_power_law_floor` are NOT comparable (≈0.08 vs ≈0.3)."""
    N, L = np.asarray(N, float), np.asarray(L, float)
    alpha, Nc, r2 = _pure_fit(N, L.mean(0) if L.ndim == 2 else L)
    boots = [_pure_fit(n, l) for n, l in _resamples(N, L, n_boot, seed)]
    return {"form": "L = (Nc/N)^alpha", "alpha": alpha, "Nc": Nc, "r2": r2,
            "alpha_ci": _ci([b[0] for b in boots], ci_alpha), "Nc_ci": _ci([b[1] for b in boots], ci_alpha)}


def _floor_fit(N, L) -> tuple[float, float, float, float]:
    """L = E + A·N^−α by least squares on log L (Hoffmann et al. 2022 fit in log space, with a Huber loss;
    plain squares here), from a grid of starting α to avoid a local minimum. Returns E, A, α, R² (log)."""
    from scipy.optimize import curve_fit

    lN, lL = np.log(N), np.log(L)

    def model(lN, E, logA, a):
        return np.log(E + np.exp(logA - a * lN))

    best = None
    for a0 in (0.05, 0.2, 0.5, 1.0):
        for E0 in (0.0, 0.5 * L.min(), 0.9 * L.min()):
            A0 = max(L.max() - E0, 1e-6) * N.min() ** a0
            try:
                p, _ = curve_fit(model, lN, lL, p0=(E0, math.log(A0), a0),
                                 bounds=([0.0, -50.0, 1e-4], [L.min(), 200.0, 5.0]), maxfev=20000)
            except (RuntimeError, ValueError):
                continue
            sse = ((model(lN, *p) - lL) ** 2).sum()
            if best is None or sse < best[0]:
                best = (sse, p)
    if best is None:
        return (math.nan,) * 4
    sse, (E, logA, a) = best
    ss_tot = ((lL - lL.mean()) ** 2).sum()
    return float(E), float(math.exp(logA)), float(a), float(1 - sse / ss_tot) if ss_tot > 0 else math.nan


def fit_power_law_floor(N, L, n_boot: int = 200, ci_alpha: float = 0.05, seed: int = 0) -> dict:
    """Power law with an irreducible loss, L = E + A·N^−α (Hoffmann et al. 2022, the N term of their eq. 2;
    E = 1.69, A = 406.4, α = 0.34). scipy curve_fit on log L, bounded E ∈ [0, min L], α ∈ (0, 5].
    Bootstrap CIs as in `fit_power_law` (fewer resamples: each is a nonlinear fit)."""
    N, L = np.asarray(N, float), np.asarray(L, float)
    E, A, a, r2 = _floor_fit(N, L.mean(0) if L.ndim == 2 else L)
    boots = [_floor_fit(n, l) for n, l in _resamples(N, L, n_boot, seed)]
    return {"form": "L = E + A*N^-alpha", "E": E, "A": A, "alpha": a, "r2": r2,
            "E_ci": _ci([b[0] for b in boots], ci_alpha), "A_ci": _ci([b[1] for b in boots], ci_alpha),
            "alpha_ci": _ci([b[2] for b in boots], ci_alpha)}


# ---------------------------------------------------------------------------------------------- LogME
def log_evidence(features, t, alpha: float, beta: float) -> float:
    """Log marginal likelihood (nats) of targets t (n,) under Bayesian linear regression on features F (n, D):
    w ~ N(0, α⁻¹ I), t | F, w ~ N(F w, β⁻¹ I), so t ~ N(0, α⁻¹ F Fᵀ + β⁻¹ I) — computed directly from that
    n×n Gaussian (naive, O(n³); the reference that `logme`'s closed form is tested against)."""
    from scipy.stats import multivariate_normal
    F = np.asarray(features, np.float64)
    cov = F @ F.T / alpha + np.eye(len(F)) / beta
    return float(multivariate_normal(mean=np.zeros(len(F)), cov=cov).logpdf(np.asarray(t, np.float64)))


def logme_evidence(features, t, max_iter: int = 100, tol: float = 1e-6) -> tuple[float, float, float]:
    """Maximise the evidence of one target column over (α, β) by MacKay's fixed point (You et al. 2021,
    "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", Algorithm 1; MacKay 1992):
        γ = Σ_i β σ_i / (α + β σ_i),  α ← γ / mᵀm,  β ← (n − γ) / ‖F m − t‖²,
    with σ_i the eigenvalues of FᵀF and m = β (αI + β FᵀF)⁻¹ Fᵀ t the posterior mean. The log evidence is
        n/2 log β + D/2 log α − n/2 log 2π − β/2 ‖F m − t‖² − α/2 mᵀm − 1/2 log|αI + β FᵀF|.
    Returns (log evidence in nats, α, β), evaluated consistently at the final (α, β)."""
    F = np.asarray(features, np.float64)
    t = np.asarray(t, np.float64)
    n, D = F.shape
    # FᵀF = V diag(σ) Vᵀ; only its eigenbasis is needed (D ≤ n or not, the formulas hold with σ_i ≥ 0)
    sigma, V = np.linalg.eigh(F.T @ F)
    sigma = np.clip(sigma, 0.0, None)
    Ft = V.T @ (F.T @ t)  # (D,) Fᵀt in the eigenbasis

    def posterior(alpha, beta):
        m_eig = beta * Ft / (alpha + beta * sigma)
        m = V @ m_eig
        return m, float(m @ m), float(((F @ m - t) ** 2).sum())

    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        _, mm, res = posterior(alpha, beta)
        gamma = float((beta * sigma / (alpha + beta * sigma)).sum())
        new_alpha = gamma / max(mm, 1e-300)
        new_beta = (n - gamma) / max(res, 1e-300)
        done = abs(new_alpha - alpha) <= tol * alpha and abs(new_beta - beta) <= tol * beta
        alpha, beta = new_alpha, new_beta
        if done:
            break
    _, mm, res = posterior(alpha, beta)
    evidence = (n / 2 * math.log(beta) + D / 2 * math.log(alpha) - n / 2 * math.log(2 * math.pi)
                - beta / 2 * res - alpha / 2 * mm - 0.5 * float(np.log(alpha + beta * sigma).sum()))
    return float(evidence), float(alpha), float(beta)


def logme(features, y, K: int | None = None) -> float:
    """LogME score (You et al. 2021): the maximised log evidence per example (nats), averaged over the K
    one-vs-rest 0/1 target columns of the labels. Higher = the frozen features suit the task better.
    A training-free proxy for transferability; chapter 4 correlates it with ΔL."""
    F = np.asarray(features, np.float64)
    y = _labels(y)
    K = int(K or y.max() + 1)
    return float(np.mean([logme_evidence(F, (y == k).astype(np.float64))[0] / len(y) for k in range(K)]))


# ---------------------------------------------------------------------------------------------- MI
def entropy_bits(p, axis: int = -1) -> np.ndarray:
    """Shannon entropy H(p) = −Σ p log2 p, with 0·log 0 = 0."""
    from scipy.special import entr  # entr(p) = −p ln p
    return entr(_probs(p)).sum(axis=axis) * LOG2E


def mutual_information_bits(joint) -> float:
    """I(X;Y) = Σ p(x,y) log2 [p(x,y) / (p(x)p(y))] = H(X) + H(Y) − H(X,Y) (Cover & Thomas 2006, eq. 2.28),
    from a 2-D joint table (normalised here if it holds counts)."""
    p = _probs(joint)
    p = p / p.sum()
    return float(entropy_bits(p.sum(1)) + entropy_bits(p.sum(0)) - entropy_bits(p.reshape(-1)))


def conditional_mi_bits(p_y_given_xt, p_xt) -> float:
    """I(Y;T|X) = Σ_{x,t} p(x,t) D_KL(p(y|x,t) ‖ p(y|x)), with p(y|x) = Σ_t p(t|x) p(y|x,t) (Cover & Thomas
    2006, eq. 2.60): how many bits the task/context T adds about the output Y once the input X is known.
    p_y_given_xt: (nx, nt, ny); p_xt: the joint of X and T (nx, nt). K conflicting tasks, equally likely,
    each mapping every x to its own label → log2 K bits (chapter 2)."""
    pyxt = _probs(p_y_given_xt)
    pxt = _probs(p_xt)
    pxt = pxt / pxt.sum()
    px = pxt.sum(1, keepdims=True)  # (nx, 1)
    pt_x = np.divide(pxt, px, out=np.zeros_like(pxt), where=px > 0)  # (nx, nt)
    py_x = (pt_x[..., None] * pyxt).sum(1, keepdims=True)  # (nx, 1, ny)
    seen = pxt > 0  # (x, t) pairs that never occur contribute nothing (and may hold any p(y|x,t))
    return float((pxt[seen] * kl_bits(pyxt[seen], np.broadcast_to(py_x, pyxt.shape)[seen])).sum())


def h_score(features, y) -> float:
    """H-score (Bao et al. 2019): tr(cov(f)⁻¹ · cov(E[f | y])), how much of the features' variance lies
    between the class means. Between 0 and min(d, K−1); a cheap transferability proxy computed on frozen
    features, like LogME. Pseudo-inverse, so that collinear features do not blow it up."""
    f = np.asarray(features, np.float64)
    y = np.asarray(y)
    f = f - f.mean(0)
    cov_f = f.T @ f / len(f)
    means = np.zeros_like(f)
    for c in np.unique(y):
        means[y == c] = f[y == c].mean(0)
    cov_g = means.T @ means / len(f)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-10, hermitian=True) @ cov_g))


# ---------------------------------------------------------------------------------------------- controls
# Equivalence bound δ for a control that must show no gain (θ0 vs a second random init θ0', shuffled
# labels), in bits per coded label, fixed before any run and the same at every profile and in every
# chapter: a twentieth of a bit is 5% of the uniform code of a binary label (2.5% for four classes), below
# any gain a reader would pay for a pretrained model. Whether a run can show equivalence at this bound
# is a question of its power (seeds, labels): an underpowered run says "undecided", it does not pass.
DELTA_BITS = 0.05


def equivalence(lo: float, hi: float, delta: float = DELTA_BITS) -> str:
    """The control's verdict from its 95% CI (bits per label), an equivalence test (two one-sided tests at
    the CI's level): "equivalent" when the CI lies within ±delta; "biased" when it lies wholly outside 0
    and reaches beyond ±delta; otherwise "undecided" — the CI is too wide for the bound: add seeds."""
    if -delta <= lo and hi <= delta:
        return "equivalent"
    if lo > 0 or hi < 0:
        return "biased"
    return "undecided"


def clustered_ci(per_target: dict, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> dict:
    """Mean over targets of each target's mean over seeds, with a two-stage percentile bootstrap: resample
    the targets, then the seeds within each drawn target (runs cluster by target, so resampling runs as
    if independent would make the interval of an integral over tasks too narrow)."""
    groups = [np.asarray(v, np.float64) for v in per_target.values()]
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    for b in range(n_boot):
        picks = rng.integers(0, len(groups), len(groups))
        boots[b] = np.mean([groups[t][rng.integers(0, len(groups[t]), len(groups[t]))].mean() for t in picks])
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return {"value": float(np.mean([g.mean() for g in groups])), "lo": float(lo), "hi": float(hi)}
