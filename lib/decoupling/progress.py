"""Progress bars and one-line reports for the person running a command, never for the book's pages.

A chapter executed by `decoupling rebuild` runs in a Jupyter kernel, where `sys.stderr` is the notebook's
output and file descriptor 2 has been moved onto a pipe that feeds the notebook too. The kernel's original
standard error is still open: it was inherited from the rebuild through papermill, and ipykernel keeps a
copy of it (the descriptor `sys.stderr.fileno()` returns). Bars and reports go through that copy, so they
reach the terminal or log file the rebuild was launched from and share its file offset: `make book >
build.log 2>&1` keeps every chapter's lines, in order. (Opening the launcher's stderr again by path would
truncate a log file, or write at a second offset over the rebuild's own lines.)

Anywhere else (a script, a terminal, a notebook opened by hand) they go to the process's standard error.
DECOUPLING_PROGRESS=0 silences the bars; reports are always written.

Importing this module inside a Jupyter kernel also settles tqdm's notebook-or-terminal choice; see
`_plain_tqdm_without_widgets`.
"""
from __future__ import annotations

import importlib.util
import io
import os
import sys
import warnings

from tqdm import TqdmWarning
from tqdm import tqdm as _tqdm

# Set by `decoupling rebuild` in the environment of the kernels it starts: their notebook is a page.
BOOK_BUILD = "DECOUPLING_BOOK_BUILD"


def enabled() -> bool:
    return os.environ.get("DECOUPLING_PROGRESS", "1") != "0"


_SINK = None


def _sink():
    """Where bars and reports go (opened once per process)."""
    global _SINK
    if _SINK is None:
        _SINK = (_launcher_stderr() if os.environ.get(BOOK_BUILD) else None) or sys.__stderr__ or sys.stderr
    return _SINK


def _launcher_stderr():
    """A text stream on the kernel's inherited standard error, or None where there is no such copy (not in
    an ipykernel, or one that does not capture fd 2 — then `sys.__stderr__` is the inherited stream)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    # a duplicate, so closing this stream never closes the kernel's own copy
    return open(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")


def bar(iterable=None, **kw):
    kw.setdefault("mininterval", 1.0)
    kw.setdefault("dynamic_ncols", True)
    kw.setdefault("leave", False)
    kw.setdefault("disable", not enabled())
    return _tqdm(iterable, file=_sink(), **kw)


def report(msg: str) -> None:
    """A one-line message for the person at the terminal (not the book), e.g. a corrupted cache entry."""
    print(msg, file=_sink(), flush=True)


def _plain_tqdm_without_widgets() -> None:
    """The libraries the chapters use (transformers, datasets, huggingface_hub) import `tqdm.auto`. In a
    Jupyter kernel without ipywidgets that import warns "IProgress not found ..." on the notebook's stderr,
    which would print a warning block on a page of the book, and then picks tqdm's plain bar anyway. Make
    that same choice here, once, without the notice: every later import of `tqdm.auto` reuses it. Nothing
    else is filtered, and with ipywidgets installed nothing changes."""
    if "ipykernel" not in sys.modules or importlib.util.find_spec("ipywidgets") is not None:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)
        import tqdm.auto  # noqa: F401


_plain_tqdm_without_widgets()
