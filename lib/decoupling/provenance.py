"""Who made a result: commit, dirty flag, versions, device. Shared by the store and the figures."""
from __future__ import annotations

import functools
import hashlib
import subprocess

from decoupling.paths import LIB_DIR, ROOT

# Modules that only present results: editing them must not invalidate trained results.
PRESENTATION = {"figures.py", "book.py", "rebuild.py", "cli.py", "claims.py", "status.py", "__main__.py",
                "sweeps.py", "publish.py", "history.py", "demo.py"}


@functools.lru_cache(maxsize=None)
def git_state() -> tuple[str, bool]:
    """(commit, dirty). 'unknown' outside a git checkout (e.g. an sdist)."""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or "unknown"
        dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "lib", "book"],
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


@functools.lru_cache(maxsize=None)
def versions() -> dict:
    import torch
    out = {"torch": torch.__version__}
    try:
        import transformers
        out["transformers"] = transformers.__version__
    except ImportError:
        out["transformers"] = None
    return out


@functools.lru_cache(maxsize=None)
def source_hash(module_file: str | None = None) -> str:
    """sha256 of the library's computing code: every module but the presentation ones and the
    experiments of *other* chapters, plus the experiment's own module. Editing a figure helper or
    another chapter's experiments therefore keeps this chapter's results valid."""
    h = hashlib.sha256()
    files = sorted(p for p in LIB_DIR.glob("*.py") if p.name not in PRESENTATION)
    if module_file:
        files.append(LIB_DIR / "experiments" / module_file)
    for p in files:
        if p.exists():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def data_hash() -> str:
    """The prepared data's manifest hash, or 'none' when no data was prepared (synthetic chapters)."""
    try:
        from decoupling import data
        # portable: the PyPI/stdlib sources only, so a machine without apt (no Debian extras) computes
        # the same keys and finds the committed results
        return data.manifest_hash(portable=True)
    except Exception:  # no data prepared yet: experiments that need data will fail on their own
        return "none"
