"""Tests for decoupling.data: provenance, corpora, tokenizer, token streams, tasks.

They use the real prepared cache (DATA_DIR). prepare() is idempotent: the first run on an empty machine
builds it (about a minute), afterwards these tests take a few seconds.
"""
from __future__ import annotations

import ast
import hashlib
import io
import json
import re
import sys
import time
import tokenize

import pytest

from decoupling import data
from decoupling.data import read, sources

HEX64 = re.compile(r"^[0-9a-f]{64}$")
REQUIRED_SOURCES = ("cpython-stdlib", "cpython-pydoc-topics", "cpython-include", "pypi-vaderSentiment",
                    "sklearn-digits")


@pytest.fixture(scope="module")
def manifest():
    return data.prepare(progress=False)


# --- provenance -----------------------------------------------------------------------------------
def test_manifest_records_every_source(manifest):
    recorded = manifest["sources"]
    for key in REQUIRED_SOURCES:
        assert key in recorded, key
    for key, s in recorded.items():
        if s.get("status") == "skipped":  # optional Debian sources say why
            assert key.startswith("debian-") and s["reason"]
            continue
        assert HEX64.match(s["sha256"]), key
        assert s["license"] and s["origin"] and s["version"], key
        assert s["bytes"] > 0, key
    assert recorded["pypi-vaderSentiment"]["sha256"] == sources.VADER["sha256"]
    for dom, c in manifest["corpora"].items():
        assert HEX64.match(c["sha256"]) and c["bytes"] > 0, dom


def test_manifest_hash_is_canonical_and_stable(manifest):
    h = data.manifest_hash()
    assert HEX64.match(h) and h == data.manifest_hash()
    on_disk = json.loads((data.data_dir() / "manifest.json").read_text())
    canon = json.dumps(on_disk, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    assert h == hashlib.sha256(canon).hexdigest()
    # the portable hash ignores the optional Debian sources: equal on machines with and without apt-get
    portable = {**on_disk, "sources": {k: v for k, v in on_disk["sources"].items() if not k.startswith("debian-")},
                "corpora": {k: v for k, v in on_disk["corpora"].items() if k in data.PORTABLE_DOMAINS},
                "tokens": {k: v for k, v in on_disk["tokens"].items() if k in data.PORTABLE_DOMAINS}}
    canon = json.dumps(portable, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    assert data.manifest_hash(portable=True) == hashlib.sha256(canon).hexdigest()


def test_prepare_is_idempotent_and_fast(manifest):
    t0 = time.time()
    again = data.prepare(progress=False)
    assert time.time() - t0 < 2.0
    assert again == manifest


def test_main_data_prints_the_tasks_and_the_hash(manifest, capsys):
    assert data.main_data(["--quiet"]) == 0
    out = capsys.readouterr().out
    assert "pypi-vaderSentiment" in out and "sentiment/movies" in out and data.manifest_hash() in out


# --- corpora --------------------------------------------------------------------------------------
def test_strip_python_removes_comments_and_docstrings():
    src = ('"""Module doc."""\n# a comment\nimport os  # trailing\n\n\ndef f(x):\n    """Only a docstring."""\n\n\n'
           'class C:\n    """Doc."""\n    a = 1\n    """attribute doc"""\n    s = """kept: not a docstring"""\n')
    out = sources.strip_python(src)
    tree = ast.parse(out)
    assert "#" not in out and "Module doc" not in out and "Only a docstring" not in out
    assert "attribute doc" not in out and "kept: not a docstring" in out
    assert "def f(x):\n    ..." in out  # a body that was only a docstring stays valid
    assert all(ast.get_docstring(n) is None for n in ast.walk(tree)
               if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)))


def test_code_corpus_has_no_docstrings_or_comments(manifest):
    docs = data.documents("code")
    assert len(docs) > 250 and len(data.corpus("code")) > 3_000_000  # the held-out packages are out
    for doc in docs[::8]:  # a fixed sample: parse each file, look for docstrings and comment tokens
        tree = ast.parse(doc)
        assert all(ast.get_docstring(n) is None for n in ast.walk(tree)
                   if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)))
        assert not any(t.type == tokenize.COMMENT for t in tokenize.generate_tokens(io.StringIO(doc).readline))


def test_prose_corpus_has_no_code(manifest):
    prose = data.corpus("prose")
    assert len(prose) > 1_000_000
    assert not re.search(r"(?m)^\s*(async\s+)?def \w+\s*\(", prose)
    assert not re.search(r"(?m)^\s*>>>", prose)
    assert "Python" in prose


def test_other_corpora(manifest):
    c = data.corpus("c")
    assert "#define" in c and "#include" in c and len(c) > 500_000
    assert data.corpus("code", max_chars=1000) == data.corpus("code")[:1000]
    for dom in data.available_domains():
        assert data.corpus(dom, max_chars=100), dom
    skipped = [d for d in data.DEBIAN_DOMAINS if d not in data.available_domains()]
    for dom in skipped:
        with pytest.raises(FileNotFoundError):
            data.corpus(dom)


# --- tokenizer ------------------------------------------------------------------------------------
def test_tokenizer_round_trips_offline(manifest, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(data.data_dir() / "tokenizer"))
    assert len(tok) == data.VOCAB_SIZE
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.cls_token_id] == [0, 1, 2, 3]
    assert tok.padding_side == "right"
    for text in ["def f(x):\n    return x ** 2  # square\n", "The loop terminates.", "#define Py_X 1\n",
                 "naïve café — ✓ 日本", data.corpus("prose", max_chars=2000)]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    assert data.tokenizer() is data.tokenizer()  # cached in-process
    assert data.tokenizer()("def f(): pass")["input_ids"] == tok("def f(): pass")["input_ids"]


# --- token streams --------------------------------------------------------------------------------
def test_token_ids_deterministic_and_consistent(manifest):
    import torch
    a, b = data.token_ids("code", max_tokens=50_000), data.token_ids("code", max_tokens=50_000)
    assert a.dtype == torch.long and a.ndim == 1 and a.numel() == 50_000 and torch.equal(a, b)
    assert int(a.max()) < data.VOCAB_SIZE and int(a.min()) >= 0
    # the stream is the corpus tokenized document by document, each followed by <|eos|>
    doc = data.documents("code")[0]
    ids = data.tokenizer()(doc + data.EOS, add_special_tokens=False)["input_ids"]
    assert a[:len(ids)].tolist() == ids
    full = data.token_ids("prose")
    assert int((full == 2).sum()) == manifest["corpora"]["prose"]["n_docs"]


def test_shuffled_control(manifest):
    import torch
    code = data.token_ids("code", max_tokens=20_000)
    sh = data.token_ids("shuffled", max_tokens=20_000)
    assert torch.equal(sh, data.token_ids("shuffled", max_tokens=20_000))
    assert torch.equal(torch.sort(sh).values, torch.sort(code).values)  # same tokens ...
    assert (sh != code).float().mean() > 0.5  # ... in another order
    assert not torch.equal(sh, data.token_ids("shuffled", max_tokens=20_000, seed=1))


# --- tasks ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", data.TASKS)
def test_task(manifest, name):
    dd = data.task(name)
    assert set(dd) == {"train", "test"}
    k = data.num_labels(name)
    assert k >= 2 and dd["train"].features["label"].names == data.label_names(name)
    key = "pixels" if name.startswith("digits/") else "text"
    rows = {}
    for split in ("train", "test"):
        ds = dd[split]
        assert len(ds) >= 150 and set(ds.column_names) == {key, "label"}
        labels = ds["label"]
        assert min(labels) >= 0 and max(labels) < k and len(set(labels)) == k
        rows[split] = {tuple(x) if key == "pixels" else x for x in ds[key]}
    assert not rows["train"] & rows["test"]
    if key == "pixels":
        px = dd["train"][0]["pixels"]
        assert len(px) == 64 and 0.0 <= min(px) and max(px) <= 1.0


@pytest.mark.parametrize("name", ["digits/0-4", "sentiment/tweets"])
def test_arrays_are_the_same_without_datasets(manifest, name, monkeypatch):
    """A machine with torch but not `datasets` reads the same Arrow files with pyarrow alone."""
    import numpy as np
    with_datasets = data.arrays(name)
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now raises ImportError
    read._columns.cache_clear()
    try:
        without = data.arrays(name)
    finally:
        read._columns.cache_clear()
    for split in ("train", "test"):
        (x1, y1), (x2, y2) = with_datasets[split], without[split]
        assert y1.dtype == y2.dtype == np.int64 and np.array_equal(y1, y2)
        if isinstance(x1, list):
            assert x1 == x2
        else:
            assert x1.dtype == x2.dtype == np.float32 and np.array_equal(x1, x2)
    x, y = data.arrays(name)["train"]
    y[:] = -1  # a caller may write into its arrays: the cached columns stay as they were
    assert (data.arrays(name)["train"][1] >= 0).all()


def test_unknown_names_list_the_valid_ones(manifest):
    with pytest.raises(ValueError, match="sentiment/movies"):
        data.task("sentiment/imdb")
    with pytest.raises(ValueError, match="code/module"):
        data.num_labels("nope")
    for fn in (data.corpus, data.token_ids):
        with pytest.raises(ValueError, match="prose.*shuffled"):
            fn("rust")


def test_encode_pads_right_and_ends_with_cls(manifest):
    enc = data.encode("sentiment/tweets", max_len=32)
    assert data.encode("sentiment/tweets", max_len=32) is enc  # cached
    tok = data.tokenizer()
    for split in ("train", "test"):
        e = enc[split]
        n = len(data.task("sentiment/tweets")[split])
        assert e["input_ids"].shape == e["attention_mask"].shape == (n, 32) and e["labels"].shape == (n,)
        lengths = e["attention_mask"].sum(1)
        assert (e["input_ids"][:, 0] == tok.bos_token_id).all()
        last = e["input_ids"][range(n), lengths - 1]
        assert (last == tok.cls_token_id).all()
        pad_region = e["attention_mask"] == 0
        assert (e["input_ids"][pad_region] == tok.pad_token_id).all()
        assert (e["attention_mask"].cumsum(1)[:, -1] == lengths).all()  # mask is a prefix of ones
    assert enc["train"]["labels"].tolist() == data.task("sentiment/tweets")["train"]["label"]
    with pytest.raises(ValueError):
        data.encode("digits/0-4")


def test_sentiment_is_learnable(manifest):
    """TF-IDF + logistic regression beats the majority class: the labels are real, not the model."""
    b = data.baseline("sentiment/tweets")
    assert b["linear"] > b["majority"] + 0.1


# --- profiles: the full corpora stay out of everything smoke reads ------------------------------------
def test_smoke_never_reads_the_full_data(manifest, monkeypatch):
    from decoupling.data import full

    def refuse(*a, **k):
        raise AssertionError("a smoke reader asked for the full corpora")

    monkeypatch.setattr(full, "prepare_full", refuse)
    read.clear_caches()
    h = data.manifest_hash(portable=True)
    assert data.token_ids("prose", max_tokens=100).numel() == 100
    assert data.n_tokens("code") == manifest["tokens"]["code"]["n_tokens"] == data.n_tokens("shuffled")
    assert data.manifest_hash(portable=True) == h
    with pytest.raises(ValueError, match="profile"):
        data.token_ids("code", profile="huge")


def test_full_manifest_records_every_source(manifest):
    from decoupling.data import full
    m = full.read_full_manifest()
    if m is None:
        pytest.skip("full corpora not fetched here (decoupling data --profile full)")
    assert m["tokenizer_sha256"] == manifest["tokenizer"]["sha256"]
    for key, s in m["sources"].items():
        assert HEX64.match(s["sha256"]) and s["license"] and s["origin"] and s["version"] and s["bytes"] > 0, key
    for name, version, sha in full.WHEELS:
        assert m["sources"][f"pypi-{name}"]["sha256"] == sha
    for d in full.FULL_DOMAINS:
        assert m["tokens"][d]["n_tokens"] > manifest["tokens"][d]["n_tokens"]
    assert data.manifest_hash(portable=True, profile="full") != data.manifest_hash(portable=True)
