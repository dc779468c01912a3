"""Progress bars that reach the terminal, never the book.

Inside a papermill kernel `sys.stderr` is captured into the notebook; `sys.__stderr__` is the kernel
process's own stderr, which the rebuild passes through to the user's terminal. So a training bar shows
live where the user is watching and the executed chapter stays clean. DECOUPLING_PROGRESS=0 silences.
"""
from __future__ import annotations

import os
import sys

from tqdm import tqdm as _tqdm


def enabled() -> bool:
    return os.environ.get("DECOUPLING_PROGRESS", "1") != "0"


def bar(iterable=None, **kw):
    kw.setdefault("mininterval", 1.0)
    kw.setdefault("dynamic_ncols", True)
    kw.setdefault("leave", False)
    kw.setdefault("disable", not enabled())
    return _tqdm(iterable, file=sys.__stderr__ or sys.stderr, **kw)




def report(msg: str) -> None:
    """A one-line message for the person at the terminal (not the book), e.g. a corrupted cache entry."""
    print(msg, file=sys.__stderr__ or sys.stderr, flush=True)
