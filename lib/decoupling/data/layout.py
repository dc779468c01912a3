"""The prepared data's names and its layout on disk, shared by the readers and the preparation.

DATA_DIR holds one directory per artifact (corpora/<domain>, tokenizer, tokens/<domain>, tasks/<slug>,
raw/vader), each with a meta.json, and manifest.json last. An artifact is built in a temporary directory
and renamed into place complete (`staging`), so a reader finds a whole artifact or none; its meta.json
carries DATA_VERSION, and an artifact of another version counts as absent (`artifact_meta`).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

# Changing anything that alters prepared data must bump DATA_VERSION: artifacts carry it in their meta.json
# and are rebuilt when it differs.
DATA_VERSION = 2  # 2: the target tasks' packages held out of the code and prose corpora
EOS, BOS, PAD, CLS = "<|eos|>", "<|bos|>", "<|pad|>", "<|cls|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, CLS]  # ids 0, 1, 2, 3 (in this order, by construction)
VOCAB_SIZE = 4096
ORDER_SEED = 0  # documents are sorted by path, then put in one fixed random order (see sources.order)
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
TASKS = (*SENTIMENT_FILES, "code/module", "prose/topic", "digits/0-4", "digits/5-9")
# Tasks only the `full` data step prepares (decoupling.data.unexposed), under DATA_DIR/full/tasks and
# recorded in the full manifest, so the smoke manifest, the key of every smoke result, never depends on them.
FULL_TASKS = ("code/agents",)

# The stdlib packages the code/module and prose/topic targets are cut from (labels: each has >= 3 files and
# >= 4.8k lines). Decontamination: their source, their docstrings and their pages of the Python docs are
# held out of every pretraining corpus (tests/test_decontamination.py checks every target text).
HELD_OUT = ("asyncio", "email", "http", "importlib", "logging", "multiprocessing", "unittest", "xml")


def held_out(rel: str) -> bool:
    """Whether a stdlib file (path relative to Lib/, e.g. "email/parser.py") belongs to a held-out package."""
    return rel.split("/")[0].removesuffix(".py") in HELD_OUT


def data_dir() -> Path:
    """DATA_DIR from decoupling.paths, read at call time (tests may point it elsewhere)."""
    from decoupling import paths
    return Path(paths.DATA_DIR)


def check(name: str, valid, what: str) -> None:
    """Refuse an unknown task or domain name, listing the valid ones."""
    if name not in valid:
        raise ValueError(f"unknown {what} {name!r}; valid {what}s: {', '.join(valid)}")


def slug(name: str) -> str:
    """A task name as a directory name ("sentiment/movies" -> "sentiment__movies")."""
    return name.replace("/", "__")


def task_dir(name: str) -> Path:
    return (full_dir() if name in FULL_TASKS else data_dir()) / "tasks" / slug(name)


def artifact_meta(path: Path) -> dict | None:
    """An artifact's meta.json if the artifact is complete and current, else None."""
    try:
        m = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return m if m.get("data_version") == DATA_VERSION else None


def read_manifest() -> dict | None:
    try:
        return json.loads((data_dir() / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def full_dir() -> Path:
    """Where decoupling.data.full's larger corpora live (here so the reader need not import that module)."""
    return data_dir() / "full"


def read_full_manifest() -> dict | None:
    try:
        return json.loads((full_dir() / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def complete(m: dict | None) -> bool:
    """The warm path: the manifest exists and every artifact it lists is present and current."""
    if not m or m.get("data_version") != DATA_VERSION:
        return False
    d = data_dir()
    need = [d / "tokenizer"] + [task_dir(t) for t in TASKS]
    need += [d / "corpora" / c for c in m.get("corpora", {})] + [d / "tokens" / c for c in m.get("tokens", {})]
    return all(artifact_meta(p) for p in need)


@contextlib.contextmanager
def staging(final: Path):
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
        os.replace(tmp, final)  # a directory: decoupling.files.atomic_write is for single files
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def say(msg: str, progress: bool = True) -> None:
    """One line for the person at the terminal (never into a notebook's output)."""
    if progress:
        from decoupling.progress import report
        report(msg)
