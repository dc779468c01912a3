"""How fast each shape of work runs on this machine: the rates `decoupling compute --count` turns counts into
minutes with.

`pipeline.cost` counts a run's work per shape (training steps or forward calls of one architecture on one
input shape) without training anything. Time per unit differs by orders of magnitude between shapes, and
with the processor, the dtype and the torch version, so counts become minutes only through rates measured
here, on the machine that will run them, and kept so that each shape is measured once.

**Rates.** Each shape's rate is measured here: the first time a count meets a shape, the real step or pass
runs on the run's real batch (`measure`: a warm-up call, then ten calls or a third of a second; a forward
probe reads at most `cost.PROBE_TOKENS` tokens a call), under the process's dtype
(`device.autocast(model)`), on the threads the run uses, and the rate is kept under .cache/cost/rates, one
file per (device, dtype, bf16 width threshold, torch version, CPU model and its bf16/AVX-512 flags:
`context`). Minutes = Σ units / rate over shapes (`cost.estimate`). A rate measured while others load the
machine stays in the cache: `decoupling compute --count --remeasure` measures again.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import time
from pathlib import Path
from typing import Callable

from decoupling import files, paths


# ================================================================================== measuring a rate
def measure(run: Callable[[int], float], units_per_call: float, seconds: float = 0.3, calls: int = 10) -> float:
    """Units per second of a call: `run(n)` makes n calls and returns the seconds they took. One call warms
    up (allocations, kernel choice, optimizer state: a bf16 model's first call can take several times the
    next); then `calls` calls are timed and more until `seconds` have passed, or until a tenth of `seconds`
    once `calls` are done (a quick call needs no more); a call slower than `seconds` is timed once.
    The probe of every shape, and of benchmarks/cpu_pilot.py."""
    per = max(run(1), 1e-9)
    n_done, t_done = 0, 0.0
    while True:
        goal = seconds / 10 if n_done >= calls else seconds
        if t_done >= goal:
            break
        left = calls - n_done if n_done < calls else 10_000
        n = int(max(1, min(left, (goal - t_done) / per)))
        t_done += run(n)
        n_done += n
        per = max(t_done / n_done, 1e-9)
    return units_per_call * n_done / t_done


def timed(call: Callable[[], object]) -> Callable[[int], float]:
    """`run(n)` for `measure`: n calls of `call()`, their seconds."""
    def run(n: int) -> float:
        from decoupling.core.device import sync
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            call()
        sync()
        return time.perf_counter() - t0
    return run


# ================================================================================== what a rate depends on
def cpu_name() -> str:
    """The processor's model name and the flags that decide bf16 speed (a VM often hides the generation)."""
    name, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("", platform.machine(), platform.processor()):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    have = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name} [{' '.join(have)}]" if have else name


def context() -> dict:
    """What a measured rate depends on besides its shape."""
    import torch

    from decoupling.core import device
    dev = device.name() if device.DEVICE.type == "cuda" else cpu_name()
    return {"device": device.DEVICE.type, "name": dev, "dtype": str(getattr(device, "DTYPE", "")),
            "bf16_min_width": getattr(device, "BF16_MIN_WIDTH", None), "torch": torch.__version__.split("+")[0]}


# ================================================================================== the rates kept
def cache_dir() -> Path:
    """What counting learns about this machine: the rates (rates/) and `pipeline.cost`'s tallies (counts/)."""
    return paths.STORE_DIR.parent / "cost"


def rates_path(ctx: dict | None = None) -> Path:
    """The rates file of a context (this process's by default): rates measured under another dtype, torch or
    CPU never answer for this one."""
    name = hashlib.sha256(files.canonical(ctx or context()).encode()).hexdigest()[:16]
    return cache_dir() / "rates" / f"{name}.json"


def load_rates(path: Path | None = None) -> dict:
    """The rates kept in `path` (this context's file by default): {Shape.key: {"rate": units per second,
    ...}}, empty when none are."""
    path = path or rates_path()
    try:
        return json.loads(path.read_text())["rates"]
    except (OSError, ValueError, KeyError):
        return {}


def save_rates(rates: dict, path: Path | None = None) -> dict:
    """Merge `rates` into the file (another count may have measured other shapes meanwhile); the merged
    table."""
    path = path or rates_path()
    merged = {**load_rates(path), **rates}
    files.atomic_write(path, files.pretty({"context": context(), "rates": merged}))
    return merged
