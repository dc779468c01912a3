"""Decontamination: does any target text occur in a pretraining corpus? Token n-gram overlap, exactly.

A target text is contaminated when most (MOSTLY) of its windows of WINDOW consecutive tokens (the shared
tokenizer) occur in a corpus's token stream. Long-n-gram overlap is how the contamination of language-model
pretraining data is measured (GPT-3 used 13-gram overlap, Brown et al. 2020, appendix C; Llama 2 counted
tokens inside matches of at least 10 tokens, Touvron et al. 2023, appendix A.6); we take 10 tokens.

Windows are compared as 64-bit polynomial hashes of their token ids (wrap-around arithmetic in numpy): two
different windows collide with probability ~2⁻⁶⁴ per pair, ~10⁻⁵ over every pair this book compares.
Used by tests/test_decontamination.py and by `decoupling.data.preparation`, which records the result.
"""
from __future__ import annotations

import numpy as np

WINDOW = 10
# A target text counts as contaminated when at least this share of its windows occur in a corpus. One
# shared window cannot be the rule: 10 tokens are 3-6 words, and boilerplate ("raise ValueError(...",
# license lines, "in front of your eyes.") recurs across unrelated corpora — the Bible shares a window
# with a few movie reviews, Go's sources with stdlib snippets. Touvron et al. 2023 (appendix A.6) grade
# samples by the share of their tokens inside matches (clean < 20%, dirty > 80%); we refuse the majority.
MOSTLY = 0.5
_P = np.uint64(0x9E3779B97F4A7C15)  # an odd 64-bit multiplier (the golden-ratio constant)


def window_hashes(ids, n: int = WINDOW) -> np.ndarray:
    """Hashes of every window of n consecutive ids (len(ids) - n + 1 of them; none if shorter)."""
    ids = np.asarray(ids, dtype=np.uint64)
    m = ids.size - n + 1
    if m <= 0:
        return np.zeros(0, np.uint64)
    h = np.zeros(m, np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * _P + ids[k:k + m] + np.uint64(1)  # +1: a window of pad ids (0) still hashes non-zero
    return h


def corpus_hashes(ids, n: int = WINDOW, chunk: int = 1 << 24) -> np.ndarray:
    """The sorted distinct window hashes of a token stream (in chunks that overlap by n - 1 tokens)."""
    parts = [np.unique(window_hashes(ids[i:i + chunk + n - 1], n)) for i in range(0, max(1, len(ids)), chunk)]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)


def encode(tok, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, no special tokens: `tok` a transformers tokenizer or a `tokenizers.Tokenizer`."""
    if hasattr(tok, "encode_batch"):
        return [e.ids for e in tok.encode_batch(list(texts), add_special_tokens=False)]
    return tok(list(texts), add_special_tokens=False)["input_ids"]


def in_sorted(h: np.ndarray, sorted_hashes: np.ndarray) -> np.ndarray:
    """Boolean mask: which of h occur in sorted_hashes (binary search, no copy of the corpus side)."""
    if not sorted_hashes.size:
        return np.zeros(h.shape, bool)
    j = np.minimum(np.searchsorted(sorted_hashes, h), sorted_hashes.size - 1)
    return sorted_hashes[j] == h


def overlap(texts: list[str], corpus: np.ndarray, tok, n: int = WINDOW) -> np.ndarray:
    """Per text, the fraction of its n-token windows found in `corpus` (sorted distinct hashes, as
    `corpus_hashes` returns); 0 for a text shorter than n tokens. A text with any fraction > 0 is a hit."""
    hs = [window_hashes(x, n) for x in encode(tok, texts)]
    owner = np.repeat(np.arange(len(hs)), [h.size for h in hs])
    found = in_sorted(np.concatenate(hs) if hs else np.zeros(0, np.uint64), corpus)
    total = np.bincount(owner, minlength=len(hs))
    return np.bincount(owner, weights=found, minlength=len(hs)) / np.maximum(total, 1)
