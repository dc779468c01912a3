"""The target tasks, cut from the sources into fixed train/test splits and saved as `datasets` DatasetDicts.

  sentiment/{movies,tweets,amazon,nyt}  VADER's human ratings (Hutto & Gilbert, ICWSM 2014): mean rating
                                        >= 0.5 positive, <= -0.5 negative, the rest dropped as neutral,
  code/module                           20-line windows of stdlib source -> which of CODE_PACKAGES,
  prose/topic                           a stdlib docstring -> which of CODE_PACKAGES it documents,
  digits/0-4, digits/5-9                sklearn's 8x8 digits, two 5-class tasks (Alpaydin & Kaynak 1998).

Each task is stored with `DatasetDict.save_to_disk` under DATA_DIR/tasks/<slug>/dd (Arrow files that
decoupling.data.read memory-maps back) beside a meta.json with its sizes, majority baseline and sha256.
"""
from __future__ import annotations

import hashlib
import html
import time

import decoupling.data.sources as sources  # not `from decoupling.data import`: that imports the package
from decoupling.data.layout import (DATA_VERSION, HELD_OUT, SENTIMENT_FILES, SPLIT_SEED, TASKS, TEST_FRACTION,
                                    artifact_meta, data_dir, say, staging, task_dir)
from decoupling.files import canonical, write_json

# Big stdlib packages used as labels by "code/module" and "prose/topic"; held out of every corpus.
CODE_PACKAGES = HELD_OUT
# Code snippets: non-overlapping windows of this many lines; windows with fewer non-blank lines are dropped.
SNIPPET_LINES, SNIPPET_MIN_LINES = 20, 5
DOCSTRING_MIN_CHARS = 40
SENTIMENT_MIN_ABS = 0.5  # mean human rating in [-4, 4]; |score| < 0.5 is treated as neutral and dropped


def _decode(b: bytes) -> tuple[str, str]:
    """The files mix encodings: the movie snippets are UTF-8, others ASCII; cp1252 as the fallback."""
    try:
        return b.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return b.decode("cp1252", errors="replace"), "cp1252"


def _sentiment_rows(name: str) -> tuple[list[str], list[int], list[str], dict]:
    b = (data_dir() / "raw" / "vader" / SENTIMENT_FILES[name]).read_bytes()
    text, enc = _decode(b)
    texts, labels, groups, seen = [], [], [], set()
    n_lines = n_neutral = n_dup = 0
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        n_lines += 1
        sid, score, t = parts[0].strip(), float(parts[1]), html.unescape("\t".join(parts[2:]).strip())
        if abs(score) < SENTIMENT_MIN_ABS:
            n_neutral += 1
            continue
        if t in seen:  # the same sentence twice would straddle train and test
            n_dup += 1
            continue
        seen.add(t)
        texts.append(t)
        labels.append(int(score > 0))
        groups.append(sid.split("_")[0] if "_" in sid else sid)  # amazon/nyt ids are <review>_<sentence>
    info = {"encoding": enc, "lines": n_lines, "dropped_neutral": n_neutral, "dropped_duplicates": n_dup}
    return texts, labels, groups, info


def _code_rows(std: dict) -> tuple[list[str], list[int]]:
    """Non-overlapping 20-line windows of the raw stdlib files of CODE_PACKAGES -> package index."""
    texts, labels, seen = [], [], set()
    for f in std["files"]:
        pkg = f["rel"].split("/")[0]
        if pkg not in CODE_PACKAGES:
            continue
        lines = f["raw"].split("\n")
        for i in range(0, len(lines), SNIPPET_LINES):
            w = "\n".join(lines[i:i + SNIPPET_LINES]).strip("\n")
            if sum(1 for ln in w.split("\n") if ln.strip()) < SNIPPET_MIN_LINES or w in seen:
                continue
            seen.add(w)
            texts.append(w)
            labels.append(CODE_PACKAGES.index(pkg))
    return texts, labels


def _prose_rows(std: dict) -> tuple[list[str], list[int]]:
    """Cleaned docstrings (>= 40 chars) of CODE_PACKAGES -> package index; a docstring found in two packages
    is dropped (its label would be ambiguous), repeats within one package are kept once."""
    where: dict[str, set] = {}
    for f in std["files"]:
        pkg = f["rel"].split("/")[0]
        if pkg in CODE_PACKAGES:
            for d in f["docs"]:
                if len(d) >= DOCSTRING_MIN_CHARS:
                    where.setdefault(d, set()).add(pkg)
    rows = sorted((d, CODE_PACKAGES.index(next(iter(p)))) for d, p in where.items() if len(p) == 1)
    return [r[0] for r in rows], [r[1] for r in rows]


def _decontaminate(texts: list[str], labels: list[int]) -> tuple[list[str], list[int], int]:
    """Drop the rows whose text is mostly (>= overlap.MOSTLY of its 10-token windows) in a portable corpus.
    The held-out packages are out of every corpus, but a few of their docstrings and code blocks are copied
    verbatim into other stdlib modules (mailbox repeats email.message's docstrings): those rows go."""
    import numpy as np

    from tokenizers import Tokenizer

    import decoupling.data.overlap as overlap
    from decoupling.data.layout import PORTABLE_DOMAINS
    tok = Tokenizer.from_file(str(data_dir() / "tokenizer" / "tokenizer.json"))  # inside prepare(): no readers
    keep = np.ones(len(texts), bool)
    for dom in PORTABLE_DOMAINS:
        corpus = overlap.corpus_hashes(np.load(data_dir() / "tokens" / dom / "ids.npy"))
        keep &= overlap.overlap(texts, corpus, tok) < overlap.MOSTLY
    return [t for t, k in zip(texts, keep) if k], [y for y, k in zip(labels, keep) if k], int((~keep).sum())


def _split(labels: list[int], groups: list[str] | None = None) -> tuple[list[int], list[int]]:
    """Fixed, seeded, stratified 80/20 split. With groups (sentences of one Amazon review or NYT editorial)
    whole groups go to one side, so test sentences never share a document with training sentences."""
    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    idx = np.arange(len(labels))
    if groups is not None and len(set(groups)) < len(groups):
        folds = StratifiedGroupKFold(n_splits=round(1 / TEST_FRACTION), shuffle=True, random_state=SPLIT_SEED)
        train, test = next(folds.split(idx, labels, groups))
        train = train[np.random.default_rng(SPLIT_SEED).permutation(train.size)]
    else:
        train, test = train_test_split(idx, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED)
    return train.tolist(), test.tolist()


def _save_task(name: str, columns: dict, label_names: list[str], source: dict, groups=None) -> dict:
    import datasets
    import numpy as np

    labels = columns["label"]
    train, test = _split(labels, groups)
    feats = {"label": datasets.ClassLabel(names=label_names)}
    if "text" in columns:
        feats["text"] = datasets.Value("string")
    if "pixels" in columns:
        feats["pixels"] = datasets.List(datasets.Value("float32"), length=64)
    features = datasets.Features(feats)
    dd = datasets.DatasetDict({
        split: datasets.Dataset.from_dict({k: [v[i] for i in ix] for k, v in columns.items()}, features=features)
        for split, ix in (("train", train), ("test", test))})
    counts = np.bincount(np.asarray(labels)[train], minlength=len(label_names))
    majority = float(np.mean(np.asarray(labels)[test] == counts.argmax()))
    h = hashlib.sha256()
    for split, ix in (("train", train), ("test", test)):
        h.update(canonical({k: [v[i] for i in ix] for k, v in columns.items()}).encode())
    with staging(task_dir(name)) as tmp:
        bars = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()  # eight tiny saves: our one line per task is enough
        try:
            dd.save_to_disk(str(tmp / "dd"))
        finally:
            if bars:
                datasets.enable_progress_bars()
        meta = {"data_version": DATA_VERSION, "name": name, "label_names": label_names,
                "n_train": len(train), "n_test": len(test), "columns": sorted(columns),
                "train_counts": counts.tolist(), "majority_test_acc": round(majority, 4),
                "sha256": h.hexdigest(), "source": source,
                "split": f"seeded stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} (seed {SPLIT_SEED})"
                         + (", grouped by document" if groups is not None and len(set(groups)) < len(groups)
                            else "")}
        write_json(tmp / "meta.json", meta)
    return meta


def build_tasks(std: dict | None, progress: bool) -> dict:
    """Build every task not yet prepared (`std`: the stdlib scan, if the corpora were just built from it)."""
    t0 = time.time()
    metas = {}
    todo = [n for n in TASKS if not artifact_meta(task_dir(n))]
    if any(n.startswith("sentiment/") for n in todo):
        sources.fetch_vader(progress)
    if any(n in ("code/module", "prose/topic") for n in todo) and std is None:
        std = sources.scan_stdlib()
    for name in todo:
        if name.startswith("sentiment/"):
            texts, labels, groups, info = _sentiment_rows(name)
            src = {"from": "pypi-vaderSentiment", "file": SENTIMENT_FILES[name], **info,
                   "rule": f"mean rating >= {SENTIMENT_MIN_ABS} -> pos, <= -{SENTIMENT_MIN_ABS} -> neg"}
            metas[name] = _save_task(name, {"text": texts, "label": labels}, ["neg", "pos"], src, groups)
        elif name == "code/module":
            texts, labels, dropped = _decontaminate(*_code_rows(std))
            metas[name] = _save_task(name, {"text": texts, "label": labels}, list(CODE_PACKAGES), {
                "from": "cpython-stdlib", "rule": f"{SNIPPET_LINES}-line windows of raw source (comments and "
                "docstrings kept) -> top-level package; these packages are held out of every corpus",
                "dropped_found_in_a_corpus": dropped})
        elif name == "prose/topic":
            texts, labels, dropped = _decontaminate(*_prose_rows(std))
            metas[name] = _save_task(name, {"text": texts, "label": labels}, list(CODE_PACKAGES), {
                "from": "cpython-stdlib", "rule": "cleaned docstring -> top-level package it documents; "
                "these packages are held out of every corpus", "dropped_found_in_a_corpus": dropped})
        elif name.startswith("digits/"):
            from sklearn.datasets import load_digits
            d = load_digits()
            lo = int(name.split("/")[1].split("-")[0])
            keep = [i for i, y in enumerate(d.target) if lo <= y < lo + 5]
            cols = {"pixels": [(d.data[i] / 16.0).astype("float32").tolist() for i in keep],
                    "label": [int(d.target[i]) - lo for i in keep]}
            metas[name] = _save_task(name, cols, [str(lo + k) for k in range(5)], {
                "from": "sklearn-digits", "rule": f"8x8 images of digits {lo}-{lo + 4}, pixels / 16, "
                                                  f"label = digit - {lo}"})
        say(f"[data] task {name:17s} train {metas[name]['n_train']:5d}  test {metas[name]['n_test']:4d}  "
            f"majority {metas[name]['majority_test_acc']:.2f}", progress)
    if todo:
        say(f"[data] tasks built ({time.time() - t0:.1f} s)", progress)
    return metas

