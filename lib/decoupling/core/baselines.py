"""A competent model with no pretraining, coded under the same prequential protocol as the pretrained ones.

ΔL against a random init (θ0) says what the pretrained weights carry; a reader also asks the practical
question: does the pretrained model beat what one would fit without any pretraining? For text that is
TF-IDF over word 1–2-grams and character 2–4-grams with a logistic regression (a strong classical text
classifier), coded on the same examples, in the same order, with the same blocks, and the same rule: two
settings of the regularisation C, the block coded by the one whose code for the previous block was
shorter, log2(2) bits charged per block (`prequential.select_prequential`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from decoupling.core import measures
from decoupling.core.prequential import select_prequential

CS = (1.0, 10.0)  # inverse regularisation strengths: the two candidates chosen among per block
FLOOR = 1e-3  # mixture weight of the uniform code (see `_proba`)


def _fit(texts: Sequence[str], y: np.ndarray, C: float):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union
    features = make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                          TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True))
    return make_pipeline(features, LogisticRegression(C=C, max_iter=2000)).fit(list(texts), y)


def _proba(clf, texts: Sequence[str], K: int) -> np.ndarray:
    """Probabilities over all K classes. A class absent from the blocks seen so far gets its share of a
    FLOOR mixture with the uniform code: otherwise the reference would pay infinite bits for a class it has
    not met yet (the neural heads always predict all K). The mixture costs at most log2(1/(1−FLOOR)) ≈ 0.0014
    bits per label."""
    p = np.zeros((len(texts), K))
    p[:, clf.classes_] = clf.predict_proba(list(texts))
    return (1 - FLOOR) * p + FLOOR / K


def tfidf_prequential(train_texts: Sequence[str], train_y, orders: Sequence[np.ndarray], test_texts: Sequence[str],
                      test_y, K: int, ends: Sequence[int]) -> dict:
    """For each order (one per seed: the training rows in the order they are sent), the prequential code
    length of their labels under TF-IDF + logistic regression, and the test-set bits of the fit that coded
    each block (a learning curve). Lists over orders: L, block_bits, choices, test_bits."""
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    out: dict = {"L": [], "block_bits": [], "choices": [], "test_bits": [], "hps": [f"C={c:g}" for c in CS]}
    for order in orders:
        order = np.asarray(order)
        fits: dict = {}

        def fit_predict(c, tr, te, order=order, fits=fits):
            fits[len(tr), c] = clf = _fit([train_texts[i] for i in order[tr]], train_y[order[tr]], CS[c])
            return _proba(clf, [train_texts[i] for i in order[te]], K)

        res = select_prequential(fit_predict, train_y[order], K, ends, len(CS))
        out["L"].append(res["total_bits"])
        out["block_bits"].append(res["block_bits"])
        out["choices"].append(res["choices"])
        out["test_bits"].append([measures.log_loss_bits(_proba(fits[e, c], test_texts, K), test_y)
                                 for e, c in zip(ends[:-1], res["choices"])])
    return out
