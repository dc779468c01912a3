"""Preparing the data once: `prepare()` and `python -m decoupling.data` (also `decoupling data`).

prepare() obtains each source (decoupling.data.sources), writes every artifact the readers use, and last
the manifest, which records origin, version, license, sha256 and sizes of everything:

  corpora/<domain>/   pretraining text, documents joined by the `<|eos|>` token
  tokenizer/          one shared byte-level BPE tokenizer (vocab 4096), trained on the portable corpora
  tokens/<domain>/    each corpus as one token stream (.npy, uint16)
  tasks/<name>/       the target tasks (decoupling.data.tasks)

It is idempotent (a warm call only reads the manifest), one process at a time per DATA_DIR (a file
lock: parallel notebooks or test workers may all call it), and each artifact is renamed into place
complete, so an interrupted run is resumed, not restarted.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

# `import ... as`, not `from decoupling.data import`: the latter imports the package, which imports this module
import decoupling.data.read as read
import decoupling.data.sources as sources
import decoupling.data.tasks as tasks
from decoupling.data.layout import (DATA_VERSION, DEBIAN_DOMAINS, DEBIAN_SOURCES, EOS, HELD_OUT, PORTABLE_DOMAINS,
                                    SPECIAL_TOKENS, TASKS, VOCAB_SIZE, BOS, CLS, PAD, artifact_meta, complete,
                                    data_dir, full_dir, held_out, read_full_manifest, read_manifest, say, staging,
                                    task_dir)
from decoupling.files import write_json

TOKENIZER_MAX_CHARS_PER_DOMAIN = 2_000_000


# --------------------------------------------------------------------------------------------------
# Corpora: one directory per domain with text.txt (documents each followed by EOS) + meta.json
# --------------------------------------------------------------------------------------------------
def _write_corpus(domain: str, docs: list[str], records: dict, note: str, progress: bool,
                  root: Path | None = None) -> dict:
    """`root`: DATA_DIR (the default) or DATA_DIR/full (decoupling.data.full's larger corpora)."""
    docs = [d for d in docs if d.strip() and EOS not in d]
    text = "".join(d + EOS for d in docs)
    final = (root or data_dir()) / "corpora" / domain
    with staging(final) as tmp:
        (tmp / "text.txt").write_text(text, encoding="utf-8")
        meta = {"data_version": DATA_VERSION, "domain": domain, "sources": records, "note": note,
                "n_docs": len(docs), "chars": len(text), "bytes": len(text.encode("utf-8")),
                "sha256": sources.sha256_bytes(text.encode())}
        write_json(tmp / "meta.json", meta)
    say(f"[data] corpus {domain:9s} {len(docs):5d} docs {meta['bytes'] / 1e6:6.2f} MB", progress)
    return meta


def _build_portable_corpora(progress: bool) -> dict:
    """Write the code, prose and c corpora; return the stdlib scan (reused by the code/prose tasks)."""
    t0 = time.time()
    std = sources.scan_stdlib()
    topics, topics_sha, topics_bytes = sources.pydoc_topics()
    headers, inc_sha, inc_bytes, inc_files = sources.c_headers()
    records = {
        "cpython-stdlib": {**sources.cpython_origin("stdlib (Lib/*.py without tests, idlelib, lib2to3, "
                                                    "encodings, turtledemo, ensurepip, pydoc_data, site-packages)"),
                           "sha256": std["sha256"], "sha256_of": "concatenated relpath+source of the files",
                           "bytes": std["raw_bytes"], "n_files": len(std["files"])},
        "cpython-pydoc-topics": {**sources.cpython_origin("pydoc_data.topics (Python language reference)"),
                                 "sha256": topics_sha, "sha256_of": "concatenated key+text of the topics",
                                 "bytes": topics_bytes, "n_topics": len(topics)},
        "cpython-include": {**sources.cpython_origin("C headers (include/python*/**.h)"), "sha256": inc_sha,
                            "sha256_of": "concatenated relpath+bytes of the headers", "bytes": inc_bytes,
                            "n_files": inc_files},
    }
    # the packages the code/module and prose/topic targets are cut from stay out of both corpora: a body
    # must not have read, in pretraining, the snippets and docstrings it is later scored on
    by_rel = {f["rel"]: f for f in std["files"] if not held_out(f["rel"])}
    order = sources.order(list(by_rel))
    code_docs = [by_rel[r]["code"] for r in order]
    doc_docs = ["\n\n".join(by_rel[r]["docs"]) for r in order if by_rel[r]["docs"]]
    prose_docs = [topics[i] for i in sources.order(list(range(len(topics))))] + doc_docs
    prose_docs = [prose_docs[i] for i in sources.order(list(range(len(prose_docs))))]
    pick = lambda *keys: {k: records[k] for k in keys}  # noqa: E731
    _write_corpus("code", code_docs, pick("cpython-stdlib"), "stdlib source, comments and docstrings stripped; "
                  f"held out: {', '.join(HELD_OUT)}", progress)
    _write_corpus("prose", prose_docs, pick("cpython-pydoc-topics", "cpython-stdlib"),
                  "reference topics + stdlib docstrings, code examples dropped; held out: the docstrings of "
                  + ", ".join(HELD_OUT), progress)
    _write_corpus("c", [headers[i] for i in sources.order(list(range(len(headers))))], pick("cpython-include"),
                  "C headers as they are", progress)
    say(f"[data] stdlib, pydoc topics, headers read and cleaned ({time.time() - t0:.1f} s)", progress)
    return std


def _build_debian_corpus(domain: str, progress: bool) -> dict | None:
    """Build an optional Debian corpus; on any failure say why in one line and return the skip record."""
    key = DEBIAN_SOURCES[domain]
    t0 = time.time()
    try:
        (data_dir() / ".tmp").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="deb-", dir=data_dir() / ".tmp") as tmp:
            if domain == "go":
                pkg, deb, root = sources.apt_fetch(sources.go_candidates(), Path(tmp))
                docs, lic = sources.go_docs(root), "BSD-3-Clause"
                note = f"first {sources.GO_MAX_BYTES / 1e6:.0f} MB of *.go (no tests, testdata, vendor), " \
                       "comments kept"
            else:
                pkg, deb, root = sources.apt_fetch(["sword-text-web"], Path(tmp))
                docs, lic, note = sources.sword_docs(root), "public domain (World English Bible)", \
                    "verse text of the SWORD zText module, one document per book"
            src = {"status": "ok", "origin": f"Debian {pkg} {sources.deb_version(deb)} (apt-get download)",
                   "version": sources.deb_version(deb), "license": lic, "sha256": sources.sha256_file(deb),
                   "sha256_of": deb.name, "bytes": deb.stat().st_size}
            _write_corpus(domain, docs, {key: src}, note, progress)
        say(f"[data] source    {src['origin']} ({time.time() - t0:.1f} s)", progress)
        return None
    except Exception as e:  # optional source: one line, recorded, never fatal
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        say(f"[data] corpus {domain:9s} skipped ({reason})", progress)
        return {"status": "skipped", "reason": reason}


# --------------------------------------------------------------------------------------------------
# Tokenizer: one byte-level BPE shared by every model and task; the token streams
# --------------------------------------------------------------------------------------------------
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
    with staging(data_dir() / "tokenizer") as tmp:
        fast.save_pretrained(tmp)
        meta = {"data_version": DATA_VERSION, "vocab_size": tok.get_vocab_size(), "special_tokens":
                {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}, "trained_on": list(PORTABLE_DOMAINS),
                "chars_per_domain": budget, "algorithm": "byte-level BPE (tokenizers), min_frequency 2",
                "sha256": sources.sha256_file(tmp / "tokenizer.json")}
        write_json(tmp / "meta.json", meta)
    read.tokenizer.cache_clear()
    say(f"[data] tokenizer  vocab {meta['vocab_size']} on {budget / 1e6:.2f} M chars x "
        f"{len(PORTABLE_DOMAINS)} domains ({time.time() - t0:.1f} s)", progress)
    return meta


def _encode_corpus(domain: str, progress: bool, root: Path | None = None) -> dict:
    """Tokenize corpora/<domain> under `root` (DATA_DIR, or DATA_DIR/full) into tokens/<domain> beside it,
    always with DATA_DIR's one tokenizer."""
    import numpy as np
    from tokenizers import Tokenizer

    t0 = time.time()
    root = root or data_dir()
    tok = Tokenizer.from_file(str(data_dir() / "tokenizer" / "tokenizer.json"))
    eos = tok.token_to_id(EOS)
    parts = []
    docs = [d for d in (root / "corpora" / domain / "text.txt").read_text(encoding="utf-8").split(EOS) if d]
    for enc in tok.encode_batch(docs, add_special_tokens=False):
        parts += [np.asarray(enc.ids, dtype=np.uint16), np.asarray([eos], dtype=np.uint16)]
    ids = np.concatenate(parts) if parts else np.zeros(0, np.uint16)
    with staging(root / "tokens" / domain) as tmp:
        np.save(tmp / "ids.npy", ids)
        meta = {"data_version": DATA_VERSION, "domain": domain, "n_tokens": int(ids.size),
                "sha256": sources.sha256_bytes(ids.tobytes()), "tokenizer_sha256": sources.sha256_file(
                    data_dir() / "tokenizer" / "tokenizer.json"), "dtype": "uint16"}
        write_json(tmp / "meta.json", meta)
    say(f"[data] tokens {domain:9s} {ids.size / 1e6:6.2f} M tokens ({time.time() - t0:.1f} s)", progress)
    return meta


# --------------------------------------------------------------------------------------------------
# prepare(): everything, once; manifest last
# --------------------------------------------------------------------------------------------------
def prepare(force: bool = False, progress: bool = True, profile: str = "smoke") -> dict:
    """Obtain and prepare every source once into DATA_DIR; return the manifest. Idempotent: with
    everything present it only reads the manifest. `force` rebuilds from scratch. The optional Debian
    corpora are tried once; a skip is recorded with its reason and not retried until `force`.
    profile="full" also fetches the larger corpora only the full bodies read (decoupling.data.full);
    the manifest returned is still the smoke one (the full one: full.read_full_manifest())."""
    from filelock import FileLock

    if profile == "full":
        m = prepare(force=force, progress=progress)
        if force:
            shutil.rmtree(full_dir(), ignore_errors=True)
        # decoupling.data.full sits above this module (it builds on prepare()): reached through its hook
        read.run_preparer("full", progress)
        return m

    d = data_dir()
    if not force:
        m = read_manifest()
        if complete(m):
            return m
    t_start = time.time()
    d.mkdir(parents=True, exist_ok=True)
    with FileLock(d / ".prepare.lock"):  # one prepare() at a time per DATA_DIR
        if not force and complete(read_manifest()):  # another process finished meanwhile
            return read_manifest()
        shutil.rmtree(d / ".tmp", ignore_errors=True)  # leftovers of an interrupted run
        if force:
            for sub in ("corpora", "tokenizer", "tokens", "tasks", "raw", "full", "manifest.json"):
                p = d / sub
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        read.clear_caches()
        say(f"[data] preparing into {d}", progress)
        skipped = {k: v for k, v in ((read_manifest() or {}).get("sources", {})).items()
                   if v.get("status") == "skipped"}

        # 1. portable corpora (the stdlib scan is reused by the code/prose tasks)
        std = None
        if not all(artifact_meta(d / "corpora" / c) for c in PORTABLE_DOMAINS):
            std = _build_portable_corpora(progress)
            for sub in ("tokenizer", "tokens"):  # both depend on the corpora
                shutil.rmtree(d / sub, ignore_errors=True)

        # 2. optional Debian corpora: tried once; a skip is remembered until force=True
        for dom, key in DEBIAN_SOURCES.items():
            if artifact_meta(d / "corpora" / dom) or key in skipped:
                continue
            rec = _build_debian_corpus(dom, progress)
            if rec:
                skipped[key] = rec
            shutil.rmtree(d / "tokens" / dom, ignore_errors=True)

        # 3. tokenizer (on the portable corpora only, so it is the same with or without Debian)
        if not artifact_meta(d / "tokenizer"):
            _train_tokenizer(progress)
            shutil.rmtree(d / "tokens", ignore_errors=True)
        # 4. token streams
        domains = [c for c in PORTABLE_DOMAINS + DEBIAN_DOMAINS if artifact_meta(d / "corpora" / c)]
        for dom in domains:
            if not artifact_meta(d / "tokens" / dom):
                _encode_corpus(dom, progress)

        # 5. tasks (downloads the vaderSentiment sdist if needed)
        tasks.build_tasks(std, progress)

        # 6. the manifest, last: a reader that finds it finds everything it lists
        manifest = _manifest(domains, skipped, progress)
        write_json(d / "manifest.json", manifest)
        shutil.rmtree(d / ".tmp", ignore_errors=True)
    say(summary(manifest), progress)
    say(f"[data] ready in {time.time() - t_start:.1f} s; manifest {read.manifest_hash()[:12]}", progress)
    return manifest


def _manifest(domains: list[str], skipped: dict, progress: bool) -> dict:
    """Derived from the artifacts' meta.json; no timestamps or absolute paths, so it is the same wherever
    the same sources are prepared, and its hash can key the results store."""
    d = data_dir()
    strip = lambda m: {k: v for k, v in m.items() if k not in ("data_version", "sources")}  # noqa: E731
    records = dict(skipped)
    for c in domains:
        records.update(artifact_meta(d / "corpora" / c)["sources"])
    v = sources.fetch_vader(progress)
    records["pypi-vaderSentiment"] = {k: v[k] for k in ("origin", "version", "license", "sha256",
                                                        "sha256_of", "bytes", "citation", "texts_from")}
    records["sklearn-digits"] = sources.digits_source()
    return {
        "data_version": DATA_VERSION,
        "sources": dict(sorted(records.items())),
        "corpora": {c: strip(artifact_meta(d / "corpora" / c)) for c in domains},
        "tokenizer": strip(artifact_meta(d / "tokenizer")),
        "tokens": {c: strip(artifact_meta(d / "tokens" / c)) for c in domains},
        "tasks": {t: strip(artifact_meta(task_dir(t))) for t in TASKS},
    }


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
    """`python -m decoupling.data`: prepare, then print the summary table, the tasks and the manifest hash."""
    import argparse
    import sys

    # the package is always imported before its modules: read its docstring without importing it back
    p = argparse.ArgumentParser(prog="python -m decoupling.data",
                                description=sys.modules["decoupling.data"].__doc__.split("\n")[0])
    p.add_argument("--force", action="store_true", help="rebuild everything from the sources")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--profile", choices=("smoke", "full"), default="smoke",
                   help="full: also fetch the larger corpora the full bodies read (~90 MB, a few minutes)")
    a = p.parse_args(argv)
    warm = not a.force and complete(read_manifest())
    m = prepare(force=a.force, progress=not a.quiet, profile=a.profile)
    if warm or a.quiet:  # a build already showed the table on the terminal
        print(summary(m))
    print("tasks: " + ", ".join(f"{t} ({v['n_train']}+{v['n_test']})" for t, v in m["tasks"].items()))
    print(f"manifest {data_dir() / 'manifest.json'}  sha256 {read.manifest_hash()}")
    if a.profile == "full":
        fm = read_full_manifest()
        print("full corpora: " + ", ".join(f"{d} {v['n_tokens']:,} tokens" for d, v in fm["tokens"].items()))
        print("full tasks: " + ", ".join(f"{t} ({v['n_train']}+{v['n_test']})" for t, v in fm["tasks"].items()))
        print(f"full manifest {full_dir() / 'manifest.json'}  sha256 {read.manifest_hash(profile='full')}")
    return 0


# the readers prepare missing smoke data through this hook (read must not import this module back)
read.register_preparer("smoke", lambda progress=True: prepare(progress=progress))
