"""A competent model with no pretraining, coded under the same prequential protocol as the pretrained ones.

ΔL against a random init (θ0) says what the pretrained weights carry; a reader also asks the practical
question: does the pretrained model beat what one would fit without any pretraining? For text that is
TF-IDF over word 1–2-grams and character 2–4-grams with a logistic regression (a strong classical text
classifier); for images, standardised pixels with a logistic regression. Either is coded on the same
examples, in the same order, with the same blocks, and the same rule: settings of the regularisation C
(`CS`, or the caller's `cs`), the block coded by the one whose code for the previous block was shorter,
log2(#settings) bits charged per block (`prequential.select_prequential`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from decoupling.core import measures
from decoupling.core.prequential import select_prequential

CS = (1.0, 10.0)  # inverse regularisation strengths chosen among per block (a caller may pass its own `cs`)
FLOOR = 1e-3  # mixture weight of the uniform code (see `_proba`)


def _fit(texts: Sequence[str], y: np.ndarray, C: float):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union
    features = make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                          TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True))
    return make_pipeline(features, LogisticRegression(C=C, max_iter=2000)).fit(list(texts), y)


def _fit_pixels(x: np.ndarray, y: np.ndarray, C: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000)).fit(x, y)


def _rows(x, idx):
    """The rows idx of a feature array or of a list of texts."""
    return x[idx] if isinstance(x, np.ndarray) else [x[i] for i in idx]


def _proba(clf, texts, K: int) -> np.ndarray:
    """Probabilities over all K classes. A class absent from the blocks seen so far gets its share of a
    FLOOR mixture with the uniform code: otherwise the reference would pay infinite bits for a class it has
    not met yet (the neural heads always predict all K). The mixture costs at most log2(1/(1−FLOOR)) ≈ 0.0014
    bits per label."""
    p = np.zeros((len(texts), K))
    p[:, clf.classes_] = clf.predict_proba(texts if isinstance(texts, np.ndarray) else list(texts))
    return (1 - FLOOR) * p + FLOOR / K


def tfidf_prequential(train_texts: Sequence[str], train_y, orders: Sequence[np.ndarray], test_texts: Sequence[str],
                      test_y, K: int, ends: Sequence[int], test_of: Sequence[np.ndarray] | None = None,
                      cs: Sequence[float] = CS) -> dict:
    """For each order (one per seed: the training rows in the order they are sent), the prequential code
    length of their labels under TF-IDF + logistic regression, and the test-set bits of the fit that coded
    each block (a learning curve). Lists over orders: L, L_config (each C's code length as if it had coded
    every block), block_bits, choices, test_bits. `test_of`: for
    each order, the positions in test_texts / test_y of that run's own test rows (None: all of them).
    `cs`: the values of C chosen among (candidate 0 codes the first block); `hps` names them."""
    return _coded(_fit, train_texts, train_y, orders, test_texts, test_y, K, ends, test_of, cs)


def pixels_prequential(train_x: np.ndarray, train_y, orders: Sequence[np.ndarray], test_x: np.ndarray, test_y,
                       K: int, ends: Sequence[int], test_of: Sequence[np.ndarray] | None = None,
                       cs: Sequence[float] = CS) -> dict:
    """`tfidf_prequential` for images: standardised pixels + logistic regression (the digits chapter's
    reference), the same outputs."""
    return _coded(_fit_pixels, np.asarray(train_x), train_y, orders, np.asarray(test_x), test_y, K, ends, test_of,
                  cs)


def _coded(fit, train_x, train_y, orders: Sequence[np.ndarray], test_x_all, test_y_all, K: int,
           ends: Sequence[int], test_of=None, cs: Sequence[float] = CS) -> dict:
    train_y, test_y_all = np.asarray(train_y), np.asarray(test_y_all)
    cs = tuple(cs)
    out: dict = {"L": [], "L_config": [], "block_bits": [], "choices": [], "test_bits": [],
                 "hps": [f"C={c:g}" for c in cs]}
    for i, order in enumerate(orders):
        order = np.asarray(order)
        rows = np.arange(len(test_y_all)) if test_of is None else np.asarray(test_of[i])
        test_x, test_y = _rows(test_x_all, rows), test_y_all[rows]
        fits: dict = {}

        def fit_predict(c, tr, te, order=order, fits=fits):
            fits[len(tr), c] = clf = fit(_rows(train_x, order[tr]), train_y[order[tr]], cs[c])
            return _proba(clf, _rows(train_x, order[te]), K)

        res = select_prequential(fit_predict, train_y[order], K, ends, len(cs))
        out["L"].append(res["total_bits"])
        out["L_config"].append(res["config_bits"])
        out["block_bits"].append(res["block_bits"])
        out["choices"].append(res["choices"])
        out["test_bits"].append([measures.log_loss_bits(_proba(fits[e, c], test_x, K), test_y)
                                 for e, c in zip(ends[:-1], res["choices"])])
    return out
