"""Chapter 1, "General-purpose computers" (book/computers.md): the economics of one pretrained platform.

The essay's argument from the history of computing: once hardware and software were decoupled, one
machine served many applications, so its cost was shared and a new application needed only new software.
The ML version: pay once for pretraining, then each new task costs one fine-tune. Two experiments, each a
plain function of a frozen config returning a JSON-able dict:

1. `economics` — for each target task, fine-tune from the shared pretrained body (`pretrain.body`, the
   same checkpoint the generality chapter uses) and train the same architecture from random weights, with
   the same data order, schedule and budget. Evaluate every `eval_every` steps and record the training
   FLOPs (PaLM appendix B, `models.flops_per_example`) and wall time at which each first reaches a target
   accuracy, fixed before training as a fraction of the gap between the majority class and the linear
   baseline (`data.baseline`). That gives C_scratch and C_finetune per task; with the body's pretraining
   cost C_pretrain the break-even task count is T* = C_pretrain / (C_scratch − C_finetune).
2. `minilm_platform` — the same tasks served by a model someone else pretrained (all-MiniLM-L6-v2):
   what each costs to adapt and what accuracy it reaches. `mode="probe"` trains a linear head on frozen
   mean-pooled features (what a CPU affords); `mode="finetune"` fine-tunes the whole encoder (GPU).

Accuracy is measured on (a fixed prefix of) each task's test split, as time-to-accuracy benchmarks do
(MLPerf, Mattson et al. 2020). FLOPs count training matmuls only, never evaluation.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from decoupling import data
from decoupling.core import measures, models, train
from decoupling.core.device import cpu_threads  # tiny models: one thread is 10-30x faster on a busy 2-core CPU
from decoupling.experiments import pretrain
from decoupling.progress import bar


# ================================================================================== pure helpers
def target_accuracy(majority: float, linear: float, frac: float) -> float:
    """The accuracy both inits must reach: majority + frac·(linear − majority), fixed before training."""
    return majority + frac * (linear - majority)


@functools.lru_cache(maxsize=None)
def _baseline(task: str) -> dict:
    """data.baseline, once per process (both experiments of a chapter need it; the TF-IDF fit takes seconds)."""
    return data.baseline(task)


def first_reach(xs, accs, target: float) -> dict | None:
    """The first point of a learning curve at or above `target`: {"index", "x", "acc"}, or None when the
    curve never gets there (within the budget the curve covers). `xs` is FLOPs, steps or seconds."""
    for i, (x, a) in enumerate(zip(xs, accs)):
        if a is not None and a >= target:
            return {"index": i, "x": float(x), "acc": float(a)}
    return None


def break_even(c_pretrain: float, c_scratch: float | None, c_finetune: float | None) -> float | None:
    """T* = C_pretrain / (C_scratch − C_finetune): the number of tasks after which pretraining once plus
    one fine-tune per task costs less than training each task from scratch. math.inf when fine-tuning is
    not cheaper (pretraining never pays); None when a cost is unknown (a target was not reached)."""
    if c_scratch is None or c_finetune is None:
        return None
    saving = c_scratch - c_finetune
    return c_pretrain / saving if saving > 0 else math.inf


def cost_per_task(c_pretrain: float, c_finetune: float, n_tasks) -> np.ndarray:
    """Amortized cost of the platform: C_pretrain / N + C_finetune for N tasks (vectorized over N)."""
    return c_pretrain / np.asarray(n_tasks, dtype=float) + c_finetune


CI_LEVEL = 0.95  # the summary's bootstrap intervals (measures.bootstrap_ci, 4000 resamples of the pairs)


def _ci(values, seed: int) -> list[float]:
    """The percentile bootstrap CI of the mean of `values` (measures.bootstrap_ci); [lo, hi]."""
    c = measures.bootstrap_ci(values, n_boot=4000, alpha=1 - CI_LEVEL, seed=seed)
    return [c.lo, c.hi]


# ================================================================================== training with a curve
def _fit_with_curve(model: nn.Module, inputs: tuple, y: torch.Tensor, tc: train.TrainConfig, evaluate,
                    desc: str) -> dict:
    """train.train_classifier with an accuracy curve: `evaluate(model)` every tc.eval_every steps and at the
    end, against the training FLOPs (models.flops_per_example) and seconds so far. The library's one loop,
    so scratch and fine-tune runs are the very same code. Wall times exclude evaluation."""
    out = train.train_classifier(model, *inputs, y, tc, desc, evaluate=evaluate)
    per_step = out["flops_per_step"]
    curve = [{"step": s, "flops": s * per_step, "train_s": t, "acc": acc}
             for (s, acc), t in zip(out["eval"], out["eval_train_s"])]
    return {"curve": curve, "flops": out["flops"], "flops_per_step": per_step, "batch": out["examples"] // tc.steps,
            "wall_s": out["wall_s"] - out["eval_s"], "final_acc": curve[-1]["acc"],
            "final_train_loss": out["final_train_loss"]}


def _accuracy(model, ids, mask, labels) -> float:
    q = train.predict_proba(model, ids, mask)
    return float((q.argmax(1) == labels.numpy()).mean())


# ================================================================================== 1. the economics
@dataclass(frozen=True)
class EconomicsConfig:
    """Smoke (2 CPU cores): three tasks, one seed, 120 steps per run — about a minute of training once the
    body is cached. Full (one H100): six tasks, three seeds, 300 steps of 64 examples, the full-profile body
    (≈ 11k optimizer steps in all; estimated ≈ 2 min, not yet measured)."""
    profile: str  # which profile's pretrained body to use (pretrain.body caches it per profile)
    body: pretrain.PretrainConfig  # the platform: pretrain.config(profile, domain), unchanged, so it is shared
    tasks: tuple[str, ...] = ("sentiment/movies", "code/module", "prose/topic")
    steps: int = 120  # the budget: optimizer steps per run (cosine schedule over these)
    batch_size: int = 32
    lr: float = 1e-3  # the same for both inits (AdamW, 5% warmup, cosine to 10%)
    weight_decay: float = 0.0
    eval_every: int = 10  # a curve point every this many steps (resolution of FLOPs-to-target)
    eval_examples: int = 256  # test examples in each curve point (a fixed prefix of the test split)
    max_train: int | None = None  # cap on training examples per task (None: all)
    target_frac: float = 0.3  # target = majority + frac·(linear − majority); fixed before any run
    seeds: tuple[int, ...] = (0,)  # head init and data order; the body is the one pretrained checkpoint


def _econ(profile: str, **kw) -> EconomicsConfig:
    return EconomicsConfig(profile=profile, body=pretrain.config(profile, "code"), **kw)


# The platform body is the "code" one: the largest corpus. In a smoke pilot the "prose" body did worse than it
# on these tasks (worse than scratch on code/module), so the choice leans towards the essay; the generality
# chapter compares all sources.
ECONOMICS = {
    "smoke": _econ("smoke"),
    "full": _econ("full", tasks=("sentiment/movies", "sentiment/tweets", "sentiment/amazon", "sentiment/nyt",
                                 "code/module", "prose/topic"),
                  steps=300, batch_size=64, eval_every=15, eval_examples=1024, target_frac=0.5,
                  seeds=(0, 1, 2)),
}


def economics(cfg: EconomicsConfig) -> dict:
    """Pretrain once (or find the cached body) + fine-tune per task, vs. training each task from scratch.

    Returns the body's pretraining cost, and per task: baselines, target, and per init ("scratch",
    "pretrained") and seed the accuracy curve over training FLOPs and seconds and the first point that
    reaches the target (None: not reached within the budget). One CPU thread (device.cpu_threads)."""
    with cpu_threads(1), models.quiet_loading():
        return _economics(cfg)


def _economics(cfg: EconomicsConfig) -> dict:
    body_dir, pre = pretrain.body(cfg.body, cfg.profile)
    lm = models.load_lm(body_dir)
    mcfg = cfg.body.model
    T = mcfg.block_size
    tok = data.tokenizer()
    pad = tok.pad_token_id
    out = {"pretrain": {k: pre.get(k) for k in ("flops", "tokens", "wall_s", "eval_bits_per_token",
                                                 "non_embedding_params")},
           "body": {"domain": cfg.body.domain, **models.describe(mcfg)}, "tasks": {}}
    runs = [(t, init, s) for t in cfg.tasks for init in ("scratch", "pretrained") for s in cfg.seeds]
    outer = bar(total=len(runs), desc="computers: runs", unit="run")
    for task in cfg.tasks:
        base = dict(_baseline(task))
        target = target_accuracy(base["majority"], base["linear"], cfg.target_frac)
        enc = data.encode(task, tok, max_len=T)
        tr, te = enc["train"], enc["test"]
        n = len(tr["labels"]) if cfg.max_train is None else min(cfg.max_train, len(tr["labels"]))
        k = int(tr["labels"].max()) + 1
        ne = min(cfg.eval_examples, len(te["labels"]))
        ev = (te["input_ids"][:ne], te["attention_mask"][:ne], te["labels"][:ne])
        rec = {"baseline": base, "target": target, "num_labels": k, "n_train": n, "n_eval": ne, "runs": {}}
        for init in ("scratch", "pretrained"):
            rec["runs"][init] = []
            for seed in cfg.seeds:
                model = (models.build_classifier(dataclasses.replace(mcfg, pad_token_id=pad), k, seed=seed)
                         if init == "scratch" else models.replace_head(lm, k, seed=seed, pad_token_id=pad))
                tc = train.TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                                       weight_decay=cfg.weight_decay, seed=seed, eval_every=cfg.eval_every)
                res = _fit_with_curve(model, (tr["input_ids"][:n], tr["attention_mask"][:n]), tr["labels"][:n],
                                      tc, lambda m: _accuracy(m, *ev), f"{task} {init} s{seed}")
                c = res["curve"]
                hit = first_reach([p["flops"] for p in c], [p["acc"] for p in c], target)
                res.update(seed=seed, reached=hit is not None,
                           flops_to_target=hit["x"] if hit else None,
                           steps_to_target=c[hit["index"]]["step"] if hit else None,
                           seconds_to_target=c[hit["index"]]["train_s"] if hit else None,
                           best_acc=max(p["acc"] for p in c),
                           counted_flops_per_token=models.flops_per_token(mcfg, T, include_head=False),
                           recounted_flops_per_token=_recount_flops_per_token(model, T))
                rec["runs"][init].append(res)
                outer.update(1)
        out["tasks"][task] = rec
    outer.close()
    out["summary"] = summarize(out)
    return out


def _recount_flops_per_token(clf, seq_len: int) -> float:
    """PaLM appendix B recounted from the classifier module itself rather than from its config: 6 × (its
    non-embedding parameters, less the tiny score head that models.flops_per_token leaves out) plus the
    attention term. The FLOP-accounting check compares this with models.flops_per_token."""
    head = sum(p.numel() for p in clf.score.parameters())
    c = clf.config
    return float(6 * (models.non_embedding_params(clf) - head) + 12 * c.n_layer * c.n_embd * seq_len)


def _mean_or_none(vals):
    return float(np.mean(vals)) if vals and all(v is not None for v in vals) else None


def summarize(res: dict, seed: int = 0) -> dict:
    """Per task: C_scratch and C_finetune (mean FLOPs to target over seeds; None if a seed never got there),
    wall seconds alike, and T*. Overall: the savings C_scratch − C_finetune per (task, seed), their mean
    with a bootstrap CI, the fine-tune/scratch FLOP ratios, and T* for the average task.

    A run that never reached the target is censored at the budget: for scratch that understates its cost
    (so the saving is a lower bound), for the fine-tune it overstates it (an upper bound on the cost).
    Pairs where neither reached the target carry no information and are left out."""
    c_pre, w_pre = res["pretrain"]["flops"], res["pretrain"]["wall_s"]
    per_task, savings, log_ratios, censored, dropped = {}, [], [], 0, 0
    for task, rec in res["tasks"].items():
        sc, ft = rec["runs"]["scratch"], rec["runs"]["pretrained"]
        c_s = _mean_or_none([r["flops_to_target"] for r in sc])
        c_f = _mean_or_none([r["flops_to_target"] for r in ft])
        w_s = _mean_or_none([r["seconds_to_target"] for r in sc])
        w_f = _mean_or_none([r["seconds_to_target"] for r in ft])
        per_task[task] = {
            "target": rec["target"], "c_scratch": c_s, "c_finetune": c_f, "t_star": _jsonable_t(break_even(c_pre, c_s, c_f)),
            "seconds_scratch": w_s, "seconds_finetune": w_f,
            "t_star_wall": _jsonable_t(break_even(w_pre, w_s, w_f)),
            "reached_scratch": sum(r["reached"] for r in sc) / len(sc),
            "reached_finetune": sum(r["reached"] for r in ft) / len(ft),
            "final_acc_scratch": float(np.mean([r["final_acc"] for r in sc])),
            "final_acc_finetune": float(np.mean([r["final_acc"] for r in ft])),
            "budget_flops": sc[0]["flops"],
        }
        for a, b in zip(sc, ft):  # paired by seed: same head init and data order
            fa, fb = a["flops_to_target"], b["flops_to_target"]
            if fa is None and fb is None:
                dropped += 1
                continue
            censored += (fa is None) + (fb is None)
            fa = a["flops"] if fa is None else fa
            fb = b["flops"] if fb is None else fb
            savings.append(fa - fb)
            log_ratios.append(math.log(fb / fa))
    out = {"per_task": per_task, "c_pretrain": c_pre, "wall_pretrain": w_pre, "n_pairs": len(savings),
           "censored_runs": censored, "dropped_pairs": dropped}
    if savings:
        mean_s, ci_s = float(np.mean(savings)), _ci(savings, seed)
        out.update(saving_mean=mean_s, saving_ci=ci_s, savings=savings,
                   t_star=_jsonable_t(c_pre / mean_s if mean_s > 0 else math.inf),
                   t_star_ci=[c_pre / ci_s[1] if ci_s[1] > 0 else None, c_pre / ci_s[0] if ci_s[0] > 0 else None],
                   ratio_geomean=float(np.exp(np.mean(log_ratios))),
                   ratio_ci=[float(np.exp(x)) for x in _ci(log_ratios, seed)], log_ratios=log_ratios)
        cs = [v["c_scratch"] for v in per_task.values()]
        cf = [v["c_finetune"] for v in per_task.values()]
        if all(v is not None for v in cs + cf):
            out["c_scratch_mean"], out["c_finetune_mean"] = float(np.mean(cs)), float(np.mean(cf))
    return out


def _jsonable_t(t):
    """T* for a JSON record: a float, "inf" when pretraining never pays, None when undefined."""
    if t is None:
        return None
    return "inf" if math.isinf(t) else float(t)


# ================================================================================== 2. a lab's platform model
@dataclass(frozen=True)
class PlatformConfig:
    """all-MiniLM-L6-v2 serving the same tasks. Smoke: a linear probe on frozen features of a few hundred
    examples per task (a few seconds per task on 2 CPU cores). Full: fine-tune the whole encoder on a GPU."""
    tasks: tuple[str, ...] = ("sentiment/movies", "code/module", "prose/topic")
    mode: str = "probe"  # "probe": frozen mean-pooled features + linear head; "finetune": the whole model
    max_len: int = 48  # WordPiece tokens per example (truncated; most sentiment snippets are shorter)
    max_train: int | None = 256  # training examples per task (None: all)
    eval_examples: int = 256  # the same test prefix length as `economics` uses at this profile
    steps: int = 300  # head (probe) or model (finetune) optimizer steps
    batch_size: int = 64
    lr: float = 1e-2  # probe: a linear head on normalized features takes a large rate; finetune: set ~5e-5
    eval_every: int = 25  # finetune only: curve resolution
    target_frac: float = 0.3  # the same definition of the target as `economics`
    seed: int = 0


PLATFORM = {
    "smoke": PlatformConfig(),
    "full": PlatformConfig(tasks=ECONOMICS["full"].tasks, mode="finetune", max_len=128, max_train=None,
                         eval_examples=1024, steps=200, batch_size=32, lr=5e-5, eval_every=20, target_frac=0.5),
}


def _embedding_flops(encoder: nn.Module, lengths, batch_size: int = 64) -> float:
    """Forward FLOPs of models.embed_minilm over examples of these token lengths, in order: it pads each
    batch to its longest member, so a batch of n_b examples padded to T_b costs
    n_b · models.flops_per_example(encoder, T_b) — its attention term grows with that batch's T_b."""
    batches = [lengths[i:i + batch_size] for i in range(0, len(lengths), batch_size)]
    return float(sum(len(b) * models.flops_per_example(encoder, max(b), training=False) for b in batches))


def minilm_platform(cfg: PlatformConfig) -> dict:
    """Adapt all-MiniLM-L6-v2 to each task; cost of adapting (FLOPs, seconds) and accuracy reached.
    Its pretraining was paid by others and is not counted (or known) here. One CPU thread, as everywhere
    in the book: on a busy 2-core machine a second thread made even MiniLM's forward passes 2× slower."""
    with cpu_threads(1), models.quiet_loading():
        return _minilm_platform(cfg)


def _minilm_platform(cfg: PlatformConfig) -> dict:
    tok = models.minilm_tokenizer()
    body = models.load_minilm()
    n_ne = models.non_embedding_params(body)
    out = {"model": "sentence-transformers/all-MiniLM-L6-v2", "non_embedding_params": n_ne, "mode": cfg.mode,
           "tasks": {}}
    for task in bar(cfg.tasks, desc=f"computers: MiniLM {cfg.mode}", unit="task"):
        base = dict(_baseline(task))
        target = target_accuracy(base["majority"], base["linear"], cfg.target_frac)
        arr = data.arrays(task)  # pyarrow only: the GPU machine has no `datasets`
        (xtr, ytr), (xte, yte) = arr["train"], arr["test"]
        ntr = len(ytr) if cfg.max_train is None else min(cfg.max_train, len(ytr))
        ne = min(cfg.eval_examples, len(yte))
        k = int(ytr.max()) + 1
        xtr, ytr = list(xtr[:ntr]), torch.from_numpy(ytr[:ntr])
        xte, yte = list(xte[:ne]), torch.from_numpy(yte[:ne])
        rec = {"baseline": base, "target": target, "num_labels": k, "n_train": ntr, "n_eval": ne}
        if cfg.mode == "probe":
            t0 = time.perf_counter()
            ftr = torch.from_numpy(models.embed_minilm(xtr, max_length=cfg.max_len, model=body, tokenizer=tok))
            embed_s = time.perf_counter() - t0
            fte = torch.from_numpy(models.embed_minilm(xte, max_length=cfg.max_len, model=body, tokenizer=tok))
            lens = [len(x) for x in tok(xtr, truncation=True, max_length=cfg.max_len)["input_ids"]]
            embed_flops = _embedding_flops(body, lens)
            head = models.seeded(cfg.seed, lambda: nn.Linear(ftr.shape[1], k))
            tc = train.TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=0.0,
                                   seed=cfg.seed, progress=False)
            r = train.train_module(head, ftr, ytr, tc, desc=f"{task} probe")
            acc = float((train.predict_proba(head, fte).argmax(1) == yte.numpy()).mean())
            rec.update(adapt_flops=embed_flops + r["flops"], embed_flops=embed_flops, head_flops=r["flops"],
                       adapt_s=embed_s + r["wall_s"], final_acc=acc, reached=acc >= target,
                       flops_to_target=None, note="linear probe: target judged at the end of training")
        else:
            enc = data.encode(task, tok, max_len=cfg.max_len)
            tr, te = enc["train"], enc["test"]
            model = models.load_minilm(num_labels=k, seed=cfg.seed)
            tc = train.TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=0.01,
                                   warmup_frac=0.1, seed=cfg.seed, eval_every=cfg.eval_every)
            ev = (te["input_ids"][:ne], te["attention_mask"][:ne], te["labels"][:ne])
            res = _fit_with_curve(model, (tr["input_ids"][:ntr], tr["attention_mask"][:ntr]), tr["labels"][:ntr],
                                  tc, lambda m: _accuracy(m, *ev), f"{task} MiniLM")
            c = res["curve"]
            hit = first_reach([p["flops"] for p in c], [p["acc"] for p in c], target)
            rec.update(curve=c, adapt_flops=res["flops"], adapt_s=res["wall_s"], final_acc=res["final_acc"],
                       reached=hit is not None, flops_to_target=hit["x"] if hit else None,
                       seconds_to_target=c[hit["index"]]["train_s"] if hit else None)
        out["tasks"][task] = rec
    return out


# ================================================================================== presets
PRESETS = {"economics": ECONOMICS, "minilm_platform": PLATFORM}  # experiment function -> {profile: config}
