"""Chapter 4, "General-purpose models" (book/generality.md): how many bits about a new task's labels a
pretrained body gives, measured three ways, and the essay's "generality" integral over tasks × datasets.

Notation: θ0 = random init, θP = pretrained init (the body of an LM, head replaced); q0, qP = the two
models' predictive distributions after fine-tuning on the same target examples.

Three experiments, each a plain function of a frozen config returning a JSON-able dict:

1. `transfer` — one target task; our own GPT-2 bodies pretrained on several source domains
   (`experiments.pretrain`, shared with the computers chapter), a random-init twin θ0 and a second random
   init θ0' (the seed-vs-seed control), each fine-tuned and coded with the *same* prequential protocol
   (`core.prequential`: blocks, per-block choice of the fine-tuning hyperparameters on data already seen,
   log2(#candidates) bits charged per block). From the same fits: test-set learning curves, the essay's KL,
   the held-out gain, calibration, how far each layer moved, and LogME on the frozen features.
2. `minilm_transfer` — the same protocol for a real lab-pretrained body, all-MiniLM-L6-v2, on every text
   target, against a randomly initialised BERT of the same shape drawn afresh for every seed (θ0 and θ0'),
   and against TF-IDF + logistic regression coded on the same blocks. `mode="probe"` (smoke: the CPU
   cannot fine-tune 22M parameters hundreds of times) trains a linear head on frozen mean-pooled features;
   `mode="finetune"` (full, GPU) fine-tunes the whole model.
3. `digits_transfer` — a two-layer MLP pretrained on one half of the digits and transferred to the other,
   in either direction (0–4 → 5–9 and 5–9 → 0–4: transfer need not be symmetric, Zamir et al. 2018), with
   sources (each run pretrains its own) stopped after several numbers of training steps and a random-label
   source to find out when transfer turns negative and whether longer source training makes it worse (after
   Hernandez et al. 2021's ossification, which varies model size instead), pixels + logistic regression coded on
   the same blocks as the reference, and first-layer filters to show what is reused.

All three end the same way (`prequential.code_members`): every (seed, init) is one member of `run_protocols` (one
architecture per experiment, so one batched run per block and candidate on a GPU), and the members' records
are gathered per init over seeds, with the three estimates of each init against θ0 of the same seed.
The chapter's aggregations of these results live in `experiments.generality_summary`. (Just over 500
lines on purpose: one module per chapter, and the three experiments share `run_seed`, the members of the
protocol and one PRESETS table; the aggregations already live apart.)
"""
from __future__ import annotations

import copy
import dataclasses
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from decoupling import data
from decoupling.core import measures, models, train
from decoupling.core.device import DEVICE, cpu_threads  # cpu_threads: tiny models run 10-30x faster on one thread
from decoupling.core.prequential import (CONTROL, CONTROL_OFFSET, HP, SCRATCH, Member, Protocol, code_members,
                                         heldout_rows, layer_movement, subset, take)
from decoupling.experiments import pretrain


def run_seed(target: str, seed: int) -> int:
    """The seed of one (target, seed) cell: init, head, minibatch order and target sample all come from it.
    Derived from the target's name so that cells are independent draws: with one seed shared by every
    target, θ0's body would be the *same* network on all of them, and a bootstrap over cells would count
    one lucky or unlucky initialisation six times."""
    return seed * 1_000_003 + zlib.crc32(target.encode()) % 1_000_003


def equivalence_verdict(lo: float, hi: float, margin: float) -> str:
    """A finding that something is zero (no side information), as an equivalence test: pass it the 90%
    interval, and the two one-sided tests at 5% both reject "|effect| ≥ margin" exactly when the interval
    lies inside ±margin ("holds"); an interval wholly outside the band shows an effect beyond the margin
    ("does not hold"); anything else is "inconclusive"."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "inconclusive"
    if -margin < lo and hi < margin:
        return "holds"
    if lo >= margin or hi <= -margin:
        return "does not hold"
    return "inconclusive"


# ================================================================================== 1. our bodies
@dataclass(frozen=True)
class TransferConfig:
    """One target task, every source. smoke: ~15–20 s per target on one idle CPU core (5 inits × 2 seeds,
    4 blocks up to 240 examples, 2 candidates); ΔL of weak smoke bodies is expected near or below 0."""
    target: str = "sentiment/movies"  # a decoupling.data text task
    sources: tuple[str, ...] = ("code", "prose", "c", "shuffled")  # pretrain domains (shuffled = control)
    body_profile: str = "smoke"  # the experiments.pretrain preset the bodies come from (shared cache)
    protocol: Protocol = field(default_factory=lambda: Protocol(
        ends=(16, 48, 112, 240), hps=(HP("finetune", 2e-3, 1.0), HP("probe", 1e-2, 0.0))))
    max_len: int = 48  # tokens per example (≤ the body's block_size)
    n_test: int = 128  # test rows per run (drawn per run: `heldout_rows`) for curves, KL and gain
    # runs (→ run_seed): head init, θ0 init, data order, sample; run s also reads the bodies pretrained with
    # seed s, so the interval over runs holds the pretraining seed (3 at full)
    seeds: tuple[int, ...] = (0, 1)


# Every text task: 4 sentiment datasets + two other task families. At smoke our bodies (~7.5 bits/token
# after seconds of pretraining) transfer mostly calibration, which a CPU cannot tell from knowledge: their
# findings are decided at full, and smoke runs them on one target whose domain is also a source domain
# (code → package) as an illustration. MiniLM's frozen features (cheap) cover every text target at smoke.
TEXT_TARGETS = ("sentiment/movies", "sentiment/tweets", "sentiment/amazon", "sentiment/nyt", "code/module",
                "prose/topic")
# full adds code/agents (decoupling.data.unexposed): code/module's question asked of projects first released
# after every lab model of the zoo was trained, so exposed and unexposed code targets stand side by side.
TARGETS = {
    "smoke": ("code/module",),
    "full": (*TEXT_TARGETS, "code/agents"),
}

TRANSFER = {
    # smoke: an illustration (decided at full), so three sources — the code body (the smoke target's own
    # domain), the prose body (another) and the shuffled-token control — to leave the budget to what smoke
    # decides
    "smoke": TransferConfig(sources=("code", "prose", "shuffled")),
    # full: the full bodies (pretrain.FULL: 4 layers, d=128, 500 steps), 6 inits x 3 seeds (each seed reads
    # the bodies pretrained with it) fine-tuned end to end on 6 blocks up to 640 examples of 64 tokens, two
    # candidates per block. The 18 members of a (block, candidate) train as one vmapped run
    # (`run_protocols`): about 78 steps of 32 x 64 tokens per member and candidate, ~5.8M tokens per target
    # (`decoupling compute --profile full --count` gives the minutes on the machine at hand).
    "full": TransferConfig(
        body_profile="full", max_len=64, n_test=256, seeds=(0, 1, 2),
        protocol=Protocol(ends=(20, 40, 80, 160, 320, 640),
                          hps=(HP("finetune", 5e-4, 1.0), HP("head-fast-body-slow", 2e-3, 0.1)),
                          epochs=4.0, batch_size=32, max_steps=400)),
}


def _bodies(cfg: TransferConfig) -> tuple[dict, dict]:
    """{(domain, seed): LM} for every source and run seed (run s reads the bodies pretrained with seed s),
    and per domain the card of the first run's body with every seed's held-out bits per token."""
    lms, info = {}, {}
    for d in cfg.sources:
        for s in cfg.seeds:
            path, res = pretrain.body(pretrain.config(cfg.body_profile, d, s), cfg.body_profile)
            lms[d, s] = models.load_lm(path)
            if d not in info:
                info[d] = {**pretrain.card(res), "non_embedding_params": res.get("non_embedding_params"),
                           "tokens": res.get("tokens"), "body_seeds": list(cfg.seeds), "eval_bits_per_seed": []}
            info[d]["eval_bits_per_seed"].append(res.get("eval_bits_per_token"))
    return lms, info


@torch.no_grad()
def _gpt_features(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """The frozen feature the classifier head reads: the last non-pad token's final hidden state."""
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


def _target(cfg: TransferConfig) -> tuple:
    """What every GPT-2 init of `transfer` codes: the tokenizer, K, the encoded training and test splits."""
    tok = data.tokenizer()
    enc = data.encode(cfg.target, tok, cfg.max_len)
    return tok, data.num_labels(cfg.target), enc["train"], enc["test"]


def _seed_test(cfg: TransferConfig, te: dict, s: int) -> tuple:
    """(test inputs, test labels) of run s: its own rows of the test split, shared by its every init."""
    idx = heldout_rows(len(te["labels"]), cfg.n_test, s)
    return take((te["input_ids"], te["attention_mask"]), idx), te["labels"].numpy()[idx]


def _seed_sample(cfg: TransferConfig, tr: dict, s: int) -> tuple:
    """(run seed, inputs, labels) of one seed: the examples it codes, in the order they are sent."""
    seed = run_seed(cfg.target, s)
    order = subset(len(tr["labels"]), cfg.protocol.ends[-1], seed)
    return seed, take((tr["input_ids"], tr["attention_mask"]), order), tr["labels"][torch.as_tensor(order)]


def _transfer(cfg: TransferConfig) -> dict:
    tok, K, tr, te = _target(cfg)
    lms, info = _bodies(cfg)
    body_cfg = pretrain.config(cfg.body_profile, "code").model
    if cfg.max_len > body_cfg.block_size:
        raise ValueError(f"max_len {cfg.max_len} > the bodies' block_size {body_cfg.block_size}")
    pad = tok.pad_token_id
    proto = cfg.protocol

    def makers(seed, s):
        mk = {SCRATCH: lambda: models.build_classifier(body_cfg, K, seed=seed),
              CONTROL: lambda: models.build_classifier(body_cfg, K, seed=seed + CONTROL_OFFSET)}
        for d in cfg.sources:
            mk[d] = (lambda d=d: models.replace_head(lms[d, s], K, seed=seed, pad_token_id=pad))
        return mk

    # every (seed, init) is one member of the protocol's batched fits: one GPT-2 classifier shape
    members: dict[tuple[int, str], Member] = {}
    logme: dict = {}
    for s in cfg.seeds:
        seed, inputs, y = _seed_sample(cfg, tr, s)
        test_inputs, y_test = _seed_test(cfg, te, s)
        for name in (SCRATCH, CONTROL, *cfg.sources):
            members[s, name] = Member(makers(seed, s)[name], inputs, y, test_inputs, seed, y_test=y_test)
            if s == cfg.seeds[0] and name != CONTROL:  # LogME on frozen features of the first seed's sample
                logme[name] = measures.logme(_gpt_features(makers(seed, s)[name](), *inputs), y.numpy(), K)
    coded, _ = code_members(members, None, K, proto, f"generality: {cfg.target}")
    return {"target": cfg.target, **coded, "bodies": info, "logme": logme, "max_len": cfg.max_len}


# Where the transfer's own control is too small to decide (smoke: one target × two seeds), the same two random
# inits coded over more seeds, and with their roles swapped: what the control's spread is, and whether the
# role (θ0 or θ0′) or the order of the fits moves it.
SEED_CONTROL = {
    "smoke": dataclasses.replace(TRANSFER["smoke"], target=TARGETS["smoke"][0], sources=(), seeds=tuple(range(10))),
    "full": dataclasses.replace(TRANSFER["full"], target=TARGETS["full"][0], sources=(), seeds=tuple(range(10))),
}


def seed_control(cfg: TransferConfig) -> dict:
    """θ0 against θ0′ alone, for our GPT-2 bodies' shape, over cfg.seeds, built and coded exactly as in
    `transfer` (same run seeds, examples, order, protocol and test rows), plus the first two seeds once more
    with the two inits' roles swapped (θ0 drawn from the control's seed, θ0′ from θ0's) and the members in
    the opposite order. Per seed ΔL per label (θ0 − θ0′, as `transfer` reports it). No pretrained body."""
    with cpu_threads(1), models.quiet_loading():
        return _seed_control(cfg)


def _seed_control(cfg: TransferConfig) -> dict:
    _, K, tr, te = _target(cfg)
    body_cfg = pretrain.config(cfg.body_profile, "code").model
    n = cfg.protocol.ends[-1]
    out = {"target": cfg.target, "n": n, "seeds": list(cfg.seeds)}
    for label, seeds, swap in (("dL_per_label", cfg.seeds, False), ("swapped_dL_per_label", cfg.seeds[:2], True)):
        members: dict[tuple[int, str], Member] = {}
        for s in seeds:
            seed, inputs, y = _seed_sample(cfg, tr, s)
            test_inputs, y_test = _seed_test(cfg, te, s)
            a, b = (seed + CONTROL_OFFSET, seed) if swap else (seed, seed + CONTROL_OFFSET)
            make = {SCRATCH: lambda a=a: models.build_classifier(body_cfg, K, seed=a),
                    CONTROL: lambda b=b: models.build_classifier(body_cfg, K, seed=b)}
            for name in ((CONTROL, SCRATCH) if swap else (SCRATCH, CONTROL)):
                members[s, name] = Member(make[name], inputs, y, test_inputs, seed, y_test=y_test)
        coded, _ = code_members(members, None, K, cfg.protocol, f"generality: seed control {cfg.target}")
        out[label] = [v / n for v in coded["pairs"][CONTROL]["dL"]]
    return out


def reference_transfer(cfg: TransferConfig) -> dict:
    """The competent reference with no pretraining for `transfer`'s target: TF-IDF + logistic regression
    (`core.baselines`) coding the same examples, in the same order per seed, on the same blocks. Its code
    length sits beside every body's: ΔL vs θ0 says what the weights carry, ΔL vs this says whether the
    pretrained body beats a classical model fitted from nothing. One BLAS thread: scikit-learn's L-BFGS on
    ~10⁵ n-gram features ran ~10× slower with two threads on a loaded 2-core machine."""
    with cpu_threads(1):
        return _reference_transfer(cfg)


def _reference_transfer(cfg: TransferConfig) -> dict:
    from decoupling.core import baselines
    arr = data.arrays(cfg.target)
    (xtr, ytr), (xte, yte) = arr["train"], arr["test"]
    n = cfg.protocol.ends[-1]
    orders = [subset(len(ytr), n, run_seed(cfg.target, s)) for s in cfg.seeds]
    res = baselines.tfidf_prequential(xtr, ytr, orders, xte, yte, data.num_labels(cfg.target), cfg.protocol.ends,
                                      test_of=[heldout_rows(len(yte), cfg.n_test, s) for s in cfg.seeds])
    return {"target": cfg.target, "n": n, "ends": list(cfg.protocol.ends), **res}


# ================================================================================== 2. a lab-pretrained body
@dataclass(frozen=True)
class MiniLMConfig:
    """all-MiniLM-L6-v2 vs a random BERT of the same shape (drawn afresh per seed) and vs TF-IDF + logistic
    regression, on every text target. smoke: linear probes on frozen mean-pooled features; the cost is the
    encoders' forward passes (each random encoder embeds only its own seed's rows and the test rows), so the
    smoke blocks stop at 112 examples, test sets have 32 rows and every text is cut to the whole words that
    fit 16 WordPiece tokens — the TF-IDF reference is given the same cut texts (equal inputs). full:
    whole-model fine-tuning of MiniLM and its twins on two targets (`MINILM`)."""
    targets: tuple[str, ...] = TEXT_TARGETS
    mode: str = "probe"  # "probe": frozen features + linear head; "finetune": the whole model
    protocol: Protocol = field(default_factory=lambda: Protocol(
        ends=(16, 48, 112), hps=(HP("probe-lr1e-2", 1e-2, 1.0, 0.0), HP("probe-lr5e-2", 5e-2, 1.0, 0.0)),
        epochs=20.0, batch_size=64, min_steps=20))
    max_len: int = 16  # WordPiece tokens; the encoders' forward passes cost ∝ this at smoke
    n_test: int = 32  # every random encoder embeds these rows too
    # 3: a seed costs ~15 s here (two fresh random encoders per target), and the control needs no more for
    # its equivalence test: random-BERT features code the labels near the uniform code whatever the init,
    # so θ0 vs θ0' varies little (with 5 seeds its CI over the 6 targets was ±0.007 bits/label, δ = 0.05)
    seeds: tuple[int, ...] = (0, 1, 2)


# The essay's own comparison on a lab model: all-MiniLM-L6-v2 fine-tuned end to end against its random twin
# (and a second twin, the control) and TF-IDF, on the same texts cut to 32 WordPiece tokens. Two sentiment
# targets with the shortest texts (tweets, movie snippets: the cut shortens them least), three learning
# rates a factor ~3 apart so that the rate each init prefers can be interior, 5 blocks up to 256 labels.
# About 30 steps of 32 x 32 tokens per fit, 9 members x 3 rates x 2 targets; MiniLM (384 wide) trains
# under bf16 autocast on a CPU with bf16 units.
MINILM_FT_GRID = (HP("finetune-lr3e-5", 3e-5, 1.0), HP("finetune-lr1e-4", 1e-4, 1.0), HP("finetune-lr3e-4", 3e-4, 1.0))
MINILM = {
    "smoke": MiniLMConfig(),
    "full": MiniLMConfig(
        targets=("sentiment/tweets", "sentiment/movies"), mode="finetune", max_len=32, n_test=256, seeds=(0, 1, 2),
        protocol=Protocol(ends=(16, 32, 64, 128, 256), hps=MINILM_FT_GRID, epochs=4.0, batch_size=32,
                          max_steps=200)),
}


def _logme(features, y, K: int) -> float | None:
    """LogME of frozen features, or None where its evidence maximisation breaks down (seen with MiniLM's
    features on 112 code snippets: fewer examples than the 384 feature dimensions, a math domain error
    in the fixed point). A missing proxy drops out of the rank correlations; it never stops the run."""
    try:
        return measures.logme(np.asarray(features, np.float64), np.asarray(y), K)
    except (ValueError, FloatingPointError, np.linalg.LinAlgError):
        return None


def _random_bert(num_labels: int | None, seed: int):
    """A BERT with all-MiniLM-L6-v2's exact config and random weights: MiniLM's θ0 twin."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification
    conf = AutoConfig.from_pretrained(models.minilm_path(), local_files_only=True,
                                      **({} if num_labels is None else {"num_labels": num_labels}))
    build = AutoModel if num_labels is None else AutoModelForSequenceClassification
    return models.seeded(seed, lambda: build.from_config(conf))


def _bert_inputs(inputs: tuple) -> tuple:
    """(input_ids, padding mask (n, L)) -> (input_ids, the same mask as (n, 1, 1, L) booleans). Why: from a
    2-D mask, BERT's mask builder (transformers' masking_utils) first asks whether anything is padded, to
    skip the mask — a data-dependent branch `vmap` cannot trace, so batched members could not train; a 4-D
    mask is used as given, and masks the same keys (every query attends to the non-pad tokens)."""
    ids, mask = inputs
    return ids, mask.bool()[:, None, None, :]


def orders_union(orders: dict) -> np.ndarray:
    return np.unique(np.concatenate(list(orders.values())))


def minilm_transfer(cfg: MiniLMConfig) -> dict:
    """The replace-the-head experiment on a real lab-pretrained model. Same protocol and outputs as
    `transfer`, with inits "scratch" (random BERT), "scratch-seed" (another random BERT) and "minilm"."""
    with cpu_threads(1), models.quiet_loading():
        return _minilm_transfer(cfg)


def _minilm_transfer(cfg: MiniLMConfig) -> dict:
    from decoupling.core import baselines
    tok = models.minilm_tokenizer()
    out = {"mode": cfg.mode, "targets": {}}
    probe = cfg.mode == "probe"
    if cfg.mode not in ("probe", "finetune"):
        raise ValueError(f"mode must be 'probe' or 'finetune', not {cfg.mode!r}")
    proto = cfg.protocol
    n = proto.ends[-1]
    minilm = models.load_minilm() if probe else None
    from decoupling.core.encoders import cut
    for target in cfg.targets:
        K = data.num_labels(target)
        texts = data.arrays(target)
        (xtr, ytr), (xte, yte) = texts["train"], texts["test"]
        # equal inputs: every text cut once to the whole words MiniLM reads in max_len tokens, and the
        # reference below given the same strings (before, it read whole texts while MiniLM read 16 tokens)
        xtr, cut_tr = cut(list(xtr), cfg.max_len, [tok])
        xte, cut_te = cut(list(xte), cfg.max_len, [tok])
        tests = {s: heldout_rows(len(yte), cfg.n_test, s) for s in cfg.seeds}  # each run's own test rows
        test_idx = np.unique(np.concatenate(list(tests.values())))  # their union
        rs = {s: run_seed(target, s) for s in cfg.seeds}
        orders = {s: subset(len(ytr), n, rs[s]) for s in cfg.seeds}
        names = (SCRATCH, CONTROL, "minilm")
        members: dict[tuple[int, str], Member] = {}
        logme: dict = {}
        if probe:
            def embed(enc, rows, test_rows):
                x = [xtr[i] for i in rows] + [xte[i] for i in test_rows]
                return torch.from_numpy(models.embed_minilm(x, max_length=cfg.max_len, model=enc, tokenizer=tok))

            # MiniLM is one network: it embeds every row any seed sees (their union) and every run's test
            # rows (their union) once.
            need = np.unique(np.concatenate(list(orders.values())))
            shared = embed(minilm, need, test_idx)
            test_f = shared[len(need):]
            feats = {}
            for s in cfg.seeds:
                feats[s, "minilm"] = (shared[torch.as_tensor(np.searchsorted(need, orders[s]))],
                                      test_f[torch.as_tensor(np.searchsorted(test_idx, tests[s]))])
                # θ0 and θ0' are random encoders drawn afresh for every seed, so that the interval over seeds
                # covers how much a random encoder's features vary with its init (with one random encoder for
                # all seeds, θ0 vs θ0' would differ by a fixed amount that no resample varies). Each embeds
                # only its own seed's rows and the test rows: the forward passes are the smoke budget.
                for name, init in ((SCRATCH, rs[s]), (CONTROL, rs[s] + CONTROL_OFFSET)):
                    f = embed(_random_bert(None, init), orders[s], tests[s])
                    feats[s, name] = (f[:n], f[n:])
            # every (seed, init) is one member of the protocol's batched fits: linear heads of one shape
            for s in cfg.seeds:
                y = torch.as_tensor(ytr[orders[s]])
                for name in names:
                    ftr, fte = feats[s, name]
                    make = (lambda d=ftr.shape[1], s=rs[s]: models.seeded(s, lambda: nn.Linear(d, K)))
                    members[s, name] = Member(make, (ftr.float(),), y, (fte.float(),), rs[s],
                                              y_test=yte[tests[s]])
                    if s == cfg.seeds[0] and name != CONTROL:
                        logme[name] = _logme(ftr.numpy(), y.numpy(), K)
        else:
            def encode(xs, ys):
                e = tok(xs, padding="max_length", truncation=True, max_length=cfg.max_len, return_tensors="pt")
                return {"input_ids": e["input_ids"], "attention_mask": e["attention_mask"],
                        "labels": torch.as_tensor(ys)}
            tr, te = encode(xtr, ytr), encode(xte, yte)
            # every (seed, init) is one member of the protocol's batched fits: BERTs of MiniLM's shape
            for s in cfg.seeds:
                test_inputs = _bert_inputs(take((te["input_ids"], te["attention_mask"]), tests[s]))
                inputs = _bert_inputs(take((tr["input_ids"], tr["attention_mask"]), orders[s]))
                y = tr["labels"][torch.as_tensor(orders[s])]
                r = rs[s]
                makers = {SCRATCH: lambda r=r: _random_bert(K, r),
                          CONTROL: lambda r=r: _random_bert(K, r + CONTROL_OFFSET),
                          "minilm": lambda r=r: models.load_minilm(K, seed=r)}
                for name in names:
                    members[s, name] = Member(makers[name], inputs, y, test_inputs, r, y_test=yte[tests[s]])
                if s == cfg.seeds[0]:
                    for name in (SCRATCH, "minilm"):
                        body = _random_bert(None, r) if name == SCRATCH else models.load_minilm()
                        f = models.embed_minilm([xtr[i] for i in orders[s]], max_length=cfg.max_len,
                                                model=body, tokenizer=tok)
                        logme[name] = _logme(f, y.numpy(), K)
        coded, _ = code_members(members, None, K, proto, f"generality: MiniLM {cfg.mode} {target}")
        # the competent reference with no pretraining, on the same examples, order, blocks and test rows
        ref = baselines.tfidf_prequential(xtr, ytr, [orders[s] for s in cfg.seeds], xte, yte, K, proto.ends,
                                          test_of=[tests[s] for s in cfg.seeds])
        out["targets"][target] = {"target": target, **coded, "logme": logme, "max_len": cfg.max_len,
                                  "reference": ref, "cut": int(cut_tr[orders_union(orders)].sum() +
                                                               cut_te[test_idx].sum())}
    return out


# ================================================================================== 3. digits, both ways
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


DIGITS_GRID = (HP("finetune-lr1e-3", 1e-3, 1.0), HP("finetune", 3e-3, 1.0), HP("finetune-lr1e-2", 1e-2, 1.0),
               HP("finetune-slow-body", 3e-3, 0.1), HP("probe", 1e-2, 0.0))


@dataclass(frozen=True)
class DigitsConfig:
    """Pretrain on one half of the digits (`source`), code the labels of the other (`target`); the chapter
    runs both directions. A pilot of 0–4 → 5–9 found θP coding 400 labels in ≈ 228 bits vs θ0's ≈ 167:
    expect negative transfer (with the one learning rate it then had). smoke: 5 seeds, ~38 s for the 7 inits of
    one direction on one CPU core; full: 16 seeds, so that the seed-vs-seed control's equivalence test has the
    power its ±0.05 margin needs (one run's control spreads by ≈ 0.07 bits/label)."""
    source: str = "digits/0-4"
    target: str = "digits/5-9"
    hidden: int = 128
    pretrain_steps: int = 1500  # full-batch Adam steps on the source: to convergence (train accuracy 1.0)
    early_steps: int = 40  # the same run stopped early (a less specialised source)
    # more points of ΔL against source-training steps, between early_steps and pretrain_steps: the same
    # run (same init, same full-batch data) stopped after each of these numbers of steps
    mid_steps: tuple[int, ...] = (200,)
    pretrain_lr: float = 3e-3
    # The candidates every init chooses from per block, on the labels already sent (`core.prequential`): a
    # full fine-tune at three learning rates a factor ≈ 3 apart, a slow body and a frozen-body probe; full adds
    # LP-FT. One learning rate for all would favour some inits: the converged sources' features on the target
    # images are tens of times larger than a random init's, so the rate that suits one over- or undershoots
    # for another; with a grid each init finds its own. (20 instead of 30 epochs per fit was tried and
    # rejected: θ0 then coded 400 labels in ≈ 280 bits instead of ≈ 175 — an undertrained θ0 flatters every
    # source.)
    protocol: Protocol = field(default_factory=lambda: Protocol(
        ends=(10, 25, 50, 100, 200, 400), hps=DIGITS_GRID, epochs=30.0, batch_size=64, min_steps=30, max_steps=300))
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # ≥ 5: the seed-vs-seed control's equivalence test needs them
    # the two diagnostic sources ("pretrained-rescaled", "random-labels"): the chapter explains the sign of
    # ΔL with them in one direction; the other direction runs without them (7 vs 5 inits per seed)
    diagnostics: bool = True
    n_filters: int = 16  # first-layer units whose 8×8 filters are returned for the figure


DIGITS = {"smoke": DigitsConfig(),
          "full": DigitsConfig(seeds=tuple(range(16)), mid_steps=(100, 200, 500), protocol=dataclasses.replace(
              DigitsConfig().protocol, ends=(10, 20, 40, 80, 160, 320, 640),
              hps=(*DIGITS_GRID[:-1], HP("lp-ft", 3e-3, 1.0, lp_frac=0.5), DIGITS_GRID[-1])))}
# overrides of DIGITS for the other direction, at every profile (the diagnostics explain one direction)
REVERSE = {"source": "digits/5-9", "target": "digits/0-4", "diagnostics": False}


def _effective_rank(h: np.ndarray) -> float:
    """exp(entropy of the normalised squared singular values) of centred features (Roy & Vetterli 2007):
    how many directions the features really use."""
    sv = np.linalg.svd(h - h.mean(0), compute_uv=False) ** 2
    p = sv / sv.sum()
    return float(np.exp(-(p * np.log(p + 1e-300)).sum()))


def digits_transfer(cfg: DigitsConfig) -> dict:
    """θ0 vs the sources on the target half of the digits, each run seed with source networks of its own:
    "pretrained" (the source half to convergence),
    "early" and "steps-<k>" (the same run stopped after early_steps and each of mid_steps),
    "pretrained-rescaled" (the converged body with its output scaled down to θ0's feature norm — the same
    directions, so it separates the *scale* of the features from their *collapse*), and "random-labels"
    (the source images with shuffled labels: memorisation features, an unrelated source); and the reference
    with no pretraining, pixels + logistic regression, on the same examples, order and blocks. Diagnostics
    per source: feature norm and effective rank on the target images, and what a fresh head on them codes
    before any training."""
    with cpu_threads(1), models.quiet_loading():
        return _digits_transfer(cfg)


SOURCE_SEED = 12_345  # + the run seed: the init of that run's source networks


def _digits_transfer(cfg: DigitsConfig) -> dict:
    from decoupling.core import baselines
    if {cfg.source, cfg.target} != {"digits/0-4", "digits/5-9"}:
        raise ValueError(f"digits transfer runs between digits/0-4 and digits/5-9, not {cfg.source} -> {cfg.target}")
    src = data.arrays(cfg.source)
    tgt = data.arrays(cfg.target)
    xs, ys = torch.from_numpy(src["train"][0]), torch.from_numpy(src["train"][1])
    (xt, yt), (xe, ye) = tgt["train"], tgt["test"]
    xt, xe = torch.from_numpy(xt), torch.from_numpy(xe)
    K = 5
    proto = cfg.protocol
    n = proto.ends[-1]

    def fresh(seed: int) -> MLP:
        return models.seeded(seed, lambda: MLP(64, cfg.hidden, K))

    def pretrain_mlp(steps: int, labels: torch.Tensor, source_seed: int) -> tuple[MLP, dict]:
        m = models.seeded(SOURCE_SEED + source_seed, lambda: MLP(64, cfg.hidden, 5))
        tc = train.TrainConfig(steps=steps, batch_size=len(labels), lr=cfg.pretrain_lr, weight_decay=0.0,
                               warmup_frac=0.0, seed=source_seed, progress=False)
        train.train_module(m, xs, labels, tc)
        p_tr = train.predict_proba(m, xs)
        p_te = train.predict_proba(m, torch.from_numpy(src["test"][0]))
        return m.cpu(), {"steps": steps, "train_acc": float((p_tr.argmax(1) == labels.numpy()).mean()),
                         "test_acc": float((p_te.argmax(1) == src["test"][1]).mean()),
                         "train_bits": measures.log_loss_bits(p_tr, labels.numpy())}

    @torch.no_grad()
    def feat_norm(m: MLP, x) -> float:
        return float(m.body(x).norm(dim=1).mean())

    def make_sources(seed: int) -> dict[str, tuple[MLP, dict]]:
        """The source networks of one run: each run seed pretrains its own (its own init, and for the
        random-labels source its own shuffle), so the runs' spread holds the pretraining seed too and the
        interval over runs covers it (a single source network shared by every run would leave its luck out)."""
        out = {"pretrained": pretrain_mlp(cfg.pretrain_steps, ys, seed), "early": pretrain_mlp(cfg.early_steps, ys, seed)}
        for k in cfg.mid_steps:  # the same deterministic run stopped at k steps (init, data and lr identical)
            out[f"steps-{k}"] = pretrain_mlp(k, ys, seed)
        if cfg.diagnostics:
            # ReLU is positively homogeneous: scaling the last layer by c scales the features by c, same directions
            m_res = copy.deepcopy(out["pretrained"][0])
            c = feat_norm(fresh(seed), xs) / feat_norm(m_res, xs)  # measured on the SOURCE images
            with torch.no_grad():
                m_res.body[2].weight.mul_(c)
                m_res.body[2].bias.mul_(c)
            out["pretrained-rescaled"] = (m_res, {**out["pretrained"][1], "scale": c})
            shuffled = ys[torch.from_numpy(np.random.default_rng(seed).permutation(len(ys)))]
            out["random-labels"] = pretrain_mlp(cfg.pretrain_steps, shuffled, seed)
        return out

    by_seed = {seed: make_sources(seed) for seed in cfg.seeds}
    sources = by_seed[cfg.seeds[0]]  # the first run's: what the diagnostics, filters and LogME describe

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
        order = subset(len(yt), n, seed)
        inputs, y = (xt[torch.as_tensor(order)],), torch.as_tensor(yt[order])
        makers = {SCRATCH: lambda seed=seed: fresh(seed), CONTROL: lambda seed=seed: fresh(seed + CONTROL_OFFSET)}
        for name, (m, _) in by_seed[seed].items():
            makers[name] = (lambda m=m, seed=seed: from_source(m, seed))
        for name, mk in makers.items():
            members[seed, name] = Member(mk, inputs, y, (xe,), seed, keep_model=seed == cfg.seeds[0])
    coded, done = code_members(members, ye, K, proto, f"generality: {cfg.source} -> {cfg.target}")
    reference = baselines.pixels_prequential(tgt["train"][0], yt, [subset(len(yt), n, seed) for seed in cfg.seeds],
                                             tgt["test"][0], ye, K, proto.ends)
    models_kept = {name: r["model"] for (s, name), r in done.items() if s == cfg.seeds[0]}
    # what is reused: first-layer filters (8×8) of the random init, the pretrained bodies, and θ0 / θP
    # after fine-tuning on 5–9 (the first candidate that trains the body, last fit, first seed)
    f = cfg.n_filters

    def w1(m):
        return m.body[0].weight.detach().cpu()[:f].tolist()  # (f, 64)

    init = models.seeded(SOURCE_SEED + cfg.seeds[0], lambda: MLP(64, cfg.hidden, 5))  # the first run's source init
    filters = {"random": w1(fresh(cfg.seeds[0])), "pretraining-init": w1(init),
               "pretrained": w1(sources["pretrained"][0]), "early": w1(sources["early"][0])}
    init_state = {k: v.clone() for k, v in init.state_dict().items()}
    pretrain_movement = {k: layer_movement(init_state, sources[k][0]) for k in ("pretrained", "early", "random-labels")
                         if k in sources}
    for k in (SCRATCH, "pretrained"):
        if models_kept.get(k) is not None:
            filters[f"{k}+finetuned"] = w1(models_kept[k])
    # frozen features: LogME of each body's last hidden layer on the first seed's target sample
    logme = {}
    order0 = torch.as_tensor(subset(len(yt), n, cfg.seeds[0]))
    for name, m in [(SCRATCH, fresh(cfg.seeds[0]))] + [(k, v[0]) for k, v in sources.items()]:
        with torch.no_grad():
            feats = m.cpu().body(xt[order0]).double().numpy()
        logme[name] = measures.logme(feats, yt[order0.numpy()], K)
    steps = {"early": cfg.early_steps, **{f"steps-{k}": k for k in cfg.mid_steps}, "pretrained": cfg.pretrain_steps}
    return {"target": cfg.target, "source_task": cfg.source, **coded, "reference": reference,
            "source_steps": steps, "sources": {k: v[1] for k, v in sources.items()},
            "source_train_acc": {k: [by_seed[sd][k][1]["train_acc"] for sd in cfg.seeds] for k in sources},
            "diagnostics": diag,
            "filters": filters, "pretrain_movement": pretrain_movement, "logme": logme}


# ================================================================================== the presets, one way
# keyed by experiment function: each value is that experiment's {"smoke": config, "full": config}
PRESETS = {"transfer": TRANSFER, "reference_transfer": TRANSFER, "minilm_transfer": MINILM,
           "digits_transfer": DIGITS, "seed_control": SEED_CONTROL}
