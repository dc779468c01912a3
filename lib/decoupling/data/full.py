"""The larger corpora that only the `full` bodies read, fetched when `full` asks and never for smoke.

A `full` body sees 4000 steps x 64 windows x 128 tokens = 32.8M token positions; the smoke corpora hold
0.3-1.5M tokens each, so a full body trained on them would see every token 20-120 times and measure
memorisation more than pretraining. Here each domain gets enough real text for at most 4 epochs:

  code   the smoke "code" corpus + the .py files of six large pure-Python projects (wheels from PyPI,
         pinned by version and sha256; tests left out, as in the stdlib), comments and docstrings stripped,
  prose  the smoke "prose" corpus + those projects' docstrings + the Python 3.11 documentation's reST
         sources (Debian python3.11-doc; the pages of the held-out packages left out) + the Collaborative
         International Dictionary of English (Debian dict-gcide, from Webster's 1913),
  c      the smoke "c" corpus (CPython's headers) + the first C_MAX_BYTES of glibc's .c/.h sources (Debian
         glibc-source), in the fixed random file order.

The same step builds the tasks only `full` reads (FULL_TASKS: code/agents, decoupling.data.unexposed), after
the corpora, since they are decontaminated against them; the full manifest records them and their wheels.

Everything lives under DATA_DIR/full/ (corpora/, tokens/, tasks/, manifest.json) and is tokenized with DATA_DIR's
one tokenizer (trained on the smoke corpora only), so the smoke manifest and its hash — the key of every
smoke result — never depend on whether this data was fetched. `manifest_hash(profile="full")` covers both
manifests; the `full` pretraining configs carry it (decoupling.experiments.pretrain.config).

    decoupling data --profile full        # or prepare(profile="full"); ~10 minutes, ~100 MB downloaded
"""
from __future__ import annotations

import ast
import re
import tarfile
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

# `import ... as`, not `from decoupling.data import`: the latter imports the package, which imports this module
import decoupling.data.preparation as preparation
import decoupling.data.read as read
import decoupling.data.sources as sources
import decoupling.data.unexposed as unexposed
from decoupling.data.layout import (DATA_VERSION, EOS, HELD_OUT, TASKS, artifact_meta, data_dir, full_dir,
                                    read_full_manifest, say)
from decoupling.files import write_json

FULL_DOMAINS = ("code", "prose", "c")
# (project, version, sha256 of the py3-none-any wheel on PyPI): a different file is an error, not new data
WHEELS = (
    ("sympy", "1.14.0", "e091cc3e99d2141a0ba2847328f5479b05d94a6635cb96148ccb3f34671bd8f5"),
    ("django", "5.2.8", "37e687f7bd73ddf043e2b6b97cfe02fcbb11f2dbb3adccc6a2b18c6daa054d7f"),
    ("sqlalchemy", "2.1.9", "449fed5c2caa3b278cc57499d09db001fb3f28dc7f18affc48142aee4dcc0cdf"),
    ("twisted", "26.10.0", "3732f42af218925a0fe78d6668db55853f7fb532245a89a2669babe7d3000fa8"),
    ("networkx", "3.6.1", "d47fbf302e7d9cbbb9e2555a0d267983d2aa476bac30e90dfbe5669bd57f3762"),
    ("pygments", "2.21.0", "2363c69b61c4a97c838da3b130dcd6468f4848992b21a82f2a63ec34377137d9"),
)
DEBS = {"python3.11-doc": "PSF-2.0", "dict-gcide": "GPL-2+ (GCIDE); Webster's 1913 text is public domain",
        "glibc-source": "LGPL-2.1+"}
C_MAX_BYTES = 36_000_000  # ~11M tokens of C: enough for <= 4 epochs, and the tarball holds far more
GCIDE_DOC_CHARS = 100_000  # the dictionary is one file: cut into documents of ~this size at entry boundaries
TEST_PARTS = {"test", "tests", "testing"}


def corpora_complete(m: dict | None, tokenizer_sha: str | None) -> bool:
    """The full corpora are there, current, and tokenized with today's tokenizer."""
    if not m or m.get("data_version") != DATA_VERSION or m.get("tokenizer_sha256") != tokenizer_sha:
        return False
    return all(artifact_meta(full_dir() / sub / d) for d in FULL_DOMAINS for sub in ("corpora", "tokens"))


def complete(m: dict | None, tokenizer_sha: str | None) -> bool:
    """The full data is there and current: the corpora and the tasks only `full` reads (FULL_TASKS)."""
    return corpora_complete(m, tokenizer_sha) and unexposed.built(m)


# --------------------------------------------------------------------------------------------------
# Fetching: wheels with pip (pinned, sources.pypi_wheel), Debian packages with apt-get download (recorded)
# --------------------------------------------------------------------------------------------------
def _python_docs(whl: Path) -> tuple[list[str], list[str], int]:
    """(stripped code per file, cleaned docstrings per file, n files) of a wheel's .py files, no tests."""
    code, docs = [], []
    with zipfile.ZipFile(whl) as z:
        for name in sorted(z.namelist()):
            parts = name.split("/")
            if not name.endswith(".py") or TEST_PARTS & set(parts) or parts[-1].startswith("test_"):
                continue
            src = z.read(name).decode("utf-8", "replace").replace("\r\n", "\n")
            stripped = sources.strip_python(src)
            if not stripped or EOS in src:
                continue
            code.append(stripped)
            d = sources._docstrings(ast.parse(src))
            if d:
                docs.append("\n\n".join(d))
    return code, docs, len(code)


def _rst_page_held_out(rel: str) -> bool:
    stem = rel.rsplit("/", 1)[-1].removesuffix(".rst.txt")
    return any(stem == p or stem.startswith((p + ".", p + "-")) for p in HELD_OUT)


_LITERAL_DIRECTIVE = re.compile(r"\.\. (code-block|code|sourcecode|doctest|testcode|testoutput|testsetup|"
                                r"productionlist|literalinclude|csv-table|list-table|table|toctree|grammar-snippet)::")


def _clean_rst(text: str) -> str:
    """Prose of a reST page: directives, comments, literal blocks (after "::") and code-like paragraphs
    dropped; paragraphs indented under a directive are dedented and kept."""
    keep, literal_at = [], None  # literal_at: indentation of the paragraph that ended in "::"
    for para in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        para = para.strip("\n")
        if not para.strip():
            continue
        indent = len(para) - len(para.lstrip())
        if literal_at is not None and indent > literal_at:
            continue  # inside the literal block
        body = textwrap.dedent(para)
        literal_at = indent if para.rstrip().endswith("::") or _LITERAL_DIRECTIVE.match(body) else None
        if body.startswith(".."):
            continue
        lines = body.split("\n")
        if any(sources._CODE_LINE.match(ln) for ln in lines):
            continue
        keep.append("\n".join(ln.rstrip() for ln in lines))
    return "\n\n".join(keep)


def _docs_pages(root: Path) -> tuple[list[str], int]:
    base = next(root.rglob("_sources"))
    pages, held = [], 0
    for p in sorted(base.rglob("*.rst.txt")):
        rel = p.relative_to(base).as_posix()
        if _rst_page_held_out(rel):
            held += 1
            continue
        text = _clean_rst(p.read_text(encoding="utf-8", errors="replace"))
        if text and EOS not in text:
            pages.append(text)
    return pages, held


def _gcide(root: Path) -> list[str]:
    import gzip
    text = gzip.decompress(next(root.rglob("gcide.dict.dz")).read_bytes()).decode("utf-8", "replace")
    start = text.find(" Begin file 1 of 26")  # after the database's own header entries
    text = text[max(start, 0):]
    docs, cur, n = [], [], 0
    for entry in re.split(r"\n(?=\S)", text):  # an entry starts at a non-indented line
        cur.append(entry)
        n += len(entry)
        if n >= GCIDE_DOC_CHARS:
            docs.append("\n".join(cur).strip())
            cur, n = [], 0
    if cur:
        docs.append("\n".join(cur).strip())
    return [d for d in docs if d and EOS not in d]


def _glibc(root: Path) -> tuple[list[str], str]:
    tarball = next(root.rglob("glibc-*.tar.xz"))
    files = {}
    with tarfile.open(tarball, "r:xz") as tf:
        for m in tf:
            parts = m.name.split("/")
            if not m.isfile() or not m.name.endswith((".c", ".h")) or parts[-1].startswith(("tst-", "test-")) \
                    or TEST_PARTS & set(parts):
                continue
            files[m.name] = tf.extractfile(m).read().decode("utf-8", "replace")
    docs, n = [], 0
    for rel in sources.order(list(files)):
        if EOS in files[rel]:
            continue
        docs.append(files[rel])
        n += len(files[rel].encode())
        if n >= C_MAX_BYTES:
            break
    return docs, tarball.name


# --------------------------------------------------------------------------------------------------
# Decontamination beyond the held-out packages: a few documents of these sources repeat a target text
# (django and twisted copy a logging docstring, a C file carries the ElementTree license a stdlib snippet
# also carries); those whole documents are dropped, as a held-out package's files are
# --------------------------------------------------------------------------------------------------
def _target_texts() -> list[str]:
    out = []
    for t in TASKS:
        if not t.startswith("digits/"):
            a = read.arrays(t)
            out += a["train"][0] + a["test"][0]
    return out


def _contaminated_docs(domain: str, texts: list[str]) -> set[int]:
    """Indices of the documents of full/tokens/<domain> holding a window of a text that is mostly
    (overlap.MOSTLY) in the stream — the rule tests/test_decontamination.py enforces."""
    import numpy as np
    from tokenizers import Tokenizer

    import decoupling.data.overlap as overlap  # here: it imports numpy, and importing the package stays cheap
    tok = Tokenizer.from_file(str(data_dir() / "tokenizer" / "tokenizer.json"))
    ids = np.load(full_dir() / "tokens" / domain / "ids.npy")
    corpus = overlap.corpus_hashes(ids)
    fr = overlap.overlap(texts, corpus, tok)
    bad_texts = [t for t, f in zip(texts, fr) if f >= overlap.MOSTLY]
    if not bad_texts:
        return set()
    bad = np.unique(np.concatenate([overlap.window_hashes(x) for x in overlap.encode(tok, bad_texts)]))
    at = np.flatnonzero(overlap.in_sorted(overlap.window_hashes(ids), bad))  # window starts
    doc_of = np.concatenate([[0], np.cumsum(ids == tok.token_to_id(EOS))[:-1]])  # EOS ends its document
    return set(doc_of[at].tolist())


# --------------------------------------------------------------------------------------------------
# prepare_full(): once per DATA_DIR and tokenizer
# --------------------------------------------------------------------------------------------------
def prepare_full(progress: bool = True) -> dict:
    """Fetch and build the full corpora, then the tasks only `full` reads (decoupling.data.unexposed, which
    is decontaminated against them). DATA_DIR must be prepared: the smoke corpora are part of the full ones
    and the tokenizer comes from it. Idempotent (a manifest with its corpora but without the tasks gets the
    tasks alone); returns the full manifest."""
    from filelock import FileLock

    smoke = preparation.prepare(progress=progress)
    tok_sha = smoke["tokenizer"]["sha256"]
    if complete(read_full_manifest(), tok_sha):
        return read_full_manifest()
    full_dir().mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    with FileLock(full_dir() / ".prepare.lock"):
        if complete(read_full_manifest(), tok_sha):
            return read_full_manifest()
        rebuilt = not corpora_complete(read_full_manifest(), tok_sha)
        if rebuilt:
            _build_corpora(smoke, progress)  # writes the manifest of the corpora: a failed task keeps them
        manifest = read_full_manifest()
        if rebuilt or not complete(manifest, tok_sha):  # the tasks are decontaminated against the corpora
            manifest = _with_tasks(manifest, progress)
            write_json(full_dir() / "manifest.json", manifest)
    read.clear_caches()
    say(f"[data] full corpora ready in {time.time() - t_start:.0f} s: " + ", ".join(
        f"{d} {manifest['tokens'][d]['n_tokens'] / 1e6:.1f}M tokens" for d in FULL_DOMAINS), progress)
    return manifest


def _with_tasks(manifest: dict, progress: bool) -> dict:
    """The manifest with the tasks only `full` reads built and recorded (their wheels among the sources)."""
    (data_dir() / ".tmp").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="full-tasks-", dir=data_dir() / ".tmp") as tmp:
        meta, records = unexposed.build(Path(tmp), progress)
    strip = lambda m: {k: v for k, v in m.items() if k != "data_version"}  # noqa: E731
    kept = {k: v for k, v in manifest["sources"].items() if unexposed.NAME not in v.get("used_in", [])}
    return {**manifest, "sources": dict(sorted({**kept, **records}.items())), "tasks": {unexposed.NAME: strip(meta)}}


def _build_corpora(smoke: dict, progress: bool) -> None:
    """Fetch the full corpora's sources, write the corpora and their token streams, and the manifest
    (`smoke`: the smoke manifest)."""
    tok_sha = smoke["tokenizer"]["sha256"]
    say(f"[data] preparing the full corpora into {full_dir()}", progress)
    records: dict[str, dict] = {}
    docs = {d: read.documents(d) for d in FULL_DOMAINS}  # the smoke corpora, held-out packages already out
    (data_dir() / ".tmp").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="full-", dir=data_dir() / ".tmp") as tmp:
        tmp = Path(tmp)
        for name, version, sha in WHEELS:
            t0 = time.time()
            whl = sources.pypi_wheel(name, version, sha, tmp / "wheels")
            code, doc, n = _python_docs(whl)
            with zipfile.ZipFile(whl) as z:
                lic = sources.wheel_license(z)
            docs["code"] += code
            docs["prose"] += doc
            records[f"pypi-{name}"] = {"origin": f"PyPI {name}=={version} wheel (.py files, no tests)",
                                       "version": version, "license": lic, "sha256": sha, "sha256_of": whl.name,
                                       "bytes": whl.stat().st_size, "n_files": n, "used_in": ["code", "prose"]}
            say(f"[data] source    {records[f'pypi-{name}']['origin']} ({time.time() - t0:.1f} s)", progress)
        for pkg, lic in DEBS.items():
            t0 = time.time()
            (tmp / pkg).mkdir()
            _, deb, root = sources.apt_fetch([pkg], tmp / pkg)
            rec = {"origin": f"Debian {pkg} {sources.deb_version(deb)} (apt-get download)",
                   "version": sources.deb_version(deb), "license": lic, "sha256": sources.sha256_file(deb),
                   "sha256_of": deb.name, "bytes": deb.stat().st_size}
            if pkg == "python3.11-doc":
                pages, held = _docs_pages(root)
                docs["prose"] += pages
                rec.update(n_pages=len(pages), held_out_pages=held, used_in=["prose"],
                           what="_sources/**/*.rst.txt, directives and literal blocks dropped; the pages of "
                                + ", ".join(HELD_OUT) + " held out")
            elif pkg == "dict-gcide":
                docs["prose"] += _gcide(root)
                rec.update(used_in=["prose"], what="gcide.dict.dz, cut into ~100k-character documents")
            else:
                c_docs, tarball = _glibc(root)
                docs["c"] += c_docs
                rec.update(used_in=["c"], n_files=len(c_docs), what=f"{tarball}: first {C_MAX_BYTES / 1e6:.0f} MB "
                           "of .c/.h (no tests) in the fixed random file order")
            records[f"debian-{pkg}"] = rec
            say(f"[data] source    {rec['origin']} ({time.time() - t0:.1f} s)", progress)
    smoke_sources = {d: smoke["corpora"][d].get("sha256") for d in FULL_DOMAINS}
    targets = _target_texts()
    dropped = {}
    for d in FULL_DOMAINS:
        ordered = [docs[d][i] for i in sources.order(list(range(len(docs[d]))))]
        ordered = [x for x in ordered if x.strip() and EOS not in x]  # as _write_corpus keeps them
        used = {k: v for k, v in records.items() if d in v["used_in"]}
        note = f"the smoke {d!r} corpus (sha256 {smoke_sources[d][:12]}) + {', '.join(used)}"
        while True:  # at most twice: the documents that repeat a target text are dropped once
            preparation._write_corpus(d, ordered, used, note, progress, root=full_dir())
            preparation._encode_corpus(d, progress, root=full_dir())
            bad = _contaminated_docs(d, targets)
            if not bad:
                break
            dropped[d] = dropped.get(d, 0) + len(bad)
            ordered = [x for i, x in enumerate(ordered) if i not in bad]
            note += f"; {dropped[d]} documents dropped (they repeat target texts)"
            say(f"[data] corpus {d:9s} {len(bad)} documents repeat target texts: dropped", progress)
    strip = lambda m: {k: v for k, v in m.items() if k not in ("data_version", "sources")}  # noqa: E731
    manifest = {"data_version": DATA_VERSION, "tokenizer_sha256": tok_sha, "held_out": list(HELD_OUT),
                "dropped_documents": dropped,
                "sources": dict(sorted(records.items())),
                "corpora": {d: strip(artifact_meta(full_dir() / "corpora" / d)) for d in FULL_DOMAINS},
                "tokens": {d: strip(artifact_meta(full_dir() / "tokens" / d)) for d in FULL_DOMAINS}}
    write_json(full_dir() / "manifest.json", manifest)


# the readers fetch the full corpora through this hook (read must not import this module); looked up by name
# at call time, so a test that replaces prepare_full replaces what the readers call
read.register_preparer("full", lambda progress=True: prepare_full(progress))
