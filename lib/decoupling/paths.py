"""Where things live. Everything is relative to the repository root unless an env variable says otherwise.

Env overrides (used by tests to get an isolated, empty store or build dir):
  DECOUPLING_ROOT   the book's root (holds _toc.yml)
  DECOUPLING_DATA   prepared data cache        (default ROOT/.cache/data)
  DECOUPLING_STORE  results store              (default ROOT/.cache/store)
  DECOUPLING_BUILD  executed notebooks + html  (default ROOT/_build)
"""
from __future__ import annotations

import os
from pathlib import Path


def _find_root() -> Path:
    if os.environ.get("DECOUPLING_ROOT"):
        return Path(os.environ["DECOUPLING_ROOT"]).resolve()
    # The package lives at ROOT/lib/decoupling; an editable install keeps that layout.
    here = Path(__file__).resolve().parent
    for cand in (here.parent.parent, Path.cwd(), *Path.cwd().parents):
        if (cand / "_toc.yml").exists() and (cand / "lib" / "decoupling").exists():
            return cand
    return Path.cwd()


ROOT = _find_root()
DATA_DIR = Path(os.environ.get("DECOUPLING_DATA", ROOT / ".cache" / "data"))
STORE_DIR = Path(os.environ.get("DECOUPLING_STORE", ROOT / ".cache" / "store"))
BUILD_DIR = Path(os.environ.get("DECOUPLING_BUILD", ROOT / "_build"))
# Result records computed at `full` on a GPU and committed to the repository (see store.py).
RESULTS_DIR = ROOT / "results"
LIB_DIR = Path(__file__).resolve().parent
