"""The fair prequential protocol of chapter 4 (book/generality.md): how every init — a random one, a
pretrained body with a new head, a second random init as the control — is fine-tuned and coded on the same
target labels, so that the difference of their code lengths, ΔL, is the side information the weights carry.

Notation: θ0 = random init (`SCRATCH`), θ0' = a second random init (`CONTROL`, seeded `CONTROL_OFFSET` away),
θP = a pretrained init.

From the top:
- `select_prequential`: the code length with the fine-tuning hyperparameters chosen per block on data already
  seen (candidates `HP`, charged log2 #candidates bits per block).
- `Protocol`: the block ends, the candidates and how long each fit trains.
- `run_protocol`: one init, one fit after another — the reference.
- `Member` + `run_protocols`: many inits × seeds of one architecture at once, as members of one batched run
  per (block, candidate) (`batched.train_many`) on a GPU (`batch_fits`), or one by one on a CPU; equal to
  `run_protocol` member by member up to float rounding (tests/test_generality.py).
- the fits themselves (`_fit`, `_fit_many`) and what a record reports besides the code length: the test-set
  learning curve, calibration (`expected_calibration_error`) and how far each layer moved (`layer_movement`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from decoupling.core import batched, measures, train
from decoupling.core.device import DEVICE
from decoupling.progress import bar

SCRATCH = "scratch"  # θ0: random init, fine-tuned exactly like the pretrained bodies
CONTROL = "scratch-seed"  # θ0': a second random init — the seed-vs-seed control (ΔL should be 0)
CONTROL_OFFSET = 1_000_000_007  # θ0' = random init from (run seed + this): never a seed any other run uses


# ================================================================================== code length with a choice
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


# ================================================================================== calibration and layer movement
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


# ================================================================================== one fit
def _steps(n: int, epochs: float, batch_size: int, min_steps: int, max_steps: int) -> tuple[int, int]:
    """(steps, batch size) for fine-tuning on n examples: `epochs` passes, clipped to [min, max] steps."""
    bs = min(batch_size, n)
    return int(min(max_steps, max(min_steps, math.ceil(epochs * n / bs)))), bs


def _stages(hp: HP, steps: int, bs: int, seed: int):
    """The TrainConfigs of one fit, in order: one stage, or for LP-FT a linear probe first, then everything
    (same total steps). Stage i draws its data order from seed + i."""
    stages = [(steps, hp.body_lr_mult)]
    if hp.lp_frac > 0:
        lp = max(1, int(round(hp.lp_frac * steps)))
        stages = [(lp, 0.0), (max(1, steps - lp), hp.body_lr_mult)]
    return [train.TrainConfig(steps=n_steps, batch_size=bs, lr=hp.lr, body_lr_mult=mult,
                              weight_decay=hp.weight_decay, warmup_frac=0.1, seed=seed + i, progress=False)
            for i, (n_steps, mult) in enumerate(stages)]


def _fit(model: nn.Module, inputs: tuple, y: torch.Tensor, hp: HP, steps: int, bs: int, seed: int) -> nn.Module:
    """One fit of one model (the sequential reference; `_fit_many` fits every member at once)."""
    for tc in _stages(hp, steps, bs, seed):
        if len(inputs) == 2:
            train.train_classifier(model, inputs[0], inputs[1], y, tc)
        else:
            train.train_module(model, inputs[0], y, tc)
    return model


def _predict(model: nn.Module, inputs: tuple) -> np.ndarray:
    return train.predict_proba(model, *inputs)


def take(inputs: tuple, idx) -> tuple:
    """The rows idx of every input tensor (ids and mask, or features): the examples a fit sees."""
    idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
    return tuple(t[idx] for t in inputs)


# ================================================================================== the protocol, one init
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
        _fit(model, take(inputs, train_idx), y[torch.as_tensor(train_idx)], proto.hps[c], steps, bs, seed)
        if before is not None:
            extra["movement"] = layer_movement(before, model)
            if keep_model:
                extra["model"] = model
        probs = _predict(model, take(inputs, test_idx))
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
    y_test: np.ndarray | None = None  # its own test labels (each run draws its test rows); None: the shared ones


def batch_fits() -> bool:
    """Whether the members' fits train as one batched run or one after another. On a GPU these models
    are launch-bound, so M members in one vmapped step cost about what one does; on a CPU the work is
    arithmetic and memory traffic, and stacking only adds to it (measured on 2 cores: a smoke text target
    took 23 s batched against 14 s one by one). The two are equal up to float rounding (tests)."""
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
    idx = torch.as_tensor(train_idx, dtype=torch.long)
    if not batch:
        return _OneByOne([_fit(m.make(), take(m.inputs, idx), m.y[idx], hp, steps, bs, m.seed) for m in members])

    def data(k):
        return take(members[k].inputs, idx), members[k].y[idx]

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
            next_probs[b, c] = many.predict_proba(lambda k: take(members[k].inputs, np.arange(start, stop)))
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
        yt = y_test if m.y_test is None else m.y_test
        out.append({"record": _record(res, test_probs[k], yt, proto, movement[k]),
                    "test_probs": test_probs[k], "model": kept[k]})
    return out


def subset(n_total: int, n: int, seed: int) -> np.ndarray:
    """The first n of a seeded permutation: the target examples a seed sees, in the order they are sent."""
    if n > n_total:
        raise ValueError(f"asked for {n} examples but the split has {n_total}")
    return np.random.default_rng(seed).permutation(n_total)[:n]


def heldout_rows(n_total: int, n: int, run: int) -> np.ndarray:
    """The test rows run `run` scores its held-out numbers on (sorted): a sample of the test split seeded
    by the run's index (training samples come from other seeds, and from the training split), drawn afresh
    per run. A held-out number then varies with the rows as well as the fits, and an interval
    over runs covers both; one fixed subset for every run would leave the rows' luck out of every interval.
    Every init of one run shares that run's rows, so comparisons within a run stay paired. n ≥ n_total
    gives the whole split (the same for every run)."""
    n = min(n, n_total)
    return np.arange(n_total) if n == n_total else np.sort(subset(n_total, n, run))


# ================================================================================== what every experiment returns
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


def code_members(members: dict[tuple[int, str], Member], y_test: np.ndarray, K: int, proto: Protocol,
                  desc: str) -> tuple[dict, dict]:
    """Code every (seed, init) member's labels under `proto` at once, then gather the results: `runs`, per
    init, each record field as a list over seeds; `pairs`, per init other than θ0, its three estimates
    against θ0 of the same seed. Returns those with the fields every experiment reports (K, n, block ends,
    test size, candidates, the uniform code's length), and each member's own result (for kept models)."""
    done = dict(zip(members, run_protocols(list(members.values()), y_test, K, proto, desc)))
    runs: dict = {}
    pairs: dict = {}
    for seed in dict.fromkeys(s for s, _ in members):
        yt = members[seed, SCRATCH].y_test if members.get((seed, SCRATCH)) else None
        _collect(runs, pairs, {name: r for (s, name), r in done.items() if s == seed},
                 y_test if yt is None else yt, SCRATCH)
    n = proto.ends[-1]
    n_test = len(y_test) if y_test is not None else len(next(iter(members.values())).y_test)
    return {"K": K, "n": n, "ends": list(proto.ends), "n_test": n_test, "hps": [h.name for h in proto.hps],
            "uniform_bits": n * math.log2(K), "runs": runs, "pairs": pairs}, done
