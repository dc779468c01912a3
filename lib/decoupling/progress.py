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


_SINK = None


def _sink():
    """Where bars go. `decoupling rebuild` sets DECOUPLING_PROGRESS_TO to its own stderr (/proc/<pid>/fd/2):
    ipykernel captures the kernel's fd 2 into the notebook, so writing there would print bars into the
    book. Outside a rebuild: the process's own stderr."""
    global _SINK
    if _SINK is None:
        target = os.environ.get("DECOUPLING_PROGRESS_TO")
        try:
            _SINK = open(target, "w", buffering=1) if target else (sys.__stderr__ or sys.stderr)
        except OSError:
            _SINK = sys.__stderr__ or sys.stderr
    return _SINK


def bar(iterable=None, **kw):
    kw.setdefault("mininterval", 1.0)
    kw.setdefault("dynamic_ncols", True)
    kw.setdefault("leave", False)
    kw.setdefault("disable", not enabled())
    return _tqdm(iterable, file=_sink(), **kw)




def report(msg: str) -> None:
    """A one-line message for the person at the terminal (not the book), e.g. a corrupted cache entry."""
    print(msg, file=_sink(), flush=True)
