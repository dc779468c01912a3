"""No target text is in a pretraining corpus: every text task (train and test rows) against every corpus
prepared here (the smoke corpora, the optional Debian ones, and the full corpora when they were fetched),
by 10-token windows of the shared tokenizer (decoupling.data.overlap).

A text fails when most of its windows (overlap.MOSTLY) occur in a corpus: then a body could have learned
it by heart and ΔL would partly measure memorisation. Single shared windows are boilerplate (they occur
between unrelated corpora too: the Bible and movie reviews) and are reported, not failed.
"""
from __future__ import annotations

import numpy as np
import pytest

from decoupling import data
from decoupling.data import full, overlap

TEXT_TASKS = [t for t in data.TASKS if not t.startswith("digits/")]


def _corpora() -> list[tuple[str, str]]:
    out = [("smoke", d) for d in data.available_domains() if d != "shuffled"]  # shuffled: code's tokens
    if full.read_full_manifest():
        out += [("full", d) for d in full.FULL_DOMAINS]
    return out


@pytest.fixture(scope="module")
def targets():
    data.prepare(progress=False)
    texts = {}
    for t in TEXT_TASKS:
        a = data.arrays(t)
        texts[t] = a["train"][0] + a["test"][0]
    return texts


def test_overlap_finds_a_copied_text():
    """The detector itself: a text inside a stream is found, a text from elsewhere is not."""
    tok = data.tokenizer()
    inside = "Return the list of header fields of the message, in the order they were added to it."
    other = "A completely different sentence about rivers, mountains and the weather in spring."
    stream = np.asarray(overlap.encode(tok, ["Some preamble. " + inside + " And a tail."])[0])
    corpus = overlap.corpus_hashes(stream)
    fr = overlap.overlap([inside, other, "short"], corpus, tok)
    assert fr[0] > 0.8 and fr[1] == 0 and fr[2] == 0
    assert overlap.corpus_hashes(stream, chunk=7).tolist() == corpus.tolist()  # chunked = whole


@pytest.mark.parametrize("profile,domain", _corpora())
def test_no_target_text_is_in_a_corpus(targets, profile, domain):
    tok = data.tokenizer()
    corpus = overlap.corpus_hashes(np.asarray(data.token_ids(domain, profile=profile)))
    bad, seen = [], []
    for task, texts in targets.items():
        fr = overlap.overlap(texts, corpus, tok)
        seen.append(f"{task}: {(fr > 0).sum()} texts share a window")
        for i in np.flatnonzero(fr >= overlap.MOSTLY)[:3]:
            bad.append(f"{task} row {i} ({fr[i]:.0%} of its windows): {texts[i][:80]!r}")
        if (fr >= overlap.MOSTLY).sum() > 3:
            bad.append(f"{task}: {(fr >= overlap.MOSTLY).sum()} texts in all")
    print(f"{profile}/{domain}: " + "; ".join(seen))
    assert not bad, f"target texts found in the {profile} corpus {domain!r}:\n" + "\n".join(bad)


def test_held_out_packages_are_out_of_the_corpora():
    """The rule itself, in the records: the held-out packages are named in the corpora's notes."""
    m = data.read_manifest()
    for d in ("code", "prose"):
        assert all(p in m["corpora"][d]["note"] for p in data.HELD_OUT), d
    for t in ("code/module", "prose/topic"):
        assert m["tasks"][t]["label_names"] == list(data.HELD_OUT)
