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

On a terminal a bar redraws itself in place. Anywhere else (`make book > build.log 2>&1`, a pipe, CI) a
redraw would put carriage returns in the file, so a bar writes whole lines instead: one when it starts, one
when it ends (count, elapsed time, rate), and one at most every DECOUPLING_PROGRESS_EVERY seconds (default
60) in between; see `_Lines`. papermill's bar in the rebuild gets the same treatment through `tqdm_kwargs`.

Importing this module inside a Jupyter kernel also settles tqdm's notebook-or-terminal choice; see
`_plain_tqdm_without_widgets`.
"""
from __future__ import annotations

import importlib.util
import io
import os
import sys
import time
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
    return _tqdm(iterable, **tqdm_kwargs({**kw, "file": _sink()}))


# What a bar's line says in a log: no bar drawing, the numbers a terminal bar shows beside it.
LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


def tqdm_kwargs(kw: dict) -> dict:
    """tqdm keyword arguments `kw` (whose "file" is where the bar goes) made fit for that stream: unchanged
    on a terminal; elsewhere the bar writes whole lines through `_Lines`, at position 0 (each bar has a
    stream of its own, so bars open at the same time never move each other's lines), and is left at the
    end (tqdm then draws the final count and average rate once more, which becomes the closing line)."""
    out = kw.get("file") or sys.stderr
    if _is_terminal(out):
        return kw
    return {**kw, "file": _Lines(out), "position": 0, "leave": True, "dynamic_ncols": False, "ncols": None,
            "bar_format": LINE_FORMAT, "desc": (kw.get("desc") or "progress").strip()}


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def _every() -> float:
    try:
        return float(os.environ.get("DECOUPLING_PROGRESS_EVERY", 60))
    except ValueError:
        return 60.0


class _Lines:
    """A file for one tqdm bar that turns its redraws into whole lines on `out`.

    tqdm redraws a bar by writing a carriage return and the new state (padded with spaces), and ends a bar
    that is left on screen by drawing it once more and writing a newline. Here the first redraw becomes a
    line (the start), later ones at most every `every` seconds, the one before the newline always (the end);
    anything after the end (tqdm clearing a bar) is dropped. Each line is one write, so lines of bars in
    other threads or processes never mix within a line."""

    def __init__(self, out, every: float | None = None):
        self._out = out
        self._every = _every() if every is None else every
        self._state = ""
        self._said_at = None  # when the last line was written (None: not yet)
        self._ended = False
        self.encoding = getattr(out, "encoding", None) or "utf-8"

    def write(self, text: str) -> int:
        if self._ended or not text:
            return len(text)
        ends = "\n" in text
        drawn = text.replace("\n", "").split("\r")[-1].strip()
        if drawn:
            self._state = drawn
        now = time.monotonic()
        due = self._said_at is None or now - self._said_at >= self._every
        if self._state and (ends or (drawn and due)):
            self._out.write(self._state + "\n")
            self._out.flush()
            self._said_at = now
        self._ended = ends
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


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
