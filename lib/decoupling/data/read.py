"""Reading the prepared data: what experiments call (re-exported by `decoupling.data`).

  corpus(domain), documents(domain)    pretraining text (documents joined by "<|eos|>")
  token_ids(domain, max_tokens)        the same text as one token stream (torch.LongTensor); profile="full"
                                       reads the larger corpora of decoupling.data.full (fetched on first use)
  n_tokens(domain, profile)            a stream's length, from the manifest (nothing loaded)
  tokenizer()                          the shared byte-level BPE tokenizer (vocab 4096)
  task(name)                           a target task as a `datasets.DatasetDict` (train/test); the names
                                       of FULL_TASKS ("code/agents") read the full data step's tasks
  arrays(name), encode(name, ...)      the same task as numpy arrays / padded torch tensors
  label_names, num_labels, baseline    what a task's labels are, and the bar a model should clear
  manifest_hash(portable, profile)     the hash of everything prepared (part of every results key)

Every reader prepares the data first if nothing is there yet (`_ensure`), and caches what it read in this
process. The reader does not import what prepares the data (decoupling.data.preparation, .full sit above
it): those modules register their prepare functions here (`register_preparer`) when the package is imported. Heavy imports (torch, transformers, datasets, sklearn) happen inside the functions that need them:
`arrays`, `encode`, `corpus` and `token_ids` work without `datasets` (benchmarks/gpu_full.py's machine has
torch and transformers only).
"""
from __future__ import annotations

import functools
import hashlib

from decoupling.data.layout import (BOS, CLS, DEBIAN_DOMAINS, DEBIAN_SOURCES, DOMAINS, EOS, FULL_TASKS, PAD,
                                    SHUFFLE_SEED, TASKS, artifact_meta, check, complete, data_dir, full_dir,
                                    read_full_manifest, read_manifest, task_dir)
from decoupling.files import canonical

PROFILES = ("smoke", "full")  # which corpora a reader reads (decoupling.profiles.PROFILES, without importing it)

_PREPARERS: dict = {}  # profile -> fn(progress=True) -> manifest; filled by preparation ("smoke") and full ("full")


def register_preparer(profile: str, fn) -> None:
    """How to prepare a profile's data: the modules above the reader register it, so the reader can prepare
    missing data without importing them (which would make the imports go both ways)."""
    check(profile, PROFILES, "profile")
    _PREPARERS[profile] = fn


def run_preparer(profile: str, progress: bool = True) -> dict:
    """Prepare a profile's data with the registered function (decoupling.data's import registers both)."""
    check(profile, PROFILES, "profile")
    if profile not in _PREPARERS:
        raise RuntimeError(f"nothing registered to prepare the {profile!r} data: import decoupling.data "
                           "(it registers decoupling.data.preparation and decoupling.data.full)")
    return _PREPARERS[profile](progress=progress)


@functools.lru_cache(maxsize=1)
def _ensure() -> None:
    """Readers call this: prepare() once if nothing is there yet (quietly fast when it is)."""
    if not complete(read_manifest()):
        run_preparer("smoke")


def clear_caches() -> None:
    """Forget what this process read (prepare() calls it before it rewrites the data)."""
    for f in (_ensure, tokenizer, _stream, _corpus_text, _columns, _ensure_full):
        f.cache_clear()
    _ENCODED.clear()


# --------------------------------------------------------------------------------------------------
# Corpora, token streams, the tokenizer
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def tokenizer():
    """The shared tokenizer (a transformers fast tokenizer), loaded from DATA_DIR/tokenizer offline.
    ids: <|pad|>=0, <|bos|>=1, <|eos|>=2, <|cls|>=3; padding on the right."""
    from transformers import AutoTokenizer
    _ensure()
    return AutoTokenizer.from_pretrained(str(data_dir() / "tokenizer"), local_files_only=True)


@functools.lru_cache(maxsize=1)
def _ensure_full() -> None:
    """The full corpora, fetched and prepared the first time a `full` reader asks (never for smoke)."""
    run_preparer("full")


def _root(profile: str):
    check(profile, PROFILES, "profile")
    if profile == "full":
        _ensure_full()
        return full_dir()
    _ensure()
    return data_dir()


@functools.lru_cache(maxsize=16)
def _stream(domain: str, profile: str = "smoke"):
    import numpy as np
    path = _root(profile) / "tokens" / domain / "ids.npy"
    if not path.exists():
        raise FileNotFoundError(f"domain {domain!r} was not prepared here ({_skip_reason(domain)}); "
                                f"available: {', '.join(available_domains())}")
    return np.load(path, mmap_mode="r")


def token_ids(domain: str, max_tokens: int | None = None, seed: int = SHUFFLE_SEED, profile: str = "smoke"):
    """A domain's corpus as one 1-D torch.LongTensor of token ids (documents separated by <|eos|>).

    `max_tokens` keeps the first tokens (the document order is a fixed random order, so any prefix is a
    representative sample). "shuffled" is the control: exactly the tokens of token_ids("code", max_tokens),
    randomly permuted with `seed` — same unigram statistics, no sequential structure.
    `profile="full"`: the larger corpora of decoupling.data.full ("code", "prose", "c", "shuffled").
    """
    import numpy as np
    import torch

    check(domain, DOMAINS, "domain")
    src = _stream("code" if domain == "shuffled" else domain, profile)
    ids = np.array(src[:max_tokens] if max_tokens is not None else src, dtype=np.int64)
    if domain == "shuffled":
        ids = ids[np.random.default_rng(seed).permutation(ids.size)]
    return torch.from_numpy(ids)


@functools.lru_cache(maxsize=16)
def _corpus_text(domain: str) -> str:
    _ensure()
    path = data_dir() / "corpora" / domain / "text.txt"
    if not path.exists():
        raise FileNotFoundError(f"domain {domain!r} was not prepared here ({_skip_reason(domain)}); "
                                f"available: {', '.join(available_domains())}")
    return path.read_text(encoding="utf-8")


def corpus(domain: str, max_chars: int | None = None) -> str:
    """A domain's pretraining text: its documents, each followed by "<|eos|>" (so tokenizing this text
    gives exactly token_ids(domain)). `max_chars` keeps the first characters. "shuffled" is decoded from
    its token stream (byte-level tokens in random order: not valid UTF-8 everywhere, U+FFFD where not)."""
    check(domain, DOMAINS, "domain")
    if domain == "shuffled":
        text = tokenizer().decode(token_ids("shuffled").tolist())
    else:
        text = _corpus_text(domain)
    return text if max_chars is None else text[:max_chars]


def n_tokens(domain: str, profile: str = "smoke") -> int:
    """The length of a domain's token stream ("shuffled": the code stream's), read from the manifest."""
    check(domain, DOMAINS, "domain")
    name = "code" if domain == "shuffled" else domain
    if profile == "full":
        _ensure_full()
        m = read_full_manifest()
    else:
        _ensure()
        m = read_manifest()
    if name not in m["tokens"]:
        raise FileNotFoundError(f"domain {domain!r} has no {profile} token stream here")
    return int(m["tokens"][name]["n_tokens"])


def available_domains() -> list[str]:
    """The domains prepared on this machine (the Debian ones are optional)."""
    _ensure()
    return [d for d in DOMAINS if d == "shuffled" or (data_dir() / "tokens" / d / "ids.npy").exists()]


def _skip_reason(domain: str) -> str:
    m = read_manifest() or {}
    rec = m.get("sources", {}).get(DEBIAN_SOURCES.get(domain, ""), {})
    return rec.get("reason", "not prepared")


def documents(domain: str) -> list[str]:
    """A corpus as its list of documents (files, topics, books)."""
    check(domain, DOMAINS, "domain")
    return [d for d in corpus(domain).split(EOS) if d]


# --------------------------------------------------------------------------------------------------
# Target tasks
# --------------------------------------------------------------------------------------------------
def _task_meta(name: str) -> dict:
    check(name, TASKS + FULL_TASKS, "task")
    if name in FULL_TASKS:  # built by the full data step: fetched on first use, as the full corpora are
        _ensure_full()
    else:
        _ensure()
    meta = artifact_meta(task_dir(name))
    if meta is None:
        profile = " --profile full" if name in FULL_TASKS else ""
        raise FileNotFoundError(f"task {name!r} is not prepared in {data_dir()}; run `decoupling data{profile}`")
    return meta


def task(name: str):
    """A target task as a `datasets.DatasetDict` with splits "train" and "test"; columns "text" (or
    "pixels": 64 floats in [0, 1] for the digits tasks) and "label" (a ClassLabel with names)."""
    import datasets
    _task_meta(name)
    return datasets.load_from_disk(str(task_dir(name) / "dd"))


def digits(split_classes: str = "0-4"):
    """The digits task with classes "0-4" or "5-9" (labels remapped to 0..4)."""
    return task(f"digits/{split_classes}")


def label_names(name: str) -> list[str]:
    return list(_task_meta(name)["label_names"])


def num_labels(name: str) -> int:
    return len(label_names(name))


@functools.lru_cache(maxsize=64)
def _columns(name: str, split: str) -> dict:
    """A split's columns: "text" a list of str, "pixels" a float32 array (n, 64), "label" an int64 array.

    Read with `datasets` as numpy (text stays a list of str: numpy would pad it to the longest snippet).
    Where `datasets` is not installed (the GPU machine of benchmarks/gpu_full.py), the same Arrow files,
    those `save_to_disk` wrote, are read with pyarrow alone."""
    _task_meta(name)
    path = task_dir(name) / "dd" / split
    try:
        import datasets
    except ImportError:
        return _columns_pyarrow(path)
    ds = datasets.load_from_disk(str(path))
    numeric = [c for c in ds.column_names if c != "text"]
    return ds.with_format("numpy", columns=numeric, output_all_columns=True)[:]


def _columns_pyarrow(path) -> dict:
    import numpy as np
    import pyarrow as pa

    tables = []
    for f in sorted(path.glob("data-*.arrow")):
        with pa.memory_map(str(f)) as src:
            tables.append(pa.ipc.open_stream(src).read_all())
    cols = pa.concat_tables(tables).to_pydict()
    out = {"label": np.asarray(cols["label"], dtype=np.int64)}
    if "pixels" in cols:
        out["pixels"] = np.asarray(cols["pixels"], dtype=np.float32)
    if "text" in cols:
        out["text"] = cols["text"]
    return out


def arrays(name: str) -> dict:
    """{"train": (X, y), "test": (X, y)}: X a list of str (text tasks) or a float32 array (n, 64) (digits),
    y an int64 numpy array. For sklearn baselines and the digits MLPs."""
    import numpy as np
    out = {}
    for split in ("train", "test"):
        cols = _columns(name, split)
        # copies: the columns are cached, the caller may write into what it gets
        x = np.array(cols["pixels"], dtype=np.float32) if "pixels" in cols else list(cols["text"])
        out[split] = (x, np.array(cols["label"], dtype=np.int64))
    return out


_ENCODED: dict = {}


def encode(task_name: str, tok=None, max_len: int = 128, *, bos: bool = True, cls: bool = True) -> dict:
    """Tokenized task: {"train"|"test": {"input_ids", "attention_mask", "labels"}} as torch tensors of shape
    (n, max_len), padded on the RIGHT with the pad id (GPT-2 style classifiers read the last non-pad token).

    With the shared tokenizer (the default) a sequence is [<|bos|>] + text tokens + [<|cls|>], truncated so
    the <|cls|> summary token is always the last real token. Any other tokenizer (e.g. MiniLM's) adds its
    own special tokens. Cached in-process; treat the tensors as read-only.
    """
    import torch

    tok = tok if tok is not None else tokenizer()
    meta = _task_meta(task_name)
    if "text" not in meta["columns"]:
        raise ValueError(f"task {task_name!r} has no text (use arrays({task_name!r}) or task())")
    key = (task_name, id(tok), getattr(tok, "name_or_path", ""), len(tok), max_len, bos, cls)
    if key in _ENCODED:
        return _ENCODED[key]
    ours = CLS in tok.get_vocab() and tok.pad_token == PAD
    out = {}
    for split in ("train", "test"):
        cols = _columns(task_name, split)
        if ours:
            pre = [tok.convert_tokens_to_ids(BOS)] if bos else []
            post = [tok.convert_tokens_to_ids(CLS)] if cls else []
            room = max_len - len(pre) - len(post)
            if room < 1:
                raise ValueError(f"max_len={max_len} leaves no room for text")
            seqs = [pre + ids[:room] + post for ids in tok(cols["text"], add_special_tokens=False)["input_ids"]]
        else:
            seqs = tok(cols["text"], truncation=True, max_length=max_len)["input_ids"]
        ids = torch.full((len(seqs), max_len), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), max_len), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, :len(s)] = 1
        out[split] = {"input_ids": ids, "attention_mask": mask,
                      "labels": torch.tensor(cols["label"], dtype=torch.long)}
    _ENCODED[key] = out
    return out


def baseline(name: str) -> dict:
    """Majority class and a TF-IDF + logistic regression (pixels + logistic regression for digits) test
    accuracy: evidence the labels are real and learnable, and the bar every model in the book should clear."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    a = arrays(name)
    (xtr, ytr), (xte, yte) = a["train"], a["test"]
    if isinstance(xtr, list):
        model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True,
                                              token_pattern=r"(?u)\b\w+\b|[^\w\s]"),
                              LogisticRegression(C=10.0, max_iter=3000))
    else:
        model = LogisticRegression(C=1.0, max_iter=3000)
    model.fit(xtr, ytr)
    majority = float(np.mean(yte == np.bincount(ytr).argmax()))
    return {"task": name, "majority": round(majority, 4), "linear": round(float(model.score(xte, yte)), 4),
            "n_train": len(ytr), "n_test": len(yte)}


# --------------------------------------------------------------------------------------------------
# The manifest's hash: part of every results key
# --------------------------------------------------------------------------------------------------
def manifest_hash(portable: bool = False, profile: str = "smoke") -> str:
    """sha256 of the manifest's canonical JSON: changes iff any prepared data changes (results-store key).

    profile="full" hashes the smoke manifest together with the full corpora's (decoupling.data.full); the
    smoke hash never reads the full data, so fetching it changes no smoke key.

    portable=True hashes only what every machine can prepare (drops the optional Debian sources and their
    corpora/streams): use it for results that do not read the "go"/"bible_en" domains, so a machine
    without apt-get finds the same cache entries."""
    m = read_manifest()
    if m is None:
        m = run_preparer("smoke")
    m = portable_manifest(m) if portable else m
    if profile == "full":
        _ensure_full()
        m = {"smoke": m, "full": read_full_manifest()}
    return hashlib.sha256(canonical(m).encode()).hexdigest()


def portable_manifest(m: dict) -> dict:
    """The manifest without the optional Debian sources and their corpora/streams: what every machine can
    prepare (its hash keys the results store; a copy of the data carried to another machine needs only this)."""
    return {**m, "sources": {k: v for k, v in m["sources"].items() if k not in DEBIAN_SOURCES.values()},
            "corpora": {k: v for k, v in m["corpora"].items() if k not in DEBIAN_DOMAINS},
            "tokens": {k: v for k, v in m["tokens"].items() if k not in DEBIAN_DOMAINS}}

