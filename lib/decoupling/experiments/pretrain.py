"""Pretrained bodies, shared by the chapters: one decoder LM per source domain, trained once and cached.

The generality chapter fine-tunes these bodies on many targets; the computers chapter charges their
pretraining FLOPs against the fine-tunes they save. Both ask `body(cfg, profile)` and get the same
checkpoint from the results store (`store.artifact`): a safetensors directory plus result.json with the
pretraining cost (tokens, FLOPs per PaLM appendix B, wall time) and the held-out loss in bits/token.

Every domain is trained with the same model, the same number of steps and the same window order (the
seed): the sources differ only in what text they saw.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from decoupling.core.models import ModelConfig


@dataclass(frozen=True)
class PretrainConfig:
    domain: str  # a decoupling.data domain: "code", "prose", "c" (portable), "go", "bible_en" (Debian), "shuffled"
    model: ModelConfig = field(default_factory=lambda: ModelConfig(n_layer=2, n_head=4, d_model=64, block_size=64))
    steps: int = 200  # optimizer steps; each sees batch_size·block_size tokens
    batch_size: int = 16
    lr: float = 3e-3  # small models take large rates (Kaplan et al. 2020, eq. D.1 gives ~1.6e-3 at 150k)
    max_tokens: int | None = 2_000_000  # corpus prefix used (the document order is already random)
    eval_frac: float = 0.05  # the stream's tail is held out for the bits/token figure
    seed: int = 0  # model init and window order


# smoke: ~10 s per body on 2 CPU cores (~50k training tokens seen); full: a real pretraining run on a GPU.
SMOKE = PretrainConfig(domain="code", steps=160, batch_size=16)
FULL = PretrainConfig(domain="code", model=ModelConfig(n_layer=6, n_head=6, d_model=192, block_size=128),
                      steps=4000, batch_size=64, lr=1.5e-3, max_tokens=None)
PRETRAIN = {"smoke": SMOKE, "full": FULL}  # `domain` and `seed` are set per body by `config`
PRESETS = {"pretrain": PRETRAIN}  # experiment function -> {profile: config}


def config(profile: str, domain: str, seed: int = 0) -> PretrainConfig:
    from decoupling.profiles import preset
    return preset(PRETRAIN, profile, domain=domain, seed=seed)


def pretrain(cfg: PretrainConfig, out_dir: Path) -> dict:
    """Train a fresh LM on cfg.domain and save it to out_dir (safetensors). Returns the cost and loss."""
    from decoupling import data
    from decoupling.core import models, train
    ids = data.token_ids(cfg.domain, max_tokens=cfg.max_tokens)
    cut = int(len(ids) * (1 - cfg.eval_frac))
    lm = models.build_lm(cfg.model, seed=cfg.seed)
    tc = train.TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed)
    res = train.train_lm(lm, ids[:cut], tc, eval_tokens=ids[cut:], desc=f"pretrain {cfg.domain}")
    models.save(lm.cpu(), out_dir / "model")
    keep = ("eval_loss_nats", "eval_bits_per_token", "tokens", "tokens_per_s", "wall_s", "flops", "mfu")
    out = {k: res[k] for k in keep if k in res}
    losses = res.get("loss", [])
    stride = max(1, len(losses) // 100)
    out["loss_curve"] = [[i, float(v)] for i, v in list(enumerate(losses))[::stride]]
    out["non_embedding_params"] = models.non_embedding_params(cfg.model)
    out["corpus_tokens"] = int(len(ids))
    return out


def body(cfg: PretrainConfig, profile: str) -> tuple[Path, dict]:
    """(checkpoint dir for models.load_lm, pretraining result) — trained at most once per config."""
    from decoupling.pipeline import store
    d = store.artifact(pretrain, cfg, profile=profile)
    return d / "model", json.loads((d / "result.json").read_text())["result"]


def describe(cfg: PretrainConfig) -> dict:
    return dataclasses.asdict(cfg)
