"""Frozen features from any `transformers` encoder or decoder: the one embedding function of the library.

A linear probe on frozen features costs one forward pass per text, so for probes the encoder pass is the
whole bill (the zoo experiment makes dozens of them). Three things keep it at the speed of the machine:

- tokenization happens once, for all texts, with truncation to `max_length`;
- texts are run in order of token length, so that each batch pads to texts of about its own length (a
  batch pads to its longest member: on short-text targets ordering halves the tokens read), and the
  features are put back in the order asked for;
- on a CPU the pass uses every core it is given (`threads`), since one embedding job usually runs alone.

`cut` makes inputs equal across models: each text is cut once to the longest whole-word prefix that every
tokenizer given reads within a token budget, so that several encoders (and a TF-IDF reference given the same
strings) read exactly the same text, none of them truncating it again.

Pooling is the mean of the last hidden states over non-pad tokens, L2-normalised: what
sentence-transformers does for all-MiniLM-L6-v2 and all-mpnet-base-v2, and a common way to read a
decoder's states (for a causal model each position summarises the prefix up to it).

`features` caches an encoder's features by what decides its weights (a pretrained model's sha256, or a
random init's architecture and seed: `random_features`), the texts and the length: they are
deterministic, and every random twin is a whole pass, so `gain`, `score` and the zoo find them again
instead of recomputing.
Used by experiments.gain, experiments.zoo and experiments.generality (through models.embed_minilm).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .device import DEVICE, autocast, dtype_name


class PoolingError(ValueError):
    """An architecture whose base model gives no `last_hidden_state` to pool."""


def token_lengths(tokenizer, texts: Sequence[str], max_length: int) -> np.ndarray:
    """Tokens per text (special tokens included) after truncation to `max_length`."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    return np.array([len(ids) for ids in enc["input_ids"]], dtype=np.int64)


# ---------------------------------------------------------------------------------------------- equal inputs
def _special_count(tok) -> int:
    return len(tok("a")["input_ids"]) - len(tok("a", add_special_tokens=False)["input_ids"])


_WS = re.compile(r"\s")


def cut(texts: list[str], max_tokens: int, toks: list) -> tuple[list[str], np.ndarray]:
    """Each text cut to its longest whole-word prefix that every tokenizer in `toks` encodes in at most
    `max_tokens` tokens (special tokens included); and which texts were cut."""
    ends = np.array([len(t) for t in texts])
    for tok in toks:
        keep = max_tokens - _special_count(tok)
        enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
        for i, offs in enumerate(enc["offset_mapping"]):
            if len(offs) > keep:
                ends[i] = min(ends[i], offs[keep - 1][1] if keep > 0 else 0)
    out = []
    for t, e in zip(texts, ends):
        if e < len(t):
            # back to the last whitespace at or before the cut, so no word is split
            ws = [m.start() for m in _WS.finditer(t, 0, e + 1)]
            e = ws[-1] if ws else e
        out.append(t[:e].rstrip() if e < len(t) else t)
    # a prefix can tokenize differently at its end: drop whole words until every tokenizer agrees
    for _ in range(8):
        over = set()
        for tok in toks:
            lens = token_lengths(tok, out, 10 ** 6)
            over.update(np.flatnonzero(lens > max_tokens).tolist())
        if not over:
            break
        for i in over:
            ws = [m.start() for m in _WS.finditer(out[i])]
            out[i] = out[i][:ws[-1]].rstrip() if ws else out[i][: max(1, len(out[i]) // 2)]
    return out, np.array([o != t for o, t in zip(out, texts)])


@torch.no_grad()
def embed(model, tokenizer, texts: Sequence[str], max_length: int, batch_size: int = 32,
          normalize: bool = True, threads: int | None = None) -> np.ndarray:
    """(n, hidden) float32 mean-pooled features of `texts` under `model` (a base model: BertModel,
    MPNetModel, LlamaModel, GPT2Model…), in the order of `texts`."""
    texts = list(texts)
    hidden = int(getattr(model.config, "hidden_size", 0) or getattr(model.config, "n_embd", 0))
    if not texts:
        return np.zeros((0, hidden), np.float32)
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    ids = enc["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = np.argsort([len(x) for x in ids], kind="stable")
    model = model.to(DEVICE).eval()
    out = np.empty((len(texts), hidden), np.float32)
    with _threads(threads):
        for i in range(0, len(texts), batch_size):
            rows = order[i:i + batch_size]
            T = max(len(ids[r]) for r in rows)
            x = torch.full((len(rows), T), pad, dtype=torch.long)
            m = torch.zeros((len(rows), T), dtype=torch.long)
            for j, r in enumerate(rows):  # right padding, masked out of the attention and of the mean
                x[j, :len(ids[r])] = torch.as_tensor(ids[r])
                m[j, :len(ids[r])] = 1
            x, m = x.to(DEVICE), m.to(DEVICE)
            with autocast(model):
                res = model(input_ids=x, attention_mask=m)
            h = getattr(res, "last_hidden_state", None)
            if h is None:
                raise PoolingError(f"{type(model).__name__} returns no last_hidden_state to pool")
            h = h.float()  # (B, T, C)
            mf = m.unsqueeze(-1).float()  # (B, T, 1)
            e = (h * mf).sum(1) / mf.sum(1).clamp_min(1e-9)  # (B, C)
            if normalize:
                e = torch.nn.functional.normalize(e, dim=-1)
            out[rows] = e.cpu().numpy()
    return out


@contextlib.contextmanager
def _threads(n: int | None):
    """`n` intra-op threads for the pass (None: leave the process's setting alone)."""
    if n is None or DEVICE.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


WORKER_THREADS = "DECOUPLING_WORKER_THREADS"  # set by `decoupling compute --jobs N` in each of its workers


def all_cores() -> int:
    """The cores this process may use (what a pass that runs alone should take). A worker of `decoupling
    compute --jobs N` shares the cores with N - 1 others: it takes its share, or the passes oversubscribe
    the machine (two 2-thread encoder passes on 2 cores ran 2.5-15x slower than one thread each)."""
    if os.environ.get(WORKER_THREADS):
        return max(1, int(os.environ[WORKER_THREADS]))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------- cache
def texts_sha(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()


def features(identity: dict, texts: Sequence[str], max_length: int, build: Callable[[], object], tokenizer,
             cache_dir: Path | None, threads: int | None = None) -> np.ndarray:
    """Features of the encoder `build()` makes, cached on disk under `identity` (what decides its weights:
    a pretrained model's weights sha256, or a random init's architecture config and seed), the texts,
    `max_length`, the tokenizer, the process's compute dtype and the torch and transformers versions: the same encoder over the same
    texts is one pass, whoever asks for it, and a record recomputed after a change elsewhere in the
    library re-reads its features instead of re-running its encoders."""
    import transformers
    key = hashlib.sha256(json.dumps({
        **identity, "texts": texts_sha(texts), "max_length": max_length, "tokenizer": type(tokenizer).__name__,
        "vocab": len(tokenizer), "torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
        "pool": "mean-l2", "dtype": dtype_name()}, sort_keys=True, default=str).encode()).hexdigest()[:24]
    path = cache_dir / f"{key}.npy" if cache_dir is not None else None
    if path is not None and path.exists():
        try:
            f = np.load(path)
            if f.shape[0] == len(texts):
                return f
        except (OSError, ValueError):
            pass  # a damaged file is recomputed
    f = embed(build(), tokenizer, texts, max_length, threads=threads)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, f)
        os.replace(tmp, path)
    return f


def random_features(config, seed: int, texts: Sequence[str], max_length: int, build: Callable[[], object],
                    tokenizer, cache_dir: Path | None, threads: int | None = None) -> np.ndarray:
    """`features` of a random init drawn from `seed` with architecture `config`."""
    conf = config.to_dict() if hasattr(config, "to_dict") else str(config)
    return features({"config": conf, "seed": seed}, texts, max_length, build, tokenizer, cache_dir, threads)
