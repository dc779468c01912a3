"""Device and dtype, chosen once for the whole process (nanoGPT/nanochat style).

CUDA when present: bf16 autocast (same exponent range as fp32, so no loss scaling) and TF32 matmuls.
CPU: fp32 and deterministic algorithms, so two CPU runs with one seed give bitwise-identical weights.
Set DECOUPLING_DEVICE=cpu to force the CPU on a GPU machine.
"""
from __future__ import annotations

import contextlib
import os

import torch

_want = os.environ.get("DECOUPLING_DEVICE", "")
DEVICE = torch.device(_want or ("cuda" if torch.cuda.is_available() else "cpu"))
DTYPE = torch.bfloat16 if DEVICE.type == "cuda" else torch.float32
REASON = (
    "CUDA present: bf16 autocast, TF32 matmuls, fused AdamW" if DEVICE.type == "cuda"
    else "no CUDA: fp32 on CPU, deterministic algorithms (bitwise-reproducible runs)"
)

if DEVICE.type == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
else:
    torch.use_deterministic_algorithms(True, warn_only=True)

# Dense bf16 peak FLOP/s per device (vendor datasheets, no sparsity) for MFU (PaLM appendix B).
PEAK_BF16 = {
    "H100": 989e12,  # H100 SXM
    "H200": 989e12,
    "A100": 312e12,
    "L4": 121e12,
    "A10": 125e12,
    "T4": 65e12,
}


def autocast():
    """The one autocast context of the process: bf16 on CUDA, a no-op on CPU."""
    if DEVICE.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync() -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously), so a clock read after it
    measures the work; nothing to wait for on CPU."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def name() -> str:
    if DEVICE.type == "cuda":
        return torch.cuda.get_device_name(DEVICE)
    import platform
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def describe() -> str:
    return f"{name()} — {REASON}"


def peak_flops() -> float | None:
    if DEVICE.type != "cuda":
        return None
    gpu = name()
    for key, val in PEAK_BF16.items():
        if key in gpu:
            return val
    return None


@contextlib.contextmanager
def cpu_threads(n: int = 1):
    """Run on `n` CPU threads (torch intra-op and the BLAS under numpy), then restore the counts.

    Why: the book's models are tiny; intra-op threads cost more than they save, and on a loaded 2-core
    machine two threads per process ran 10–30× slower than one (a 1-layer GPT-2 run: 75 s vs 2.4 s; a
    300×3000 SVD 4.1 s vs 0.14 s). A fixed count also keeps CPU results independent of the core count.
    On CUDA the CPU is only feeding the GPU, so nothing is limited there."""
    if DEVICE.type != "cpu":
        yield
        return
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)
