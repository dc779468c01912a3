"""Chapter 4, "General-purpose models" (book/generality.md): how many bits about a new task's labels a
pretrained body gives, measured three ways, and the essay's "generality" integral over tasks × datasets.

Notation: θ0 = random init, θP = pretrained init (the body of an LM, head replaced); q0, qP = the two
models' predictive distributions after fine-tuning on the same target examples.

Three experiments, each a plain function of a frozen config returning a JSON-able dict:

1. `transfer` — one target task; our own GPT-2 bodies pretrained on several source domains
   (`experiments.pretrain`, shared with the computers chapter), a random-init twin θ0 and a second random
   init θ0' (the seed-vs-seed control), each fine-tuned with the *same* prequential protocol:
   the target examples (same order for every init) are cut into blocks; block 1 costs log2 K bits per
   label; every later block is coded by a model fine-tuned on all blocks before it. Per block the
   fine-tuning hyperparameters are chosen among `hps` on data already seen only (`select_prequential`),
   and log2(#hps) bits are charged per block. From the same fits: test-set learning curves, the essay's
   KL, the held-out gain, calibration, how far each layer moved, and LogME on the frozen features.
2. `minilm_transfer` — the same protocol for a real lab-pretrained body, all-MiniLM-L6-v2, against a
   randomly initialised BERT of the same shape. `mode="probe"` (smoke: the CPU cannot fine-tune 22M
   parameters hundreds of times) trains a linear head on frozen mean-pooled features; `mode="finetune"`
   (full, GPU) fine-tunes the whole model.
3. `digits_transfer` — a two-layer MLP pretrained on digits 0–4 transferred to 5–9 (the vision-style
   case), with an early-stopped source and a random-label source to find out when transfer turns negative
   ("ossification", Hernandez et al. 2021), and first-layer filters to show what is reused.

All three run the protocol the same way (`run_protocols`): the inits × seeds of an experiment share one
architecture, so they are fitted together, as members of one batched run (`batched.train_many`) per
block and candidate — equal to fitting them one after another (`run_protocol`, the tested reference) up to
float rounding, at the GPU cost of one.

The aggregations the chapter prints (the source → target ΔL matrix, generality scores with bootstrap
CIs, the effective data transferred and its exponent, LogME ↔ ΔL rank correlation) are pure functions of
these results, below the experiments.
"""
from __future__ import annotations

import dataclasses
import math
import zlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from decoupling.core import measures, models
from decoupling.core.device import cpu_threads  # tiny models: one CPU thread (10-30x faster on a busy 2-core box)
from decoupling.progress import bar

SCRATCH = "scratch"  # θ0: random init, fine-tuned exactly like the pretrained bodies
CONTROL = "scratch-seed"  # θ0': a second random init — the seed-vs-seed control (ΔL should be 0)


# ================================================================================== the fair protocol
@dataclass(frozen=True)
class HP:
    """One candidate fine-tuning setting. A chooser sees several and picks per block on seen data."""
    name: str
    lr: float  # peak learning rate of the head
    body_lr_mult: float = 1.0  # body lr = lr · body_lr_mult; 0 = linear probe (frozen body)
    weight_decay: float = 0.01
    lp_frac: float = 0.0  # > 0: LP-FT (Kumar et al. 2022): this fraction of the steps trains the head alone


def choose(per_block: Sequence[Sequence[float]]) -> int:
    """The candidate that codes the next block: the one whose code for the last coded block was shortest
    (per_block[i][c] = candidate c's bits on coded block i); candidate 0 when nothing is coded yet."""
    return 0 if not per_block else int(np.argmin(per_block[-1]))


def select_prequential(fit_predict: Callable[[int, np.ndarray, np.ndarray], np.ndarray], y, K: int,
                       ends: Sequence[int], n_configs: int) -> dict:
    """Prequential code length with the hyperparameters chosen per block on data already seen.

    `fit_predict(c, train_idx, test_idx) -> probs` fits candidate c on train_idx (the blocks already sent)
    and predicts test_idx (the next block). Every candidate is fitted at every block; block i is coded
    with the candidate whose code for block i−1 was shortest — a hold-out on the most recent *seen*
    block, so the decoder, who knows those labels, can repeat the choice. The first coded block, with
    nothing seen yet to choose on, uses candidate 0. Because the choice is recomputable it needs no bits;
    we still charge log2(n_configs) per block, as Voita & Titov (2020) do for a searched setting: an upper
    bound, the same for every init.

    Returns `measures.prequential`'s record plus the choices, and each candidate's code length as if it
    had been used for every block (same fits, no choice).
    """
    y = np.asarray(y, dtype=np.int64)
    per_block: list[list[float]] = []  # bits of each candidate on each coded block
    choices: list[int] = []

    def fp(train_idx, test_idx):
        # the choice reads only per_block, i.e. labels of blocks already coded (indices < train_idx end)
        c_star = choose(per_block)
        probs = [np.asarray(fit_predict(c, train_idx, test_idx), dtype=np.float64) for c in range(n_configs)]
        choices.append(c_star)
        per_block.append([measures.log_loss_bits(p, y[test_idx], reduction="sum") for p in probs])
        return probs[c_star]

    res = measures.prequential(fp, None, y, K, ends, n_configs=n_configs)
    first = res["block_bits"][0]
    res["choices"] = choices
    res["config_bits"] = [float(first + sum(b[c] for b in per_block)) for c in range(n_configs)]
    return res


def expected_calibration_error(probs, y, n_bins: int = 10) -> float:
    """ECE (Guo et al. 2017): |accuracy − confidence| averaged over equal-width confidence bins, weighted
    by bin size. An over-confident model pays for it in code length: each confident mistake costs many bits."""
    p = np.asarray(probs, np.float64)
    y = np.asarray(y)
    conf, pred = p.max(1), p.argmax(1)
    edges = np.linspace(0, 1, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs((pred[m] == y[m]).mean() - conf[m].mean())
    return float(ece)


def _layer_group(name: str, prefix: str | None) -> str:
    """'transformer.h.1.attn.c_attn.weight' -> 'h.1'; 'bert.encoder.layer.3.x' -> 'encoder.layer.3';
    'score.weight' -> 'score': a parameter's block, for "which layers move least"."""
    parts = name.split(".")
    if prefix and parts[0] == prefix and len(parts) > 1 and not parts[1].isdigit():  # keep 'body.0'
        parts = parts[1:]
    for i, p in enumerate(parts):
        if p.isdigit():
            return ".".join(parts[:i + 1])
    return parts[0]


def layer_movement(before: dict, model: nn.Module) -> dict:
    """Relative weight change per block, ‖θ_after − θ_before‖ / ‖θ_before‖ (norms over the block's
    parameters): how much fine-tuning rewrote each layer (Raghu et al.-style "which layers move")."""
    prefix = getattr(model, "base_model_prefix", None)
    num: dict[str, float] = {}
    den: dict[str, float] = {}
    for k, v in model.state_dict().items():
        if k not in before or not v.dtype.is_floating_point:
            continue
        g = _layer_group(k, prefix)
        b = before[k].double()
        num[g] = num.get(g, 0.0) + float(((v.detach().cpu().double() - b) ** 2).sum())
        den[g] = den.get(g, 0.0) + float((b ** 2).sum())
    return {g: math.sqrt(num[g] / den[g]) if den[g] > 0 else float("nan") for g in num}


def _steps(n: int, epochs: float, batch_size: int, min_steps: int, max_steps: int) -> tuple[int, int]:
    """(steps, batch size) for fine-tuning on n examples: `epochs` passes, clipped to [min, max] steps."""
    bs = min(batch_size, n)
    return int(min(max_steps, max(min_steps, math.ceil(epochs * n / bs)))), bs


def _stages(hp: HP, steps: int, bs: int, seed: int):
    """The TrainConfigs of one fit, in order: one stage, or for LP-FT a linear probe first, then everything
    (same total steps). Stage i draws its data order from seed + i."""
    from decoupling.core import train
    stages = [(steps, hp.body_lr_mult)]
    if hp.lp_frac > 0:
        lp = max(1, int(round(hp.lp_frac * steps)))
        stages = [(lp, 0.0), (max(1, steps - lp), hp.body_lr_mult)]
    return [train.TrainConfig(steps=n_steps, batch_size=bs, lr=hp.lr, body_lr_mult=mult,
                              weight_decay=hp.weight_decay, warmup_frac=0.1, seed=seed + i, progress=False)
            for i, (n_steps, mult) in enumerate(stages)]


def _fit(model: nn.Module, inputs: tuple, y: torch.Tensor, hp: HP, steps: int, bs: int, seed: int) -> nn.Module:
    """One fit of one model (the sequential reference; `_fit_many` fits every member at once)."""
    from decoupling.core import train
    for tc in _stages(hp, steps, bs, seed):
        if len(inputs) == 2:
            train.train_classifier(model, inputs[0], inputs[1], y, tc)
        else:
            train.train_module(model, inputs[0], y, tc)
    return model


def _predict(model: nn.Module, inputs: tuple) -> np.ndarray:
    from decoupling.core import train
    return train.predict_proba(model, *inputs)


def _take(inputs: tuple, idx) -> tuple:
    idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
    return tuple(t[idx] for t in inputs)


@dataclass(frozen=True)
class Protocol:
    """How every init is fine-tuned and coded (the same for all of them)."""
    ends: tuple[int, ...]  # prequential block ends (examples); block 1 is sent with the uniform code
    hps: tuple[HP, ...]  # candidates chosen among per block on seen data (log2 len(hps) bits charged)
    epochs: float = 5.0  # passes over the seen examples per fit
    batch_size: int = 32
    min_steps: int = 8
    max_steps: int = 300


def _movement_candidate(proto: Protocol) -> int | None:
    """The candidate whose last fit reports layer movement: the first that trains the body."""
    return next((c for c, h in enumerate(proto.hps) if h.body_lr_mult > 0), None)


def _record(res: dict, test_probs: dict, y_test: np.ndarray, proto: Protocol, movement: dict) -> dict:
    """One init's JSON-able result from select_prequential's record and the chosen fits' test predictions."""
    n_fits = len(proto.ends) - 1
    final = test_probs[n_fits - 1]
    return {
        "L": res["total_bits"], "L_config": res["config_bits"], "block_bits": res["block_bits"],
        "choices": [proto.hps[c].name for c in res["choices"]],
        "test_bits": [measures.log_loss_bits(test_probs[b], y_test) for b in range(n_fits)],
        "test_acc": [float((test_probs[b].argmax(1) == y_test).mean()) for b in range(n_fits)],
        "ece": expected_calibration_error(final, y_test),
        "confidence": float(final.max(1).mean()),
        "movement": movement,
    }


def run_protocol(make: Callable[[], nn.Module], inputs: tuple, y: torch.Tensor, test_inputs: tuple,
                 y_test: np.ndarray, K: int, proto: Protocol, seed: int, keep_model: bool = False) -> dict:
    """Prequential coding of y from one init (`make()` builds it afresh, deterministically) under `proto`,
    one fit after another: the reference that `run_protocols` (every init and seed at once) is tested
    against (tests/test_generality.py).

    Returns the code length (chosen and per candidate), per-block bits and choices, the test-set learning
    curve at every fit size (the candidate chosen for the next block), the chosen candidate's test predictions
    at every fit size (for the essay's KL and the gain), calibration at the last fit, and how far each layer
    moved in the last fit of the first candidate that trains the body."""
    y_np = y.numpy()
    fitted: dict[tuple[int, int], nn.Module] = {}  # (block, candidate) -> model, kept on the CPU
    ft = _movement_candidate(proto)
    last = len(proto.ends) - 2
    extra: dict = {}

    def fit_predict(c, train_idx, test_idx):
        block = int(np.searchsorted(proto.ends, len(train_idx)))
        steps, bs = _steps(len(train_idx), proto.epochs, proto.batch_size, proto.min_steps, proto.max_steps)
        model = make()
        # a bare head on frozen features (no base_model_prefix) has no layers to compare
        before = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()} if (
            c == ft and block == last and getattr(model, "base_model_prefix", None)) else None
        _fit(model, _take(inputs, train_idx), y[torch.as_tensor(train_idx)], proto.hps[c], steps, bs, seed)
        if before is not None:
            extra["movement"] = layer_movement(before, model)
            if keep_model:
                extra["model"] = model
        probs = _predict(model, _take(inputs, test_idx))
        fitted[(block, c)] = model.cpu()
        return probs

    res = select_prequential(fit_predict, y_np, K, proto.ends, len(proto.hps))
    # the test set is predicted only by the models that coded a block (the learning curve of the protocol)
    test_probs = {b: _predict(fitted[(b, c)], test_inputs) for b, c in enumerate(res["choices"])}
    return {"record": _record(res, test_probs, y_test, proto, extra.get("movement", {})),
            "test_probs": test_probs, "model": extra.get("model")}


# ---------------------------------------------------------------------------------- every init at once
@dataclass
class Member:
    """One init under the protocol — a member of the batched fits: how to build it afresh
    (deterministically), the examples it codes in the order they are sent, its test set, and its seed
    (data order; LP-FT's second stage uses seed + 1, as `_fit` does)."""
    make: Callable[[], nn.Module]
    inputs: tuple
    y: torch.Tensor
    test_inputs: tuple
    seed: int
    keep_model: bool = False


def batch_fits() -> bool:
    """Whether the members' fits train as one batched run or one after another. On a GPU these models
    are launch-bound, so M members in one vmapped step cost about what one does; on a CPU the work is
    arithmetic and memory traffic, and stacking only adds to it (measured on 2 cores: a smoke text target
    took 23 s batched against 14 s one by one). The two are equal up to float rounding (tests)."""
    from decoupling.core.device import DEVICE
    return DEVICE.type == "cuda"


@dataclass
class _OneByOne:
    """Fitted members kept apart (`_fit_many(batch=False)`), answering what run_protocols asks a
    `batched.Many`: each member predicts with the plain forward (on a CPU, SDPA's fused kernel, not the
    vmapped math path)."""
    models: list[nn.Module]

    @property
    def template(self) -> nn.Module:
        return self.models[0]

    def member(self, k: int) -> nn.Module:
        return self.models[k]

    def predict_proba(self, inputs_for_member: Callable[[int], tuple]) -> list[np.ndarray]:
        return [_predict(m, inputs_for_member(k)) for k, m in enumerate(self.models)]

    def subset(self, ks: Sequence[int]) -> "_OneByOne":
        return _OneByOne([self.models[k] for k in ks])


def _fit_many(members: Sequence[Member], train_idx: np.ndarray, hp: HP, steps: int, bs: int, desc: str,
              batch: bool = True):
    """`_fit` for every member at once: one `batched.train_many` run per stage, member k on its own first
    len(train_idx) examples, from its own init, with its own data seed. Equal to `_fit` per member up to
    float rounding (tests/test_batched.py, tests/test_generality.py). batch=False: `_fit` per member, the
    fitted models kept apart (`_OneByOne`, which answers the same calls)."""
    from decoupling.core import batched
    idx = torch.as_tensor(train_idx, dtype=torch.long)
    if not batch:
        return _OneByOne([_fit(m.make(), _take(m.inputs, idx), m.y[idx], hp, steps, bs, m.seed) for m in members])

    def data(k):
        return _take(members[k].inputs, idx), members[k].y[idx]

    make = lambda k: members[k].make()  # noqa: E731
    many = None
    # data order: each member's seed + stage; dropout (vmap draws each member's own): the first member's
    for stage, tc in enumerate(_stages(hp, steps, bs, members[0].seed)):
        many = batched.train_many(make, range(len(members)), data, tc,
                                  data_seeds=[m.seed + stage for m in members], desc=desc)
        make = lambda k, many=many: many.member(k)  # noqa: E731 - LP-FT: the next stage starts here
    return many


def run_protocols(members: Sequence[Member], y_test: np.ndarray, K: int, proto: Protocol,
                  desc: str = "protocol", batch: bool | None = None) -> list[dict]:
    """`run_protocol` for many inits and seeds at once — the same blocks, candidates, choices and outputs,
    one result per member. The members share an architecture and train as one batched run per (block,
    candidate): on a GPU these tiny models are launch-bound, so M members cost about what one does.

    Fits do not depend on the choices (every candidate is fitted at every block), and the candidate that
    codes block b is known before block b's fits (`choose`, on the codes of block b−1): so the fits run
    block by block, the test set is predicted by each member's chosen fit only (the models that code a
    block, as in run_protocol), and select_prequential then replays the fits for each member.
    batch: train the fits batched (default: `batch_fits()`, on a GPU) or one after another."""
    batch = batch_fits() if batch is None else batch
    n_fits = len(proto.ends) - 1
    ft, last = _movement_candidate(proto), n_fits - 1
    next_probs: dict[tuple[int, int], list[np.ndarray]] = {}  # (block, candidate) -> each member's
    test_probs: list[dict[int, np.ndarray]] = [{} for _ in members]  # member -> {block: chosen fit's}
    per_block: list[list[list[float]]] = [[] for _ in members]  # member -> [block][candidate] bits
    choices: list[list[int]] = [[] for _ in members]  # member -> the candidate that coded each block
    movement: list[dict] = [{} for _ in members]
    kept: list[nn.Module | None] = [None] * len(members)
    for b in bar(range(n_fits), desc=f"{desc} ({len(members)} members)"):
        start, stop = proto.ends[b], proto.ends[b + 1]
        steps, bs = _steps(start, proto.epochs, proto.batch_size, proto.min_steps, proto.max_steps)
        chosen = [choose(bits) for bits in per_block]
        for k, c in enumerate(chosen):
            choices[k].append(c)
        for c, hp in enumerate(proto.hps):
            many = _fit_many(members, np.arange(start), hp, steps, bs, f"{desc} n={start} {hp.name}", batch)
            next_probs[b, c] = many.predict_proba(lambda k: _take(members[k].inputs, np.arange(start, stop)))
            coders = [k for k in range(len(members)) if chosen[k] == c]
            if coders:
                for k, q in zip(coders, many.subset(coders).predict_proba(lambda i: members[coders[i]].test_inputs)):
                    test_probs[k][b] = q
            # a bare head on frozen features (no base_model_prefix) has no layers to compare
            if c == ft and b == last and getattr(many.template, "base_model_prefix", None):
                for k, m in enumerate(members):
                    model = many.member(k)
                    movement[k] = layer_movement(m.make().state_dict(), model)
                    kept[k] = model if m.keep_model else None
        for k, m in enumerate(members):
            y_next = m.y.numpy()[start:stop]
            per_block[k].append([measures.log_loss_bits(next_probs[b, c][k], y_next, reduction="sum")
                                 for c in range(len(proto.hps))])
    out = []
    for k, m in enumerate(members):
        def fit_predict(c, train_idx, test_idx, k=k):  # the fit made above for this block and candidate
            return next_probs[int(np.searchsorted(proto.ends, len(train_idx))), c][k]

        res = select_prequential(fit_predict, m.y.numpy(), K, proto.ends, len(proto.hps))
        assert res["choices"] == choices[k], "select_prequential must choose what the fits above assumed"
        out.append({"record": _record(res, test_probs[k], y_test, proto, movement[k]),
                    "test_probs": test_probs[k], "model": kept[k]})
    return out


def _pair(ref: dict, other: dict, y_test: np.ndarray) -> dict:
    """The three estimates for one (θ0 run, other run) pair of one seed, at every fit size."""
    kl, rkl, gain = [], [], []
    for b in sorted(ref["test_probs"]):
        q0, qP = ref["test_probs"][b], other["test_probs"][b]
        kl.append(measures.essay_kl(q0, qP))  # the essay's D_KL(q0 ‖ qP), exactly as written
        rkl.append(float(np.mean(measures.kl_bits(qP, q0))))  # the reverse order, E_x D_KL(qP ‖ q0)
        gain.append(measures.heldout_gain(q0, qP, y_test))
    return {"dL": measures.delta_L(ref["record"]["L"], other["record"]["L"]), "essay_kl": kl,
            "reverse_kl": rkl, "gain": gain}


def _collect(runs: dict, pairs: dict, seed_runs: dict, y_test: np.ndarray, ref: str) -> None:
    for name, r in seed_runs.items():
        rec = runs.setdefault(name, {})
        for k, v in r["record"].items():
            if k == "movement":
                for g, m in v.items():
                    rec.setdefault("movement", {}).setdefault(g, []).append(m)
            else:
                rec.setdefault(k, []).append(v)
        if name != ref:
            pr = pairs.setdefault(name, {})
            for k, v in _pair(seed_runs[ref], r, y_test).items():
                pr.setdefault(k, []).append(v)


CONTROL_OFFSET = 1_000_000_007  # θ0' = random init from (run seed + this): never a seed any other run uses


def run_seed(target: str, seed: int) -> int:
    """The seed of one (target, seed) cell: init, head, minibatch order and target sample all come from it.
    Derived from the target's name so that cells are independent draws: with one seed shared by every
    target, θ0's body would be the *same* network on all of them, and a bootstrap over cells would count
    one lucky or unlucky initialisation six times."""
    return seed * 1_000_003 + zlib.crc32(target.encode()) % 1_000_003


def _subset(n_total: int, n: int, seed: int) -> np.ndarray:
    """The first n of a seeded permutation: the target examples a seed sees, in the order they are sent."""
    if n > n_total:
        raise ValueError(f"asked for {n} examples but the split has {n_total}")
    return np.random.default_rng(seed).permutation(n_total)[:n]


# ================================================================================== 1. our bodies
@dataclass(frozen=True)
class TransferConfig:
    """One target task, every source. smoke: ~15–25 s per target on one idle CPU core (6 inits × 2 seeds,
    4 blocks up to 240 examples, 2 candidates); ΔL of weak smoke bodies is expected near or below 0."""
    target: str = "sentiment/movies"  # a decoupling.data text task
    sources: tuple[str, ...] = ("code", "prose", "c", "shuffled")  # pretrain domains (shuffled = control)
    body_profile: str = "smoke"  # the experiments.pretrain preset the bodies come from (shared cache)
    protocol: Protocol = field(default_factory=lambda: Protocol(
        ends=(16, 48, 112, 240), hps=(HP("finetune", 2e-3, 1.0), HP("probe", 1e-2, 0.0))))
    max_len: int = 48  # tokens per example (≤ the body's block_size)
    n_test: int = 128  # fixed test subset for curves, KL and gain
    seeds: tuple[int, ...] = (0, 1)  # fine-tuning seeds (→ run_seed): head init, θ0 init, data order, sample


# smoke targets: every text task (4 sentiment datasets + two other task families), kept tiny
TARGETS = {
    "smoke": ("sentiment/movies", "sentiment/tweets", "sentiment/amazon", "sentiment/nyt", "code/module",
              "prose/topic"),
    "full": ("sentiment/movies", "sentiment/tweets", "sentiment/amazon", "sentiment/nyt", "code/module",
             "prose/topic"),
}

TRANSFER = {
    "smoke": TransferConfig(),
    # full: the FULL bodies (6 layers, d=192, 4000 steps), 6 fits up to 1,280 examples, 3 seeds. On a GPU
    # these tiny steps are launch-bound (~5–10 ms each whatever the batch), so the budget is counted in
    # steps. The 6 inits × 3 seeds train as 18 members of one batched run per (block, candidate)
    # (`run_protocols`): 6 targets × 2 candidates × 129 steps ≈ 1.5k steps (benchmarks/full_cost.py),
    # where one after another they took ≈ 28k.
    "full": TransferConfig(
        body_profile="full", max_len=96, n_test=512, seeds=(0, 1, 2),
        protocol=Protocol(ends=(20, 40, 80, 160, 320, 640, 1280),
                          hps=(HP("finetune", 5e-4, 1.0), HP("head-fast-body-slow", 2e-3, 0.1)),
                          epochs=6.0, batch_size=64, max_steps=400)),
}


def _bodies(cfg: TransferConfig) -> tuple[dict, dict]:
    from decoupling.core import models
    from decoupling.experiments import pretrain
    lms, info = {}, {}
    for d in cfg.sources:
        path, res = pretrain.body(pretrain.config(cfg.body_profile, d), cfg.body_profile)
        lms[d] = models.load_lm(path)
        info[d] = {k: res.get(k) for k in ("eval_bits_per_token", "non_embedding_params", "tokens", "flops")}
    return lms, info


@torch.no_grad()
def _gpt_features(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """The frozen feature the classifier head reads: the last non-pad token's final hidden state."""
    from decoupling.core.device import DEVICE
    model = model.to(DEVICE).eval()
    body = model.transformer
    out = []
    for i in range(0, len(ids), batch_size):
        x, m = ids[i:i + batch_size].to(DEVICE), mask[i:i + batch_size].to(DEVICE)
        h = body(input_ids=x, attention_mask=m).last_hidden_state.float()  # (B, T, C)
        last = m.sum(1) - 1  # (B,)
        out.append(h[torch.arange(len(x), device=DEVICE), last].cpu())
    return torch.cat(out).double().numpy()


def transfer(cfg: TransferConfig) -> dict:
    """ΔL, essay KL, held-out gain, learning curves, calibration, layer movement and LogME for one target
    task and every source body (plus θ0 and the θ0' control). Chapter 4, experiments 1–5."""
    with cpu_threads(1), models.quiet_loading():
        return _transfer(cfg)


def _transfer(cfg: TransferConfig) -> dict:
    from decoupling import data
    from decoupling.core import models
    from decoupling.experiments import pretrain
    tok = data.tokenizer()
    K = data.num_labels(cfg.target)
    enc = data.encode(cfg.target, tok, cfg.max_len)
    tr, te = enc["train"], enc["test"]
    test_idx = np.sort(_subset(len(te["labels"]), min(cfg.n_test, len(te["labels"])), 0))
    test_inputs = _take((te["input_ids"], te["attention_mask"]), test_idx)
    y_test = te["labels"].numpy()[test_idx]
    lms, info = _bodies(cfg)
    body_cfg = pretrain.config(cfg.body_profile, "code").model
    if cfg.max_len > body_cfg.block_size:
        raise ValueError(f"max_len {cfg.max_len} > the bodies' block_size {body_cfg.block_size}")
    pad = tok.pad_token_id
    proto = cfg.protocol
    n = proto.ends[-1]

    def makers(seed):
        mk = {SCRATCH: lambda: models.build_classifier(body_cfg, K, seed=seed),
              CONTROL: lambda: models.build_classifier(body_cfg, K, seed=seed + CONTROL_OFFSET)}
        for d in cfg.sources:
            mk[d] = (lambda d=d: models.replace_head(lms[d], K, seed=seed, pad_token_id=pad))
        return mk

    # every (seed, init) is one member of the protocol's batched fits: one GPT-2 classifier shape
    names = [SCRATCH, CONTROL, *cfg.sources]
    members: dict[tuple[int, str], Member] = {}
    logme: dict = {}
    for s in cfg.seeds:
        seed = run_seed(cfg.target, s)
        order = _subset(len(tr["labels"]), n, seed)
        inputs = _take((tr["input_ids"], tr["attention_mask"]), order)
        y = tr["labels"][torch.as_tensor(order)]
        for name in names:
            members[s, name] = Member(makers(seed)[name], inputs, y, test_inputs, seed)
            if s == cfg.seeds[0] and name != CONTROL:  # LogME on frozen features of the first seed's sample
                logme[name] = measures.logme(_gpt_features(makers(seed)[name](), *inputs), y.numpy(), K)
    done = dict(zip(members, run_protocols(list(members.values()), y_test, K, proto, f"generality: {cfg.target}")))
    runs: dict = {}
    pairs: dict = {}
    for s in cfg.seeds:
        _collect(runs, pairs, {name: done[s, name] for name in names}, y_test, SCRATCH)
    return {"target": cfg.target, "K": K, "n": n, "ends": list(proto.ends), "n_test": len(y_test),
            "hps": [h.name for h in proto.hps], "uniform_bits": n * math.log2(K), "bodies": info,
            "runs": runs, "pairs": pairs, "logme": logme, "max_len": cfg.max_len}


# ================================================================================== 2. a lab-pretrained body
@dataclass(frozen=True)
class MiniLMConfig:
    """all-MiniLM-L6-v2 vs a random BERT of the same shape. smoke: linear probes on frozen mean-pooled
    features (two sentiment datasets, ~30 s on one CPU core, mostly the two encoders' forward passes);
    full: whole-model fine-tuning on the GPU."""
    targets: tuple[str, ...] = ("sentiment/movies", "sentiment/tweets")
    mode: str = "probe"  # "probe": frozen features + linear head; "finetune": the whole model
    protocol: Protocol = field(default_factory=lambda: Protocol(
        ends=(16, 48, 112, 240), hps=(HP("probe-lr1e-2", 1e-2, 1.0, 0.0), HP("probe-lr5e-2", 5e-2, 1.0, 0.0)),
        epochs=20.0, batch_size=64, min_steps=20))
    max_len: int = 32  # WordPiece tokens; the encoder's forward pass costs ∝ this at smoke
    n_test: int = 128
    seeds: tuple[int, ...] = (0, 1)


MINILM = {
    "smoke": MiniLMConfig(),
    "full": MiniLMConfig(
        targets=("sentiment/movies", "sentiment/tweets", "sentiment/amazon", "sentiment/nyt"),
        mode="finetune", max_len=64, n_test=512, seeds=(0, 1, 2),
        protocol=Protocol(ends=(20, 40, 80, 160, 320, 640, 1280),
                          hps=(HP("finetune-lr5e-5", 5e-5, 1.0), HP("finetune-lr3e-4", 3e-4, 1.0)),
                          epochs=6.0, batch_size=64, max_steps=400)),
}


def _random_bert(num_labels: int | None, seed: int):
    """A BERT with all-MiniLM-L6-v2's exact config and random weights: MiniLM's θ0 twin."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification
    from decoupling.core import models
    conf = AutoConfig.from_pretrained(models.minilm_path(), local_files_only=True,
                                      **({} if num_labels is None else {"num_labels": num_labels}))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModel.from_config(conf) if num_labels is None else AutoModelForSequenceClassification.from_config(conf)


def _bert_inputs(inputs: tuple) -> tuple:
    """(input_ids, padding mask (n, L)) -> (input_ids, the same mask as (n, 1, 1, L) booleans). Why: from a
    2-D mask, BERT's mask builder (transformers' masking_utils) first asks whether anything is padded, to
    skip the mask — a data-dependent branch `vmap` cannot trace, so batched members could not train; a 4-D
    mask is used as given, and masks the same keys (every query attends to the non-pad tokens)."""
    ids, mask = inputs
    return ids, mask.bool()[:, None, None, :]


def minilm_transfer(cfg: MiniLMConfig) -> dict:
    """The replace-the-head experiment on a real lab-pretrained model. Same protocol and outputs as
    `transfer`, with inits "scratch" (random BERT), "scratch-seed" (another random BERT) and "minilm"."""
    with cpu_threads(1), models.quiet_loading():
        return _minilm_transfer(cfg)


def _minilm_transfer(cfg: MiniLMConfig) -> dict:
    from decoupling import data
    from decoupling.core import models
    tok = models.minilm_tokenizer()
    out = {"mode": cfg.mode, "targets": {}}
    probe = cfg.mode == "probe"
    if cfg.mode not in ("probe", "finetune"):
        raise ValueError(f"mode must be 'probe' or 'finetune', not {cfg.mode!r}")
    proto = cfg.protocol
    n = proto.ends[-1]
    for target in cfg.targets:
        K = data.num_labels(target)
        texts = data.arrays(target)
        (xtr, ytr), (xte, yte) = texts["train"], texts["test"]
        test_idx = np.sort(_subset(len(yte), min(cfg.n_test, len(yte)), 0))
        y_test = yte[test_idx]
        rs = {s: run_seed(target, s) for s in cfg.seeds}
        orders = {s: _subset(len(ytr), n, rs[s]) for s in cfg.seeds}
        names = (SCRATCH, CONTROL, "minilm")
        members: dict[tuple[int, str], Member] = {}
        logme: dict = {}
        if probe:
            # frozen features once per encoder for every example any seed sees (union), then linear heads
            need = np.unique(np.concatenate(list(orders.values())))
            pos = {int(i): j for j, i in enumerate(need)}
            # Three encoders, each embedding once (a forward pass of a 22M-parameter encoder is the smoke
            # budget's largest item): MiniLM, and two random BERTs for θ0 and θ0' (init seeds per target).
            # The seeds then vary the head init, the examples and their order, not the random encoders.
            r0 = run_seed(target, 0)
            encoders = {"minilm": models.load_minilm, SCRATCH: lambda: _random_bert(None, r0),
                        CONTROL: lambda: _random_bert(None, r0 + CONTROL_OFFSET)}
            feats = {}
            for name, mk in encoders.items():
                enc = mk()
                ftr = models.embed_minilm([xtr[i] for i in need], max_length=cfg.max_len, model=enc, tokenizer=tok)
                fte = models.embed_minilm([xte[i] for i in test_idx], max_length=cfg.max_len, model=enc,
                                          tokenizer=tok)
                feats[name] = (torch.from_numpy(ftr), torch.from_numpy(fte))
            # every (seed, init) is one member of the protocol's batched fits: linear heads of one shape
            for s in cfg.seeds:
                rows = torch.as_tensor([pos[int(i)] for i in orders[s]])
                y = torch.as_tensor(ytr[orders[s]])
                for name in names:
                    ftr, fte = feats[name]
                    make = (lambda d=ftr.shape[1], s=rs[s]: models.seeded(s, lambda: nn.Linear(d, K)))
                    members[s, name] = Member(make, (ftr[rows].float(),), y, (fte.float(),), rs[s])
                    if s == cfg.seeds[0] and name != CONTROL:
                        logme[name] = measures.logme(ftr[rows].numpy(), y.numpy(), K)
        else:
            enc = data.encode(target, tok, cfg.max_len)
            tr, te = enc["train"], enc["test"]
            test_inputs = _bert_inputs(_take((te["input_ids"], te["attention_mask"]), test_idx))
            # every (seed, init) is one member of the protocol's batched fits: BERTs of MiniLM's shape
            for s in cfg.seeds:
                inputs = _bert_inputs(_take((tr["input_ids"], tr["attention_mask"]), orders[s]))
                y = tr["labels"][torch.as_tensor(orders[s])]
                r = rs[s]
                makers = {SCRATCH: lambda r=r: _random_bert(K, r),
                          CONTROL: lambda r=r: _random_bert(K, r + CONTROL_OFFSET),
                          "minilm": lambda r=r: models.load_minilm(K, seed=r)}
                for name in names:
                    members[s, name] = Member(makers[name], inputs, y, test_inputs, r)
                if s == cfg.seeds[0]:
                    for name in (SCRATCH, "minilm"):
                        body = _random_bert(None, r) if name == SCRATCH else models.load_minilm()
                        f = models.embed_minilm([xtr[i] for i in orders[s]], max_length=cfg.max_len,
                                                model=body, tokenizer=tok)
                        logme[name] = measures.logme(f, y.numpy(), K)
        done = dict(zip(members, run_protocols(list(members.values()), y_test, K, proto,
                                               f"generality: MiniLM {cfg.mode} {target}")))
        runs, pairs = {}, {}
        for s in cfg.seeds:
            _collect(runs, pairs, {name: done[s, name] for name in names}, y_test, SCRATCH)
        out["targets"][target] = {"target": target, "K": K, "n": n, "ends": list(proto.ends),
                                  "n_test": len(y_test), "hps": [h.name for h in proto.hps],
                                  "uniform_bits": n * math.log2(K), "runs": runs, "pairs": pairs,
                                  "logme": logme, "max_len": cfg.max_len}
    return out


# ================================================================================== 3. digits 0–4 → 5–9
class MLP(nn.Module):
    """Two hidden layers (the "body") and a linear head; `base_model_prefix` lets TrainConfig.body_lr_mult
    treat the body like a transformers model's."""
    base_model_prefix = "body"

    def __init__(self, d_in: int = 64, hidden: int = 128, n_out: int = 5):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x):  # (B, 64) -> (B, n_out)
        return self.head(self.body(x))


@dataclass(frozen=True)
class DigitsConfig:
    """Pretrain on digits 0–4, code the labels of 5–9. ~15 s on one CPU core at smoke. The published probe
    (SCIENCE.md) found θP coding 400 labels in ≈ 228 bits vs θ0's ≈ 167: expect negative transfer."""
    hidden: int = 128
    pretrain_steps: int = 1500  # full-batch Adam steps on 0–4: to convergence (train accuracy 1.0)
    early_steps: int = 40  # the same run stopped early (a less specialised source)
    pretrain_lr: float = 3e-3
    protocol: Protocol = field(default_factory=lambda: Protocol(
        ends=(10, 25, 50, 100, 200, 400),
        hps=(HP("finetune", 3e-3, 1.0), HP("finetune-slow-body", 3e-3, 0.1), HP("lp-ft", 3e-3, 1.0, lp_frac=0.5),
             HP("probe", 1e-2, 0.0)),
        epochs=30.0, batch_size=64, min_steps=30, max_steps=300))
    seeds: tuple[int, ...] = (0, 1, 2)
    n_filters: int = 16  # first-layer units whose 8×8 filters are returned for the figure


DIGITS = {"smoke": DigitsConfig(),
          "full": DigitsConfig(seeds=tuple(range(5)), protocol=dataclasses.replace(
              DigitsConfig().protocol, ends=(10, 20, 40, 80, 160, 320, 640)))}


def _effective_rank(h: np.ndarray) -> float:
    """exp(entropy of the normalised squared singular values) of centred features (Roy & Vetterli 2007):
    how many directions the features really use."""
    sv = np.linalg.svd(h - h.mean(0), compute_uv=False) ** 2
    p = sv / sv.sum()
    return float(np.exp(-(p * np.log(p + 1e-300)).sum()))


def digits_transfer(cfg: DigitsConfig) -> dict:
    """θ0 vs four sources on digits 5–9: "pretrained" (0–4 to convergence), "early" (0–4, stopped early),
    "pretrained-rescaled" (the converged body with its output scaled down to θ0's feature norm — the same
    directions, so it separates the *scale* of the features from their *collapse*), and "random-labels"
    (0–4 with shuffled labels: memorisation features, an unrelated source). Diagnostics per source: feature
    norm and effective rank on the target images, and what a fresh head on them codes before any training."""
    with cpu_threads(1), models.quiet_loading():
        return _digits_transfer(cfg)


def _digits_transfer(cfg: DigitsConfig) -> dict:
    from decoupling import data
    from decoupling.core import models, train
    src = data.arrays("digits/0-4")
    tgt = data.arrays("digits/5-9")
    xs, ys = torch.from_numpy(src["train"][0]), torch.from_numpy(src["train"][1])
    (xt, yt), (xe, ye) = tgt["train"], tgt["test"]
    xt, xe = torch.from_numpy(xt), torch.from_numpy(xe)
    K = 5
    proto = cfg.protocol
    n = proto.ends[-1]

    def fresh(seed: int) -> MLP:
        return models.seeded(seed, lambda: MLP(64, cfg.hidden, K))

    def pretrain_mlp(steps: int, labels: torch.Tensor) -> tuple[MLP, dict]:
        m = models.seeded(12_345, lambda: MLP(64, cfg.hidden, 5))
        tc = train.TrainConfig(steps=steps, batch_size=len(labels), lr=cfg.pretrain_lr, weight_decay=0.0,
                               warmup_frac=0.0, seed=0, progress=False)
        train.train_module(m, xs, labels, tc)
        p_tr = train.predict_proba(m, xs)
        p_te = train.predict_proba(m, torch.from_numpy(src["test"][0]))
        return m.cpu(), {"steps": steps, "train_acc": float((p_tr.argmax(1) == labels.numpy()).mean()),
                         "test_acc": float((p_te.argmax(1) == src["test"][1]).mean()),
                         "train_bits": measures.log_loss_bits(p_tr, labels.numpy())}

    @torch.no_grad()
    def feat_norm(m: MLP, x) -> float:
        return float(m.body(x).norm(dim=1).mean())

    shuffled = ys[torch.from_numpy(np.random.default_rng(0).permutation(len(ys)))]
    sources = {"pretrained": pretrain_mlp(cfg.pretrain_steps, ys), "early": pretrain_mlp(cfg.early_steps, ys)}
    # ReLU is positively homogeneous: scaling the last layer by c scales the features by c, same directions
    m_res = models.seeded(12_345, lambda: MLP(64, cfg.hidden, 5))
    m_res.load_state_dict(sources["pretrained"][0].state_dict())
    c = feat_norm(fresh(cfg.seeds[0]), xs) / feat_norm(m_res, xs)  # measured on the SOURCE images
    with torch.no_grad():
        m_res.body[2].weight.mul_(c)
        m_res.body[2].bias.mul_(c)
    sources["pretrained-rescaled"] = (m_res, {**sources["pretrained"][1], "scale": c})
    sources["random-labels"] = pretrain_mlp(cfg.pretrain_steps, shuffled)

    def from_source(m: MLP, seed: int) -> MLP:
        new = fresh(seed)  # the same fresh head as θ0's for this seed: only the body differs
        new.body.load_state_dict(m.body.state_dict())
        return new

    # diagnostics: the features a fresh head sees on the target, and its code before any fine-tuning
    diag = {}
    for name, m in [(SCRATCH, fresh(cfg.seeds[0]))] + [(k, from_source(v[0], cfg.seeds[0])) for k, v in
                                                       sources.items()]:
        with torch.no_grad():
            h = m.body(xe).double().numpy()
        p0 = train.predict_proba(m, xe)
        diag[name] = {"feature_norm": float(np.linalg.norm(h, axis=1).mean()), "effective_rank": _effective_rank(h),
                      "zero_shot_bits": measures.log_loss_bits(p0, ye), "zero_shot_confidence": float(p0.max(1).mean())}

    # every (seed, init) is one member of the protocol's batched fits: one MLP shape
    members: dict[tuple[int, str], Member] = {}
    for seed in cfg.seeds:
        order = _subset(len(yt), n, seed)
        inputs, y = (xt[torch.as_tensor(order)],), torch.as_tensor(yt[order])
        makers = {SCRATCH: lambda seed=seed: fresh(seed), CONTROL: lambda seed=seed: fresh(seed + CONTROL_OFFSET)}
        for name, (m, _) in sources.items():
            makers[name] = (lambda m=m, seed=seed: from_source(m, seed))
        for name, mk in makers.items():
            members[seed, name] = Member(mk, inputs, y, (xe,), seed, keep_model=seed == cfg.seeds[0])
    done = dict(zip(members, run_protocols(list(members.values()), ye, K, proto, "generality: digits 0-4 -> 5-9")))
    runs, pairs = {}, {}
    for seed in cfg.seeds:
        _collect(runs, pairs, {name: r for (s, name), r in done.items() if s == seed}, ye, SCRATCH)
    models_kept = {name: r["model"] for (s, name), r in done.items() if s == cfg.seeds[0]}
    # what is reused: first-layer filters (8×8) of the random init, the pretrained bodies, and θ0 / θP
    # after fine-tuning on 5–9 (the first candidate that trains the body, last fit, first seed)
    f = cfg.n_filters

    def w1(m):
        return m.body[0].weight.detach().cpu()[:f].tolist()  # (f, 64)

    init = models.seeded(12_345, lambda: MLP(64, cfg.hidden, 5))  # the source runs' common initialisation
    filters = {"random": w1(fresh(cfg.seeds[0])), "pretraining-init": w1(init),
               "pretrained": w1(sources["pretrained"][0]), "early": w1(sources["early"][0])}
    init_state = {k: v.clone() for k, v in init.state_dict().items()}
    pretrain_movement = {k: layer_movement(init_state, sources[k][0]) for k in ("pretrained", "early", "random-labels")}
    for k in (SCRATCH, "pretrained"):
        if models_kept.get(k) is not None:
            filters[f"{k}+finetuned"] = w1(models_kept[k])
    # frozen features: LogME of each body's last hidden layer on the first seed's target sample
    logme = {}
    order0 = torch.as_tensor(_subset(len(yt), n, cfg.seeds[0]))
    for name, m in [(SCRATCH, fresh(cfg.seeds[0]))] + [(k, v[0]) for k, v in sources.items()]:
        with torch.no_grad():
            feats = m.cpu().body(xt[order0]).double().numpy()
        logme[name] = measures.logme(feats, yt[order0.numpy()], K)
    return {"target": "digits/5-9", "source_task": "digits/0-4", "K": K, "n": n, "ends": list(proto.ends),
            "n_test": len(ye), "hps": [h.name for h in proto.hps], "uniform_bits": n * math.log2(K),
            "sources": {k: v[1] for k, v in sources.items()}, "diagnostics": diag, "runs": runs, "pairs": pairs,
            "filters": filters, "pretrain_movement": pretrain_movement, "logme": logme}


# ================================================================================== aggregations
def cells(transfers: Sequence[dict], minilm: dict | None = None) -> list[dict]:
    """Every (target, init) result as one row: ΔL per seed (bits, total and per label), essay KL, reverse
    KL and held-out gain per seed at the last fit, LogME. The input of all the summaries below."""
    rows = []
    blocks = [(t, "ours") for t in transfers] + [(t, "minilm-" + minilm["mode"]) for t in
                                                (minilm or {}).get("targets", {}).values()]
    for t, family in blocks:
        for name, p in t["pairs"].items():
            rows.append({"target": t["target"], "init": name, "body": family, "n": t["n"],
                         "dL": list(p["dL"]), "dL_per_label": [v / t["n"] for v in p["dL"]],
                         "essay_kl": [v[-1] for v in p["essay_kl"]], "reverse_kl": [v[-1] for v in p["reverse_kl"]],
                         "gain": [v[-1] for v in p["gain"]], "logme": t["logme"].get(name),
                         "logme_scratch": t["logme"].get(SCRATCH)})
    return rows


def task_family(target: str) -> str:
    return target.split("/")[0]


def generality_score(rows: Sequence[dict], init: str, n_boot: int = 2000, seed: int = 0) -> dict:
    """The essay's double integral as a Monte Carlo estimate: ΔL per label averaged uniformly over the
    (task, dataset) pairs of the suite and the seeds. Each (task, dataset, seed) run is one independent draw
    (`run_seed`), and the suite itself is a sample of "all tasks and datasets", so the bootstrap resamples
    runs. Per task family means are reported beside it."""
    mine = [r for r in rows if r["init"] == init]
    if not mine:
        return {"init": init, "score": float("nan"), "ci": [float("nan")] * 2, "n_cells": 0, "families": {}}
    runs = np.concatenate([np.asarray(r["dL_per_label"], float) for r in mine])
    ci = measures.bootstrap_ci(runs, n_boot=n_boot, seed=seed)
    fam: dict[str, list[float]] = {}
    for r in mine:
        fam.setdefault(task_family(r["target"]), []).extend(r["dL_per_label"])
    return {"init": init, "score": ci.value, "ci": [ci.lo, ci.hi], "n_cells": len(mine), "n_runs": len(runs),
            "families": {k: float(np.mean(v)) for k, v in fam.items()}}


def pooled_ci(values, n_boot: int = 2000, seed: int = 0) -> dict:
    ci = measures.bootstrap_ci(np.asarray(values, float), n_boot=n_boot, seed=seed)
    return {"mean": ci.value, "ci": [ci.lo, ci.hi], "n": len(values)}


def effective_data(transfer_result: dict, init: str) -> dict:
    """Effective data transferred D_T(n) (Hernandez et al. 2021) from the seed-mean test learning curves
    (bits/example at each fit size) of θ0 and of `init`: the horizontal gap between the two curves."""
    ends = np.asarray(transfer_result["ends"][:-1], float)
    l0 = np.mean(transfer_result["runs"][SCRATCH]["test_bits"], axis=0)
    lp = np.mean(transfer_result["runs"][init]["test_bits"], axis=0)
    dt = measures.effective_data_transferred(ends, lp, ends, l0)
    # where the pretrained model beats θ0's best point, the scratch curve never reaches it: D_T is then
    # only bounded below, by (largest n on the scratch curve) − n
    lower = [float(ends[-1] - e) if not np.isfinite(v) and p < l0.min() else None
             for e, v, p in zip(ends, dt, lp)]
    return {"n": ends.tolist(), "loss_scratch": l0.tolist(), "loss_init": lp.tolist(),
            "dt": [None if not np.isfinite(v) else float(v) for v in dt], "dt_lower_bound": lower}


def fit_dt_pooled(curves: Sequence[dict], n_boot: int = 2000, seed: int = 0, min_points: int = 3) -> dict:
    """One exponent α for D_T = k_pair · n^α over several (source, target) pairs, each with its own k
    (a within-pair least-squares slope of log D_T on log n, the fixed-effects estimator), with a bootstrap
    CI over pairs. A pair enters with ≥ `min_points` finite, positive D_T points: through two points any
    power law fits, so two points test nothing about the form. No pair → α is NaN."""
    groups = []
    for c in curves:
        n = np.asarray(c["n"], float)
        dt = np.asarray([np.nan if v is None else v for v in c["dt"]], float)
        ok = np.isfinite(dt) & (dt > 0)
        if ok.sum() >= max(2, min_points):
            groups.append((np.log(n[ok]), np.log(dt[ok])))

    def slope(gs):
        sxy = sum(((x - x.mean()) * (y - y.mean())).sum() for x, y in gs)
        sxx = sum(((x - x.mean()) ** 2).sum() for x, _ in gs)
        return float(sxy / sxx) if sxx > 0 else float("nan")

    if not groups:
        return {"alpha": float("nan"), "ci": [float("nan")] * 2, "pairs": 0, "points": 0}
    rng = np.random.default_rng(seed)
    boots = [slope([groups[i] for i in rng.integers(0, len(groups), len(groups))]) for _ in range(n_boot)]
    boots = [b for b in boots if np.isfinite(b)]
    ci = [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))] if len(groups) > 1 else \
        [float("nan")] * 2
    return {"alpha": slope(groups), "ci": ci, "pairs": len(groups), "points": int(sum(len(x) for x, _ in groups))}


def spearman(a, b) -> float:
    from scipy.stats import spearmanr
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def logme_vs_dl(rows: Sequence[dict]) -> dict:
    """Rank correlation of the cheap proxy (LogME on frozen features) with the measured ΔL: per target
    across its bodies (how LogME is used: to rank candidate models for one task), averaged, and pooled."""
    per_target = {}
    for t in sorted({r["target"] for r in rows}):
        # one family of bodies per target (ours share θ0; MiniLM's θ0 is a different network)
        rs = [r for r in rows if r["target"] == t and r["logme"] is not None and r["init"] != CONTROL
              and r["body"] == "ours"]
        # θ0 itself is a candidate too: its ΔL is 0 by definition
        xs = [r["logme"] for r in rs] + [rs[0]["logme_scratch"]] if rs else []
        ys = [float(np.mean(r["dL_per_label"])) for r in rs] + [0.0] if rs else []
        per_target[t] = spearman(xs, ys)
    pooled = [(r["logme"] - r["logme_scratch"], float(np.mean(r["dL_per_label"]))) for r in rows
              if r["logme"] is not None and r["logme_scratch"] is not None and r["init"] != CONTROL]
    vals = [v for v in per_target.values() if np.isfinite(v)]
    return {"per_target": per_target, "mean_per_target": float(np.mean(vals)) if vals else float("nan"),
            "pooled": spearman([p[0] for p in pooled], [p[1] for p in pooled]), "n_pooled": len(pooled)}


def summarize(transfers: Sequence[dict], minilm: dict | None = None, n_boot: int = 2000) -> dict:
    """Everything the chapter prints about the text grid: per-cell rows, the ΔL matrix (bits per label,
    seed mean), each body's generality score, the seed-vs-seed control, the three estimators side by side,
    D_T per (body, target) with the pooled exponent, and LogME ↔ ΔL."""
    rows = cells(transfers, minilm)
    ours = [r for r in rows if r["body"] == "ours"]
    mini = [r for r in rows if r["body"] != "ours"]
    inits = list(dict.fromkeys(r["init"] for r in ours))
    targets = [t["target"] for t in transfers]
    matrix = {i: {r["target"]: float(np.mean(r["dL_per_label"])) for r in ours if r["init"] == i} for i in inits}
    if mini:
        matrix["minilm"] = {r["target"]: float(np.mean(r["dL_per_label"])) for r in mini if r["init"] == "minilm"}
    scores = {i: generality_score(ours, i, n_boot) for i in inits}
    if mini:
        scores["minilm"] = generality_score(mini, "minilm", n_boot)
        scores["minilm-control"] = generality_score(mini, CONTROL, n_boot)
    three = {}
    for label, rs in [(i, [r for r in ours if r["init"] == i]) for i in inits] + (
            [("minilm", [r for r in mini if r["init"] == "minilm"])] if mini else []):
        vals = {k: [v for r in rs for v in r[k]] for k in ("essay_kl", "reverse_kl", "gain", "dL_per_label")}
        three[label] = {k: pooled_ci(v, n_boot) for k, v in vals.items()}
    dts = {}
    for t in transfers:
        for i in t["pairs"]:
            if i not in (CONTROL,):
                dts[(i, t["target"])] = effective_data(t, i)
    for t in (minilm or {}).get("targets", {}).values():
        dts[("minilm", t["target"])] = effective_data(t, "minilm")
    real = [v for (i, _), v in dts.items() if i not in (CONTROL, "shuffled")]
    # each body against the shuffled-token body, run by run (same θ0, seed and examples): domain knowledge
    # beyond what any pretraining run gives (token statistics, LayerNorm'd features, calibration)
    vs_shuffled = {}
    if "shuffled" in inits:
        sh = {r["target"]: r["dL_per_label"] for r in ours if r["init"] == "shuffled"}
        for i in inits:
            if i not in (CONTROL, "shuffled"):
                d = [a - b for r in ours if r["init"] == i for a, b in zip(r["dL_per_label"], sh[r["target"]])]
                vs_shuffled[i] = pooled_ci(d, n_boot)
    return {"rows": rows, "targets": targets, "inits": inits, "matrix": matrix, "scores": scores,
            "three_ways": three, "dt": {f"{i} -> {t}": v for (i, t), v in dts.items()},
            "dt_fit": fit_dt_pooled(real, n_boot), "logme": logme_vs_dl(rows), "vs_shuffled": vs_shuffled}
