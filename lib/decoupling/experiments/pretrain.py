"""Pretrained bodies, shared by the chapters: one decoder LM per source domain, trained once and cached.

The generality chapter fine-tunes these bodies on many targets; the computers chapter charges their
pretraining FLOPs against the fine-tunes they save. Both ask `body(cfg, profile)` and get the same
checkpoint from the results store (`store.artifact`): a safetensors directory plus result.json with the
pretraining cost (tokens, FLOPs per PaLM appendix B, wall time), the held-out loss in bits/token and its
curve, and what the body read (tokens seen, unique tokens, epochs, the corpus's unigram entropy).

Sources are made comparable: every body of a profile has the same model, the same number of steps, the
same window order (the seed) and the same number of UNIQUE training tokens — the rule is `unique_tokens`:
the smallest compared corpus's length (COMPARED, at that profile) less the held-out tokens, so every
source is cut to it. The held-out tokens are the `eval_tokens` right after the training tokens, again the
same count for every source. The sources then differ only in what text they saw.

Profiles: smoke reads the small corpora (the stdlib, its docstrings, CPython's headers); full reads the
larger ones of decoupling.data.full, so a full body sees each token at most ~4 times (`plan`).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from decoupling.core.models import ModelConfig

COMPARED = ("code", "prose", "c")  # the corpora every chapter's bodies come from ("shuffled" is code's tokens)
MAX_EPOCHS_FULL = 4.0  # a full body reads each unique token at most this many times (checked by `plan`)


@dataclass(frozen=True)
class PretrainConfig:
    domain: str  # a decoupling.data domain: "code", "prose", "c" (portable), "go", "bible_en" (Debian), "shuffled"
    model: ModelConfig = field(default_factory=lambda: ModelConfig(n_layer=2, n_head=4, d_model=64, block_size=64))
    steps: int = 200  # optimizer steps; each sees batch_size·block_size tokens
    batch_size: int = 16
    lr: float = 3e-3  # small models take large rates (Kaplan et al. 2020, eq. D.1 gives ~1.6e-3 at 150k)
    corpus: str = "smoke"  # which corpora: "smoke" (decoupling.data) or "full" (decoupling.data.full)
    eval_tokens: int = 32_768  # held out: the tokens right after the training tokens (same count per source)
    eval_every: int = 0  # held-out loss every N steps (the curve that shows whether it still falls); 0 = end
    eval_windows: int = 64  # evenly spaced held-out windows of block_size tokens per evaluation
    data_sha: str = ""  # corpus "full": the full corpora's manifest hash (set by `config`): new data retrains
    seed: int = 0  # model init and window order


# smoke: 4 bodies (code, prose, c, shuffled) in ~40 s on 2 CPU cores (one thread each), every one except the
# shuffled control below its corpus's unigram entropy. 600 steps of 8 windows: at a fixed number of tokens,
# more and smaller steps lowered the held-out loss of these tiny models most; lr 1e-2 beat 3e-3 and 6e-3.
SMOKE = PretrainConfig(domain="code", steps=320, batch_size=8, lr=1e-2, eval_every=80)
# full: `mini` (4 layers, d=128, N = 793k non-embedding parameters), 500 steps of 32 windows of 128 tokens
# = 2.0M token positions, a fifth of an epoch of each ~10M-token corpus; 12 full bodies are declared (four
# sources x three seeds), so a body's minutes count twelve times. A 1000-step pilot (code, seed 0, bf16)
# read 6.03, 5.23, 4.83, 4.65 bits/token held out after 250, 500, 750, 1000 steps against the corpus's
# unigram 9.04: half the steps keep most of the drop below unigram at half the cost. Every body must end
# well below its corpus's unigram entropy (the bodies-learned check); the shuffled control cannot.
FULL = PretrainConfig(domain="code", model=ModelConfig(n_layer=4, n_head=4, d_model=128, block_size=128),
                      steps=500, batch_size=32, lr=3e-3, corpus="full", eval_tokens=131_072, eval_every=125,
                      eval_windows=128)
PRETRAIN = {"smoke": SMOKE, "full": FULL}  # `domain`, `seed` (and `data_sha`) are set per body by `config`
PRESETS = {"pretrain": PRETRAIN}  # experiment function -> {profile: config}


def config(profile: str, domain: str, seed: int = 0) -> PretrainConfig:
    from decoupling.profiles import preset
    cfg = preset(PRETRAIN, profile, domain=domain, seed=seed)
    if cfg.corpus == "full" and not cfg.data_sha:  # the smoke data's hash is in every key already
        # Only where the full corpora are prepared (`decoupling data --profile full`, which `make book
        # PROFILE=full` runs first): a config is built whenever a module is imported (computers' presets
        # hold a full body), and importing must never start a 90 MB download.
        from decoupling.data import full
        if full.read_full_manifest() is not None:
            from decoupling import data
            cfg = dataclasses.replace(cfg, data_sha=data.manifest_hash(portable=True, profile="full"))
    return cfg


def unique_tokens(cfg: PretrainConfig) -> int:
    """The rule that makes sources comparable: every body trains on this many unique tokens — the
    smallest of the COMPARED corpora (at cfg.corpus), less the held-out tokens."""
    from decoupling import data
    return min(data.n_tokens(d, cfg.corpus) for d in COMPARED) - cfg.eval_tokens


def plan(cfg: PretrainConfig) -> dict:
    """What a body reads, without training: token positions seen, unique tokens, epochs."""
    seen = cfg.steps * cfg.batch_size * cfg.model.block_size
    u = unique_tokens(cfg)
    return {"domain": cfg.domain, "corpus": cfg.corpus, "steps": cfg.steps, "tokens_seen": seen,
            "unique_tokens": u, "epochs": seen / u, "eval_tokens": cfg.eval_tokens}


def unigram_bits(train_ids, eval_ids, vocab: int) -> tuple[float, float]:
    """(entropy of the training tokens' unigram distribution, cross-entropy of the held-out tokens under it
    with add-½ smoothing), in bits/token: the loss of a model that learned token frequencies and nothing
    else — the bar a body must clear to have learned anything about sequences."""
    import numpy as np
    counts = np.bincount(np.asarray(train_ids), minlength=vocab).astype(np.float64)
    p = counts / counts.sum()
    nz = p[p > 0]
    entropy = float(-(nz * np.log2(nz)).sum())
    q = (counts + 0.5) / (counts.sum() + 0.5 * vocab)
    return entropy, float(-np.log2(q[np.asarray(eval_ids)]).mean())


def pretrain(cfg: PretrainConfig, out_dir: Path) -> dict:
    """Train a fresh LM on cfg.domain and save it to out_dir (safetensors). Returns the cost and loss."""
    from decoupling import data
    from decoupling.core import models, train
    from decoupling.core.device import cpu_threads
    u = unique_tokens(cfg)
    ids = data.token_ids(cfg.domain, max_tokens=u + cfg.eval_tokens, profile=cfg.corpus)
    if len(ids) < u + cfg.eval_tokens:  # a Debian domain shorter than the compared corpora
        raise ValueError(f"{cfg.domain!r} has {len(ids):,} tokens at {cfg.corpus}; the bodies need "
                         f"{u + cfg.eval_tokens:,}")
    train_ids, eval_ids = ids[:u], ids[u:]
    lm = models.build_lm(cfg.model, seed=cfg.seed)
    tc = train.TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                           eval_every=cfg.eval_every, eval_windows=cfg.eval_windows)
    with cpu_threads(1):  # tiny models train faster on one thread (and two bodies can share two cores)
        res = train.train_lm(lm, train_ids, tc, eval_tokens=eval_ids, desc=f"pretrain {cfg.domain}")
    models.save(lm.cpu(), out_dir / "model")
    keep = ("eval_loss_nats", "eval_bits_per_token", "tokens", "tokens_per_s", "wall_s", "flops", "mfu")
    out = {k: res[k] for k in keep if k in res}
    losses = res.get("loss", [])
    stride = max(1, len(losses) // 100)
    out["loss_curve"] = [[i, float(v)] for i, v in list(enumerate(losses))[::stride]]
    out["heldout_curve"] = [[int(s), float(v) / math.log(2)] for s, v in res["eval"]]  # [step, bits/token]
    c = out["heldout_curve"]
    # still learning when it stopped: the held-out loss fell over the last eval interval
    out["heldout_still_falling"] = len(c) >= 2 and c[-1][1] < c[-2][1]
    out["heldout_last_drop_bits"] = c[-2][1] - c[-1][1] if len(c) >= 2 else None
    out["non_embedding_params"] = models.non_embedding_params(cfg.model)
    h, h_eval = unigram_bits(train_ids.numpy(), eval_ids.numpy(), cfg.model.vocab_size)
    p = plan(cfg)
    out.update(tokens_seen=p["tokens_seen"], unique_tokens=u, epochs=p["epochs"], eval_tokens=len(eval_ids),
               unigram_entropy_bits=h, unigram_heldout_bits=h_eval, corpus=cfg.corpus,
               corpus_tokens=data.n_tokens(cfg.domain, cfg.corpus))
    out["below_unigram_bits"] = h - out["eval_bits_per_token"]  # > 0: it learned more than token frequencies
    return out


def body(cfg: PretrainConfig, profile: str) -> tuple[Path, dict]:
    """(checkpoint dir for models.load_lm, pretraining result) — trained at most once per config."""
    from decoupling.pipeline import store
    d = store.artifact(pretrain, cfg, profile=profile)
    return d / "model", json.loads((d / "result.json").read_text())["result"]


def card(res: dict) -> dict:
    """A body's card for a chapter: what it read and how well it predicts held-out text."""
    keys = ("corpus", "tokens_seen", "unique_tokens", "epochs", "eval_bits_per_token", "unigram_entropy_bits",
            "unigram_heldout_bits", "heldout_still_falling", "flops", "wall_s")
    return {k: res.get(k) for k in keys}


def describe(cfg: PretrainConfig) -> dict:
    return dataclasses.asdict(cfg)
