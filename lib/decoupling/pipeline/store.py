"""The results store: every experiment result, cached as a small JSON record.

Key = sha256(experiment, config, library source, data manifest, profile, torch version, device type), so
a rebuild with nothing changed trains nothing, and any change that could alter a number recomputes it.
Writes are atomic (temp file + os.replace in the same directory); each record carries a checksum of its
content, and a corrupted record is reported, ignored and recomputed.

Layout: <root>/<experiment>/<logical>/<key>.json where `logical` hashes only (experiment, config,
profile). Two roots are searched: the local store (.cache/store) and the committed results/ folder that
holds `full` records computed on a GPU. A `full` build on a machine without CUDA never has a GPU record's
exact key (torch version and device type are in it), so it looks the record up by logical key and shows
it — marked *stale* when the library source or the data changed since it was computed — rather than
silently retraining for hours on a CPU or showing an outdated number as current. When there is no
committed record at all, a `full` run on a machine without CUDA is refused with what to do (`NeedsGPU`)
unless DECOUPLING_ALLOW_CPU_FULL=1 (`decoupling rebuild --allow-cpu-full`) says to compute it here anyway.
An experiment that needs no GPU at any profile says so (`runs_on_cpu`): a `full` build computes it on a
CPU like any other missing record. `decoupling compute --profile full` computes every `full` record into
results/, on a CPU or a GPU (`pipeline.compute`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from decoupling import files, paths
from decoupling.files import canonical
from decoupling.pipeline import provenance
from decoupling.progress import report
from decoupling.profiles import check_profile


def _sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


ALLOW_CPU_FULL = "DECOUPLING_ALLOW_CPU_FULL"


@contextlib.contextmanager
def _computing(root: Path, name: str):
    """One process at a time computes a given key: chapters executed side by side (`decoupling rebuild
    --jobs`) that need the same experiment or pretrained body wait for the first one and then read its
    record, instead of training it twice. The caller looks the key up again once it holds the lock."""
    from filelock import FileLock
    (root / ".locks").mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".locks" / f"{name}.lock")):
        yield


class NeedsGPU(RuntimeError):
    """A `full` result that nobody has computed on a GPU yet, asked for on a machine without CUDA."""


DRAW_ONLY = "DECOUPLING_DRAW_ONLY"


class NotComputed(RuntimeError):
    """A record or artifact asked for while the store only draws (DECOUPLING_DRAW_ONLY=1, `decoupling
    rebuild --draw-only`): the pages of such a build execute no experiment; `decoupling compute` makes
    what is missing."""


def _refuse_if_draw_only(name: str, profile: str) -> None:
    if os.environ.get(DRAW_ONLY) == "1":
        raise NotComputed(f"{name} at profile {profile!r} is not in the store, and this build only draws "
                          f"records: compute it first with `decoupling compute --profile {profile}`")


@dataclass
class Record:
    value: dict
    meta: dict = field(default_factory=dict)

    @property
    def cache_hit(self) -> bool:
        return bool(self.meta.get("cache_hit"))

    @property
    def stale(self) -> bool:
        return bool(self.meta.get("stale"))


def experiment_name(fn: Callable) -> str:
    return f"{fn.__module__.removeprefix('decoupling.')}.{fn.__qualname__}"


def keys(fn: Callable, config, profile: str) -> tuple[str, str, dict]:
    import torch
    from decoupling.core.device import DEVICE
    name = experiment_name(fn)
    cfg = json.loads(canonical(config))
    logical = _sha(canonical({"experiment": name, "config": cfg, "profile": profile}))
    parts = {
        "experiment": name, "config": cfg, "profile": profile,
        "source": provenance.source_hash(fn.__module__), "data": provenance.data_hash(profile),
        "torch": torch.__version__.split("+")[0], "device": DEVICE.type,
    }
    return logical, _sha(canonical(parts)), parts


def _checksum(body: dict) -> str:
    return _sha(canonical({k: v for k, v in body.items() if k != "checksum"}))


_REPORTED: set[tuple[str, int]] = set()  # corrupted records already reported by this process


def _read(path: Path) -> dict | None:
    """A verified record, or None (reported once per process and version of the file) when it is corrupted:
    `run` looks a key up twice, before and after taking its lock."""
    try:
        body = json.loads(path.read_text())
        if not is_intact(body):
            raise ValueError("checksum mismatch")
        return body
    except (OSError, ValueError) as e:
        try:
            seen = (str(path), path.stat().st_mtime_ns)
        except OSError:
            seen = (str(path), -1)
        if seen not in _REPORTED:
            _REPORTED.add(seen)
            report(f"[store] corrupted record {path}: {e}; ignoring it and recomputing")
        return None


def _roots(store: Path | None) -> list[Path]:
    return [store or paths.STORE_DIR, paths.RESULTS_DIR]


def _current(body: dict, parts: dict) -> bool:
    return body["meta"].get("source") == parts["source"] and body["meta"].get("data") == parts["data"]


def is_intact(body: dict) -> bool:
    """The record's content matches its checksum (what `lookup` trusts)."""
    return body.get("checksum") == _checksum(body)


def lookup(fn: Callable, config, profile: str, store: Path | None = None) -> Record | None:
    from decoupling.core.device import DEVICE
    logical, key, parts = keys(fn, config, profile)
    name = experiment_name(fn)
    for root in _roots(store):
        p = root / name / logical[:16] / f"{key[:16]}.json"
        if p.exists() and (body := _read(p)) is not None:
            return Record(body["value"], {**body["meta"], "cache_hit": True, "stale": False, "path": str(p)})
    if profile == "full" and DEVICE.type != "cuda":
        # A GPU's record never has this machine's exact key (torch version and device type differ), so
        # search by logical key and judge freshness by what decides the numbers: the library source and
        # the data. Current ones first, else the newest, marked stale.
        found = [(p, b) for p in (paths.RESULTS_DIR / name / logical[:16]).glob("*.json") if (b := _read(p))]
        if found:
            p, body = max(found, key=lambda pb: (_current(pb[1], parts), pb[1]["meta"].get("created", "")))
            return Record(body["value"], {**body["meta"], "cache_hit": True, "stale": not _current(body, parts),
                                          "path": str(p)})
    return None


def runs_on_cpu(fn: Callable) -> bool:
    """Whether `fn` needs no GPU even at `full` (forward passes and linear probes, say): its module marks
    it with `fn.runs_on_cpu = True`, and a `full` build on a CPU computes it instead of asking for a GPU."""
    return bool(getattr(fn, "runs_on_cpu", False))


def run(fn: Callable, config, *, profile: str, store: Path | None = None, force: bool = False) -> Record:
    """Return fn(config), from the store when an identical computation was done before.

    `fn` must be a module-level function of one frozen-dataclass argument returning a JSON-able dict.
    """
    check_profile(profile)
    if not force and (rec := lookup(fn, config, profile, store)) is not None:
        return rec
    _refuse_if_draw_only(experiment_name(fn), profile)
    from decoupling.core import device
    if profile == "full" and device.DEVICE.type != "cuda" and not runs_on_cpu(fn) and \
            os.environ.get(ALLOW_CPU_FULL) != "1":
        # `full` is sized for one H100: minutes there, hours on a laptop CPU. Say so instead of starting.
        raise NeedsGPU(
            f"{experiment_name(fn)} at profile 'full': no GPU-computed record in results/ and no CUDA GPU here "
            f"({device.name()}). Compute the missing records with `decoupling compute --profile full` (on a GPU: "
            f"benchmarks/gpu_full.py) and commit results/, or here inside the build with `decoupling rebuild "
            f"--profile full --allow-cpu-full` ({ALLOW_CPU_FULL}=1).")
    logical, key, parts = keys(fn, config, profile)
    with _computing(store or paths.STORE_DIR, f"{parts['experiment']}-{key[:16]}"):
        if not force and (rec := lookup(fn, config, profile, store)) is not None:  # another process made it
            return rec
        return _compute(fn, config, profile, store, logical, key, parts)


def _compute(fn: Callable, config, profile: str, store: Path | None, logical: str, key: str, parts: dict) -> Record:
    from decoupling.core import device
    t0 = time.perf_counter()
    value = fn(config)
    wall = time.perf_counter() - t0
    value = json.loads(canonical(value))  # fail now, not at read time, if it is not JSON-able
    commit, dirty = provenance.git_state()
    meta = {
        "experiment": parts["experiment"], "profile": profile, "key": key, "logical": logical,
        "wall_time_s": round(wall, 3), "device": device.name(), "device_type": device.DEVICE.type,
        "dtype": device.dtype_name(),
        "commit": commit, "dirty": dirty, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seeds": _seeds(config), **provenance.versions(), "source": parts["source"], "data": parts["data"],
    }
    body = {"config": parts["config"], "value": value, "meta": meta}
    body["checksum"] = _checksum(body)
    path = (store or paths.STORE_DIR) / parts["experiment"] / logical[:16] / f"{key[:16]}.json"
    files.write_json(path, body)
    return Record(value, {**meta, "cache_hit": False, "stale": False, "path": str(path)})


def _seeds(config) -> list:
    d = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}
    out = []
    for k, v in d.items():
        if "seed" in k:
            out.extend(v if isinstance(v, (list, tuple)) else [v])
    return out


def artifact(fn: Callable, config, *, profile: str, store: Path | None = None, force: bool = False) -> Path:
    """A directory of files (e.g. a pretrained checkpoint as safetensors) made once by `fn(config, out_dir)`
    and cached under the same key as `run` would use. Built in a temp dir and renamed into place, so an
    interrupted run leaves nothing half-written. `fn` may return a dict that is saved as result.json.

    Chapters share pretrained bodies through this: the generality chapter pretrains them, the computers
    chapter finds them here instead of training again."""
    check_profile(profile)
    final = artifact_path(fn, config, profile, store)
    if (final / "DONE").exists() and not force:
        return final
    _refuse_if_draw_only(experiment_name(fn), profile)
    logical, key, parts = keys(fn, config, profile)
    with _computing(store or paths.STORE_DIR, f"artifact-{parts['experiment']}-{key[:16]}"):
        return _build_artifact(fn, config, profile, final, key, parts, force)


def artifact_path(fn: Callable, config, profile: str, store: Path | None = None) -> Path:
    """Where `artifact` keeps (or will keep) the directory of `fn(config)`; finished when it holds DONE."""
    logical, key, parts = keys(fn, config, profile)
    return (store or paths.STORE_DIR) / "artifacts" / parts["experiment"] / f"{logical[:12]}-{key[:12]}"


def _build_artifact(fn: Callable, config, profile: str, final: Path, key: str, parts: dict, force: bool) -> Path:
    import shutil
    if final.exists() and not force:
        if (final / "DONE").exists():
            return final
        report(f"[store] incomplete artifact {final}; rebuilding it")
        shutil.rmtree(final, ignore_errors=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=".tmp-"))
    try:
        t0 = time.perf_counter()
        out = fn(config, tmp)
        meta = {"experiment": parts["experiment"], "config": parts["config"], "profile": profile,
                "wall_time_s": round(time.perf_counter() - t0, 3), "result": out}
        (tmp / "result.json").write_text(files.pretty(meta))
        (tmp / "DONE").write_text(key)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
