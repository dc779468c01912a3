"""Writing files so that an interrupted run never leaves half of one, and the one canonical JSON.

`atomic_write` writes a temp file in the destination's directory, fsyncs it and renames it into place
(`os.replace` is atomic on POSIX and Windows within one filesystem), so a reader sees the old file or the
new one, never a torn one. `canonical` is the JSON every hash in the project is taken over: sorted keys,
no spaces, ASCII, dataclasses / numpy / paths / sets made JSON-able the same way everywhere.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path


_UMASK = os.umask(0)
os.umask(_UMASK)


def _jsonable(o):
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return {"__type__": type(o).__name__, **dataclasses.asdict(o)}
    if hasattr(o, "tolist"):  # numpy arrays and scalars, torch tensors
        return o.tolist()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def canonical(obj) -> str:
    """The canonical JSON of `obj` (what keys and checksums hash)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=_jsonable)


def pretty(obj) -> str:
    """Readable JSON for files people open (records, sidecars, manifests); same value as `canonical`."""
    return json.dumps(obj, sort_keys=True, indent=1, default=_jsonable) + "\n"


def atomic_write(path: Path | str, data: bytes | str) -> Path:
    """Write `data` to `path` atomically (temp file + fsync + rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; a written file gets the usual permissions
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path | str, obj) -> Path:
    """`pretty(obj)` written atomically."""
    return atomic_write(path, pretty(obj))
