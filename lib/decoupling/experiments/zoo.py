"""The zoo: lab-pretrained platforms measured in bits on every text target, with equal inputs.

For each (model, target) cell and each run, linear probes on frozen features code the target's labels
prequentially (`core.prequential`, the protocol of the generality chapter and of `decoupling gain`):

    ΔL = L_preq(θ0) − L_preq(θP)        θ0: the same architecture randomly initialised (drawn per run)
    control L_preq(θ0) − L_preq(θ0')    θ0': a second random init (seed-vs-seed: should be ≈ 0)

and, on the same blocks, TF-IDF + logistic regression (`zoo_reference`: one per target, shared by every
model row). A run is its own sample and order of the target's training rows and its own random inits;
every model sees run r's rows in the same order, so model-vs-model differences are paired on identical
blocks. Held-out numbers (the essay's KL, the held-out gain, test bits) use `n_test` rows of the target's
test split drawn per run (`prequential.heldout_rows`): every model and the reference score run r on the
same rows, and the interval over runs covers which rows were drawn.

**Our bodies' pretraining seed is a run.** A body row's run r reads the body pretrained with seed r, so its
interval over runs holds the luck of pretraining as well as that of the probe (the lab models are one
pretraining each: their rows are about that network).

**Equal inputs.** Every text is cut once, before any model sees it, to the longest whole-word prefix that
*every* tokenizer of the zoo (MiniLM's and mpnet's WordPiece, SmolLM2's BPE, the book's BPE) encodes in at
most `max_tokens` tokens, special tokens included. Each encoder then reads all of its text (nothing is
truncated again) and the TF-IDF reference is given exactly the same strings, so no row reads more of a
text than another. The number of texts cut is recorded per target.

Rows: all-MiniLM-L6-v2, all-mpnet-base-v2, SmolLM2-135M-Instruct (`data.platforms`), and the book's code
and prose bodies (`experiments.pretrain`, at the profile named by `body_profile`). The statistics over
cells (findings, leaderboard) are in `experiments.zoo_summary`, so that changing them never changes the
keys of these records.

Cost: a cell is one pretrained pass (a body row: one per body seed) over every row any run codes or scores,
plus two random passes per run, each over that run's rows and its test rows (`count`). Nothing here needs a
GPU: the `full` zoo is computed on a CPU (`runs_on_cpu`), one record per cell, written as it finishes
(`decoupling compute --profile full`).
"""
from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from decoupling import data
from decoupling.core import baselines, encoders, measures, models
from decoupling.core.encoders import cut
from decoupling.core.device import cpu_threads
from decoupling.core.prequential import (CONTROL, CONTROL_OFFSET, HP, SCRATCH, Member, Protocol, code_members,
                                         heldout_rows, subset)
from decoupling.data import platforms

PRETRAINED = "pretrained"
LAB = ("minilm", "mpnet", "smollm2")
BODIES = ("body:code", "body:prose")
MODELS = LAB + BODIES
TARGETS = tuple(t for t in data.TASKS if not t.startswith("digits"))
SENTIMENT = tuple(t for t in TARGETS if t.startswith("sentiment/"))
CUT_TOKENIZERS = ("minilm", "mpnet", "smollm2", "book")


# ================================================================================== configs
# The probes' learning rates, chosen among per block on seen data, a factor 5 apart. The grid was (1e-2, 5e-2),
# and at `full` an edge won in every row (`zoo_summary.grid_report`, blocks that had a choice): SmolLM2's
# pretrained probe took 5e-2 in 82 of 90 blocks and its random twins 1e-2 in 89 of 90; MiniLM's and mpnet's
# pretrained probes took 5e-2 in 109 of 150 and 71 of 90; the book's bodies leaned to 1e-2. Coded again with
# every rate from 4e-4 to 1.25 (27 runs of MiniLM, mpnet, SmolLM2 and a body, their twins included, on 8-class
# and binary targets), the best single rate of a run was 0.25 in 10 (SmolLM2's pretrained probe, 149 bits below
# the old grid's best on prose/topic and 18 on tweets; MiniLM's twins, 122–141 bits on code/module, 0.5–17 on
# tweets), 5e-2 in 5, 1e-2 in 3 and 2e-3 in 7 (twins and a body, whose codes are nearly flat below 5e-2); 4e-4
# was never half a bit better than 2e-3, and 1.25 coded worse than 0.25 in all 27. So the grid runs from 2e-3 to
# 1.25: every best single rate inside it, and the value past the top one, where the large savings are, in the
# records themselves (`L_config`). Candidate 0 (it codes the first block, with nothing seen to choose on) stays
# 1e-2. Each value costs one fit per block, a small share of a cell next to its encoder passes, and log2(5) bits
# per block, as the reference's grid does.
PROBE_GRID = (HP("probe-lr1e-2", 1e-2, 1.0, 0.0), HP("probe-lr2e-3", 2e-3, 1.0, 0.0),
              HP("probe-lr5e-2", 5e-2, 1.0, 0.0), HP("probe-lr2.5e-1", 2.5e-1, 1.0, 0.0),
              HP("probe-lr1.25", 1.25, 1.0, 0.0))

# TF-IDF + logistic regression's inverse regularisation C, a factor 10 apart. With (1, 10), C = 10 won 98 of 150
# blocks at `full` (46 of 50 on the code and prose targets). Coded again on the same runs with C from 0.1 to 1e4,
# the best single C of a run was 1 or 10 on every sentiment run (C = 0.1 worse than 1 in all 20) and 100 or 1000
# on every code and prose run (1000 in 8 of 10, 97–192 bits below C = 10; 1e4 worse than 1000 in all 10). So
# the grid runs from 1 to 1e4: every best single C inside it and the value past the top one in the records.
# Chosen per block on those runs, 1: 52, 10: 56, 100: 15, 1000: 24, 1e4: 3 (the most chosen value interior).
# Five values, as the probes have, so that both charge log2(5) bits per block and the charge cancels from every
# comparison of a row with the reference. Candidate 0, which codes the first block, stays C = 1.
REFERENCE_CS = (1.0, 10.0, 100.0, 1000.0, 1e4)


def probe_protocol(n: int, K: int) -> Protocol:
    """Blocks that double from max(16, 2K) to n (as `decoupling gain` cuts them); the probe learning rates of
    `PROBE_GRID` chosen per block on seen data."""
    first = max(16, 2 * K)
    ends = [first]
    while ends[-1] * 2 < n:
        ends.append(ends[-1] * 2)
    ends.append(n)
    return Protocol(ends=tuple(ends), hps=PROBE_GRID, epochs=20.0, batch_size=64, min_steps=20)


@dataclass(frozen=True)
class Inputs:
    """Which rows of a target every row of the zoo codes, and how texts are cut (shared by models and the
    reference, so that both read the same examples from the same strings)."""
    target: str
    runs: tuple[int, ...] = (0, 1, 2)  # each run: its own sample and order of the training rows
    n_labels: int = 640  # coded labels per run (at most the training split)
    n_test: int = 128  # test rows per run (drawn per run) that every held-out number uses
    max_tokens: int = 64  # the cut: at most this many tokens under every tokenizer of the zoo


@dataclass(frozen=True)
class ZooConfig:
    """One (model, target) cell of the zoo. `weights` pins the platform's sha256 into the key."""
    model: str  # a name of data.platforms.ZOO or "body:<domain>"
    inputs: Inputs
    body_profile: str = "smoke"  # which pretrained preset a body row uses
    weights: str = ""


def config(model: str, target: str, profile: str, **inputs) -> ZooConfig:
    """The cell's config at `profile` (see SIZES), with `inputs` overriding sizes (tests shrink them)."""
    sizes = {**SIZES[profile], **inputs}
    weights = platforms.ZOO[model].weights_sha256 if model in platforms.ZOO else ""
    return ZooConfig(model=model, inputs=Inputs(target=target, runs=tuple(sizes.pop("runs")), **sizes),
                     body_profile=sizes_body(profile), weights=weights)


# Every row codes the same runs, so every paired difference (model vs model, vs the reference) pairs all of
# them. 5 at `full` for every row: with 3 runs a 95% t interval is 4.30 standard errors wide on each side
# (2.78 with 5), too wide to decide mpnet's and SmolLM2's comparisons; their random twins (110–135M-parameter
# passes) fit 5 runs on a CPU that computes them in bf16 (`core.device`). `count` says what a profile reads.
SIZES = {
    "smoke": {"runs": (0, 1, 2), "n_labels": 64, "n_test": 32, "max_tokens": 32},
    "full": {"runs": (0, 1, 2, 3, 4), "n_labels": 640, "n_test": 128, "max_tokens": 64},
}


def sizes_body(profile: str) -> str:
    # The zoo's body rows read the smoke bodies (seconds each) at every profile and say so wherever they
    # are shown: five runs need five bodies per domain, and the full bodies (minutes each) are compared with
    # their random twins on every target in the generality chapter's transfer experiment.
    return "smoke"


def cells(profile: str, models_: tuple[str, ...] = MODELS, targets: tuple[str, ...] = TARGETS) -> list[ZooConfig]:
    return [config(m, t, profile) for m in models_ for t in targets]


def run_seed(target: str, run: int) -> int:
    """The seed of one (target, run): sample, order, heads and random inits come from it; derived from the
    target's name so that runs on different targets are independent draws."""
    return run * 1_000_003 + zlib.crc32(target.encode()) % 1_000_003


# ================================================================================== equal inputs
def tokenizer_of(name: str):
    """The tokenizer of a zoo model, "book" (the book's BPE, shared by its bodies), "body:<domain>", or a
    Hugging Face model directory (a reader's own model: `decoupling score`)."""
    from transformers import AutoTokenizer
    if name == "book" or name.startswith("body:"):
        return data.tokenizer()
    tok = AutoTokenizer.from_pretrained(model_dir(name), local_files_only=True)
    if tok.pad_token is None:  # decoders ship none; padding is masked out of every pooled feature
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def inputs(inp: Inputs) -> dict:
    """The rows every model and the reference code for `inp`: the union of the runs' training rows and the
    union of their test rows, their cut texts, each run's order and test rows (indices into the unions),
    labels, and how many texts the cut shortened. Deterministic: the same `inp` gives the same strings
    everywhere."""
    arr = data.arrays(inp.target)
    (xtr, ytr), (xte, yte) = arr["train"], arr["test"]
    n = min(inp.n_labels, len(ytr))
    orders = {r: subset(len(ytr), n, run_seed(inp.target, r)) for r in inp.runs}
    tests = {r: heldout_rows(len(yte), inp.n_test, r) for r in inp.runs}
    rows = np.unique(np.concatenate(list(orders.values())))
    test_rows = np.unique(np.concatenate(list(tests.values())))
    raw = [xtr[i] for i in rows] + [xte[i] for i in test_rows]
    toks = [tokenizer_of(name) for name in CUT_TOKENIZERS]
    texts, was_cut = cut(raw, inp.max_tokens, toks)
    return {"texts": texts[:len(rows)], "test_texts": texts[len(rows):], "y": ytr[rows], "y_test": yte[test_rows],
            "orders": {r: np.searchsorted(rows, o) for r, o in orders.items()},
            "tests": {r: np.searchsorted(test_rows, t) for r, t in tests.items()},
            "n": n, "K": data.num_labels(inp.target),
            "cut_train": int(was_cut[:len(rows)].sum()), "cut_test": int(was_cut[len(rows):].sum()),
            "rows": len(rows), "n_test": len(next(iter(tests.values()))), "test_rows": len(test_rows)}


# ================================================================================== the models
def model_dir(model: str):
    """The directory of a zoo platform, or `model` itself when it is a Hugging Face model directory."""
    from pathlib import Path
    return platforms.path(model) if model in platforms.ZOO else Path(model)


def is_body(model: str) -> bool:
    return model.startswith("body:")


def loaders(model: str, body_profile: str = "smoke", body_seed: int = 0):
    """(pretrained(), random_init(seed), tokenizer, config) for a zoo row; both give base models (the
    encoder or the decoder's transformer without its LM head), whose last hidden states are pooled. A body
    row's pretrained weights are those of the body pretrained with `body_seed`."""
    from transformers import AutoConfig, AutoModel
    if is_body(model):
        from decoupling.experiments import pretrain
        domain = model.split(":", 1)[1]
        path, _ = pretrain.body(pretrain.config(body_profile, domain, body_seed), body_profile)
    else:
        path = model_dir(model)
    tok = tokenizer_of(model)
    conf = AutoConfig.from_pretrained(path, local_files_only=True)
    conf.pad_token_id = tok.pad_token_id

    def pretrained():
        return AutoModel.from_pretrained(path, config=conf, local_files_only=True, dtype=torch.float32)

    def random_init(seed: int):
        return models.seeded(seed, lambda: AutoModel.from_config(conf))
    return pretrained, random_init, tok, conf


def weights_sha(cfg: ZooConfig, body_seed: int = 0) -> str:
    """sha256 of what decides a row's pretrained weights: the platform's pinned weights, or the
    safetensors file of the body pretrained with `body_seed`."""
    if cfg.model in platforms.ZOO:
        return platforms.provenance(cfg.model).get("converted_sha256") or cfg.weights
    if not cfg.model.startswith("body:"):
        return cfg.weights  # a reader's directory: its files' sha256, set by whoever made the config
    from decoupling.data.sources import sha256_file
    from decoupling.experiments import pretrain
    path, _ = pretrain.body(pretrain.config(cfg.body_profile, cfg.model.split(":", 1)[1], body_seed),
                            cfg.body_profile)
    return sha256_file(next(path.glob("*.safetensors")))


def _shape_only(conf):
    from transformers import AutoModel
    with torch.device("meta"):  # the shape only: counting parameters allocates nothing
        return AutoModel.from_config(conf)


def proxy_labels(ends, n: int) -> int:
    """How many of a run's labels (its first ones, in the order they are sent) the proxies read: the largest
    block end at most n/2. The labels after it are coded in blocks the proxies never saw, so a proxy can be
    compared with the bits of those blocks (`zoo_summary.proxies_vs_bits`): a score from labels in hand
    against the code length of the labels to come."""
    return max(e for e in ends if e <= max(n // 2, ends[0]))


def _proxies(f: np.ndarray, y: np.ndarray, K: int) -> dict:
    """LogME (You et al. 2021) and the H-score (Bao et al. 2019) of frozen features; None where LogME's
    fixed point fails (fewer examples than dimensions can break it), and an H-score of None with no more
    examples than dimensions: the features' covariance is then singular and any features, noise included,
    separate the classes' means completely (the score sits at its ceiling, K − 1)."""
    n, d = f.shape
    out = {"h_score": float(measures.h_score(f.astype(np.float64), y)) if n > d else None}
    try:
        out["logme"] = float(measures.logme(f.astype(np.float64), y, K))
    except (ValueError, FloatingPointError, np.linalg.LinAlgError):
        out["logme"] = None
    return out


def zoo_cell(cfg: ZooConfig) -> dict:
    """One (model, target) cell: every run's ΔL against the random twin, the θ0' control, test-split
    learning curves, the essay's KL, and the proxies (LogME, H-score) of θP's and θ0's features on all the
    coded labels and on each run's first `proxy_labels` ones. The function the results store caches."""
    with cpu_threads(1), models.quiet_loading():
        return _cell(cfg)


zoo_cell.runs_on_cpu = True  # forward passes and linear probes only: `full` is computed on a CPU


def _cell(cfg: ZooConfig) -> dict:
    from decoupling import paths
    t0 = time.perf_counter()
    inp = inputs(cfg.inputs)
    K, n = inp["K"], inp["n"]
    proto = probe_protocol(n, K)
    runs = cfg.inputs.runs
    body_seeds = runs if is_body(cfg.model) else (None,)  # a body row: run r reads the body of seed r
    pretrained, random_init, tok, conf = loaders(cfg.model, cfg.body_profile, runs[0] if is_body(cfg.model) else 0)
    limit = getattr(conf, "n_positions", None) or getattr(conf, "max_position_embeddings", None) or 10 ** 9
    all_texts = inp["texts"] + inp["test_texts"]
    lengths = encoders.token_lengths(tok, all_texts, 10 ** 6)
    # Every row reads each cut text whole. The cut guarantees it for the zoo's tokenizers (≤ max_tokens); a
    # reader's model with another tokenizer reads up to its own positions, and is refused beyond them.
    read = max(cfg.inputs.max_tokens, int(lengths.max()))
    if read > limit:
        raise ValueError(f"{cfg.model} would truncate {int((lengths > limit).sum())} texts beyond its {limit} positions")
    threads = encoders.all_cores()
    fdir = paths.STORE_DIR / "features"
    t_pass = time.perf_counter()
    shared = {}  # body seed (None: the one lab platform) -> pretrained features of every text any run reads
    for bs in body_seeds:
        load = pretrained if bs is None else loaders(cfg.model, cfg.body_profile, bs)[0]
        shared[bs] = encoders.features({"weights": weights_sha(cfg, bs or 0)}, all_texts, read, load, tok, fdir,
                                       threads=threads)
    pretrained_pass_s = time.perf_counter() - t_pass
    n_params = sum(p.numel() for p in _shape_only(conf).parameters())
    n_tr = len(inp["texts"])
    members: dict[tuple[int, str], Member] = {}
    proxies: dict = {}  # run -> init -> proxies on all n coded labels (the same labels the code codes)
    first: dict = {}  # run -> init -> proxies on the first `seen` labels only (disjoint from the later blocks)
    seen = proxy_labels(proto.ends, n)
    for r in runs:
        o, t = inp["orders"][r], inp["tests"][r]
        seed = run_seed(cfg.inputs.target, r)
        texts_r = [inp["texts"][i] for i in o] + [inp["test_texts"][i] for i in t]
        f_p = shared[r if is_body(cfg.model) else None]
        feats = {PRETRAINED: (torch.from_numpy(f_p[o]), torch.from_numpy(f_p[n_tr + t]))}
        for name, init in ((SCRATCH, seed), (CONTROL, seed + CONTROL_OFFSET)):
            f = encoders.random_features(conf, init, texts_r, read, lambda s=init: random_init(s), tok, fdir,
                                         threads=threads)
            feats[name] = (torch.from_numpy(f[:n]), torch.from_numpy(f[n:]))
        y = torch.as_tensor(inp["y"][o])
        for name, (ftr, fte) in feats.items():
            make = (lambda d=ftr.shape[1], s=seed: models.seeded(s, lambda: nn.Linear(d, K)))
            members[r, name] = Member(make, (ftr.float(),), y, (fte.float(),), seed, y_test=inp["y_test"][t])
        for got, rows in ((proxies, n), (first, seen)):
            got[r] = {name: _proxies(feats[name][0][:rows].numpy(), y[:rows].numpy(), K)
                      for name in (PRETRAINED, SCRATCH)}
    coded, _ = code_members(members, None, K, proto, f"zoo {cfg.model} {cfg.inputs.target}")
    info = platforms.provenance(cfg.model) if cfg.model in platforms.ZOO else {
        "name": cfg.model, "body_profile": cfg.body_profile, "body_seeds": list(runs)}
    return {**coded, "model": cfg.model, "target": cfg.inputs.target, "runs_seeds": list(cfg.inputs.runs),
            "proxies": {str(r): v for r, v in proxies.items()}, "proxy_labels": seen,
            "proxies_first": {str(r): v for r, v in first.items()}, "platform": {**info, "n_params": n_params},
            "max_tokens": cfg.inputs.max_tokens, "tokens_mean": float(lengths.mean()), "tokens_max": int(lengths.max()),
            "cut_train": inp["cut_train"], "cut_test": inp["cut_test"], "rows": inp["rows"],
            "test_rows": inp["test_rows"], "pretrained_pass_s": round(pretrained_pass_s, 2), "wall_s": round(time.perf_counter() - t0, 2),
            "threads": threads}


@dataclass(frozen=True)
class ReferenceConfig:
    inputs: Inputs


def zoo_reference(cfg: ReferenceConfig) -> dict:
    """TF-IDF + logistic regression on one target, on exactly the strings and blocks the models code."""
    with cpu_threads(1):
        inp = inputs(cfg.inputs)
        proto = probe_protocol(inp["n"], inp["K"])
        ref = baselines.tfidf_prequential(inp["texts"], inp["y"], [inp["orders"][r] for r in cfg.inputs.runs],
                                          inp["test_texts"], inp["y_test"], inp["K"], proto.ends,
                                          test_of=[inp["tests"][r] for r in cfg.inputs.runs], cs=REFERENCE_CS)
    return {**ref, "target": cfg.inputs.target, "runs_seeds": list(cfg.inputs.runs), "n": inp["n"],
            "K": inp["K"], "ends": list(proto.ends), "uniform_bits": inp["n"] * math.log2(inp["K"]),
            "cut_train": inp["cut_train"], "cut_test": inp["cut_test"], "rows": inp["rows"],
            "n_test": inp["n_test"], "test_rows": inp["test_rows"], "max_tokens": cfg.inputs.max_tokens,
            "texts_sha": encoders.texts_sha(inp["texts"] + inp["test_texts"])}


zoo_reference.runs_on_cpu = True


def reference_config(target: str, profile: str, **inputs) -> ReferenceConfig:
    """The reference for `target`, on the runs every row codes."""
    sizes = {**SIZES[profile], **inputs}
    return ReferenceConfig(Inputs(target=target, runs=tuple(sizes.pop("runs")), **sizes))


# One cell per experiment and profile, as every experiments module names them (the presets contract of
# lib/decoupling/README.md); `cells` and `reference_config` give the whole zoo at a profile.
PRESETS = {"zoo_cell": {p: config("minilm", TARGETS[0], p) for p in SIZES},
           "zoo_reference": {p: reference_config(TARGETS[0], p) for p in SIZES}}


# ================================================================================== counting
def count(cfgs: list[ZooConfig]) -> list[dict]:
    """What each cell costs before it runs: encoder passes and the tokens they read (no model is loaded;
    the tokenizers and the cut are computed)."""
    out = []
    for c in cfgs:
        inp = inputs(c.inputs)
        tok = tokenizer_of(c.model)
        lens = encoders.token_lengths(tok, inp["texts"] + inp["test_texts"], 10 ** 6)
        per_run = inp["n"] + inp["n_test"]
        mean = float(lens.mean())
        pre = len(c.inputs.runs) if is_body(c.model) else 1  # a body row: one pretrained pass per body seed
        out.append({"model": c.model, "target": c.inputs.target, "runs": len(c.inputs.runs),
                    "passes": pre + 2 * len(c.inputs.runs),
                    "tokens": int(pre * lens.sum() + 2 * len(c.inputs.runs) * per_run * mean)})
    return out
