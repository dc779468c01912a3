"""Chapter 3 (book/tyranny.md): does more pretraining data give a body more to transfer? ΔL of one body
architecture against the number of tokens it was pretrained on.

`pretraining_data`: the book's pretrained body (`experiments.pretrain`: one GPT-2 shape, the "code" corpus)
trained for several step counts, each a complete run of its own schedule (warmup, cosine decay to the end;
Hoffmann et al. 2022 show a schedule cut short overstates the loss), so tokens seen = steps · batch ·
block_size and nothing else changes: same model, same corpus prefix, same window order (a shorter run
sees a prefix of a longer run's windows, `train.lm_windows`). Each body and a random-init twin θ0 are then
fine-tuned and coded on text targets under the fair protocol (`core.prequential`, as in chapter 4), and
ΔL = L(θ0) − L(body) in bits per label is read against log2 of the body's pretraining tokens.

The statistic is the slope of ΔL per doubling of pretraining tokens, fitted per (target, seed), averaged
over targets with a Student-t interval over the targets' means (`intervals.clustered_ci`). A seed is a whole
run: seed s reads the ladder of bodies pretrained with seed s (init and window order), fine-tunes them with
its own head init, θ0 init, data order and training sample, and scores its own test rows
(`heldout_rows`), so the interval covers the pretraining run's luck and the test draw as well as the
fine-tune's.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from decoupling.core import intervals
from decoupling.core.prequential import HP, SCRATCH, Member, Protocol, code_members, heldout_rows, subset, take
from decoupling.experiments import pretrain


@dataclass(frozen=True)
class DataConfig:
    """smoke: the smoke body (2 layers, d = 64) at 20 → 160 steps of 8 × 64 tokens (10k → 82k tokens; chapters
    1 and 4 use the 320-step body, which is not a point of this ladder), two targets, a 3-block protocol with
    one candidate, 32 tokens an example, 3 seeds, each with its own ladder of bodies (12 bodies of a few
    seconds each): an illustration only."""
    domain: str = "code"  # the bodies' corpus (experiments.pretrain)
    targets: tuple[str, ...] = ("code/module", "sentiment/tweets")  # in-domain and out-of-domain text tasks
    body_profile: str = "smoke"  # the experiments.pretrain preset the bodies start from
    body_steps: tuple[int, ...] = (20, 40, 80, 160)  # pretraining steps of each body (≥ 4 points)
    protocol: Protocol = field(default_factory=lambda: Protocol(ends=(16, 48, 112),
                                                                hps=(HP("finetune", 2e-3, 1.0),)))
    max_len: int = 32  # tokens per example (≤ the bodies' block_size)
    n_test: int = 64  # test rows each seed scores (its own draw: `heldout_rows`)
    seeds: tuple[int, ...] = (0, 1, 2)  # runs: the bodies' pretraining seed, and (→ `cell_seed`) the fine-tunes'


def body_config(cfg: DataConfig, steps: int, seed: int = 0) -> pretrain.PretrainConfig:
    """The body preset with only its step count and seed changed (same model, batch, lr rule, corpus)."""
    return dataclasses.replace(pretrain.config(cfg.body_profile, cfg.domain, seed=seed), steps=steps)


def cell_seed(cfg: DataConfig, target: str, seed: int) -> int:
    """One seed per (target, fine-tuning seed): distinct across targets, so θ0 is not the same network on
    every target (an interval over targets would otherwise count one init twice)."""
    return 1_000 * seed + 1 + cfg.targets.index(target)


def slope(x, y) -> float:
    """Least-squares slope of y on x."""
    return float(np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)[0])


def pretraining_data(cfg: DataConfig) -> dict:
    """ΔL (bits per label) of each body against θ0 on every target and seed (seed s fine-tunes the bodies
    pretrained with seed s), the bodies' pretraining tokens and held-out loss (mean over seeds, and per
    seed), and the slope of ΔL per doubling of tokens with its CI over targets and seeds."""
    from decoupling.core import models
    from decoupling.core.device import cpu_threads
    with cpu_threads(1), models.quiet_loading():
        return _pretraining_data(cfg)


def _pretraining_data(cfg: DataConfig) -> dict:
    from decoupling import data
    from decoupling.core import measures, models

    bodies, info = {}, []
    for steps in cfg.body_steps:
        per_seed = []
        for s in cfg.seeds:  # seed s: its own pretraining run at every point of the ladder
            path, res = pretrain.body(body_config(cfg, steps, s), cfg.body_profile)
            bodies[steps, s] = models.load_lm(path)
            per_seed.append(res)
        bits = [r.get("eval_bits_per_token") for r in per_seed]
        info.append({"steps": steps, "tokens": int(per_seed[0]["tokens"]), "flops": per_seed[0].get("flops"),
                     "eval_bits_per_token": float(np.mean(bits)), "eval_bits_per_seed": bits})
    body_model = body_config(cfg, cfg.body_steps[0]).model
    if cfg.max_len > body_model.block_size:
        raise ValueError(f"max_len {cfg.max_len} > the bodies' block_size {body_model.block_size}")
    tok = data.tokenizer()
    pad = tok.pad_token_id
    n = cfg.protocol.ends[-1]
    names = [f"body-{s}" for s in cfg.body_steps]
    per_target = {}
    for target in cfg.targets:
        K = data.num_labels(target)
        enc = data.encode(target, tok, cfg.max_len)
        tr, te = enc["train"], enc["test"]
        members = {}
        for s in cfg.seeds:
            seed = cell_seed(cfg, target, s)
            order = subset(len(tr["labels"]), n, seed)
            inputs = take((tr["input_ids"], tr["attention_mask"]), order)
            y = tr["labels"][torch.as_tensor(order)]
            test_idx = heldout_rows(len(te["labels"]), cfg.n_test, s)  # run s's own test rows, for every init
            test_inputs = take((te["input_ids"], te["attention_mask"]), test_idx)
            y_test = te["labels"].numpy()[test_idx]
            members[s, SCRATCH] = Member(lambda seed=seed, K=K: models.build_classifier(body_model, K, seed=seed),
                                         inputs, y, test_inputs, seed, y_test=y_test)
            for steps, name in zip(cfg.body_steps, names):
                members[s, name] = Member(
                    lambda steps=steps, s=s, seed=seed, K=K: models.replace_head(bodies[steps, s], K, seed=seed,
                                                                                 pad_token_id=pad),
                    inputs, y, test_inputs, seed, y_test=y_test)
        coded, _ = code_members(members, None, K, cfg.protocol, f"tyranny: pretraining data, {target}")
        dl = np.array([coded["pairs"][name]["dL"] for name in names]).T / n  # (seeds, points) bits/label
        per_target[target] = {
            "K": K, "n": n, "dL_per_label": dl.tolist(),
            "L_scratch_per_label": (np.array(coded["runs"][SCRATCH]["L"]) / n).tolist(),
            "uniform_per_label": math.log2(K),
            "slopes": [slope(np.log2([b["tokens"] for b in info]), row) for row in dl],
        }
    slopes = {t: v["slopes"] for t, v in per_target.items()}
    ci = intervals.clustered_ci(slopes)
    first_last = {t: (np.array(v["dL_per_label"])[:, -1] - np.array(v["dL_per_label"])[:, 0]).tolist()
                  for t, v in per_target.items()}
    ci_fl = intervals.clustered_ci(first_last)
    return {
        "bodies": info, "tokens": [b["tokens"] for b in info], "targets": list(cfg.targets),
        "seeds": list(cfg.seeds), "ends": list(cfg.protocol.ends),
        "per_target": per_target,
        "slope_bits_per_doubling": ci.value, "slope_ci": [ci.lo, ci.hi],
        "last_minus_first": ci_fl.value, "last_minus_first_ci": [ci_fl.lo, ci_fl.hi],
    }


pretraining_data.runs_on_cpu = True  # bodies of 4 × 128 and their fine-tunes: `full` is computed on a CPU


DATA = {
    "smoke": DataConfig(),
    # full: the full body (experiments.pretrain: 4 layers, d = 128, 32 × 128 tokens a step) at 8 → 500 steps,
    # 33k → 2.0M tokens (1.8 decades, five points ~2.8× apart; the 500-step bodies are chapter 4's code bodies,
    # so the ladder's own pretraining is 270 steps a seed, about half a body), three pretraining seeds, three
    # targets: code (the bodies' own domain), movie-review sentiment and prose topics.
    # Protocol: chapter 4's blocks and schedule (6 blocks up to 640 examples of 64 tokens, 4 epochs of 32) with
    # one candidate, chapter 4's first (full fine-tuning at 5e-4): every body gets the same recipe, so only the
    # body changes along the ladder, and a fine-tune costs half of chapter 4's two. One member (one init, seed
    # and target) took 15 CPU-seconds on one thread (33 s with both candidates); × 6 inits × 3 seeds × 3
    # targets ≈ 14 CPU-minutes, the bodies not counted (they are the book's). The test rows are not read by
    # this experiment (ΔL is a code length), so 64 is enough. What a longer-trained body reached in a pilot
    # (4 × 128 after 1,000 steps, twice the full body's, seed 0; code/module under this protocol, the other
    # two with chapter 4's second candidate as well): it learns code/module and prose/topic within 640
    # examples (test accuracy 0.34–0.37 against 0.125 chance, last block coded at 2.5–2.6 bits against
    # log2 8 = 3), not sentiment/movies (test accuracy 0.57, every block near log2 2 = 1 bit).
    "full": DataConfig(targets=("code/module", "sentiment/movies", "prose/topic"), body_profile="full",
                       body_steps=(8, 22, 63, 177, 500), max_len=64, n_test=64,
                       protocol=Protocol(ends=(20, 40, 80, 160, 320, 640), hps=(HP("finetune", 5e-4, 1.0),),
                                         epochs=4.0, batch_size=32, max_steps=400),
                       seeds=(0, 1, 2)),
}
PRESETS = {"pretraining_data": DATA}
