"""Device and dtype, chosen once for the whole process (nanoGPT/nanochat style).

CUDA when present: bf16 autocast (same exponent range as fp32, so no loss scaling) and TF32 matmuls.
CPU with bf16 units (x86 avx512_bf16 or AMX): bf16 autocast for every transformer at least
`BF16_MIN_WIDTH` wide; weights, optimizer state and losses stay fp32. Measured in one run on one thread of
an Intel Xeon with AMX (bf16/fp32 tokens per second): GPT-2 training 0.56x at
width 64 (the casts cost more than the matmuls save), 1.2x at width 128, 1.0x at width 192; frozen forward
passes of all-MiniLM-L6-v2 1.9x, SmolLM2-135M 2.6x, all-mpnet-base-v2 3.6x.
Any other CPU: fp32. Every CPU: deterministic algorithms, so two runs with one seed on one machine give
bitwise-identical weights (bf16 autocast included: its kernels are deterministic on one thread).
DECOUPLING_DEVICE=cpu forces the CPU on a GPU machine; DECOUPLING_DTYPE=fp32 forces fp32 (DECOUPLING_DTYPE=bf16
forces bf16 on a CPU without bf16 units, emulated and slow: for tests).
"""
from __future__ import annotations

import contextlib
import os

import torch

_want = os.environ.get("DECOUPLING_DEVICE", "")
DEVICE = torch.device(_want or ("cuda" if torch.cuda.is_available() else "cpu"))


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls in hardware (x86: avx512_bf16 or AMX tiles). Elsewhere the
    answer is no: bf16 would be emulated, slower than fp32."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, f, lambda: False)() for f in probes)


def _dtype() -> torch.dtype:
    forced = os.environ.get("DECOUPLING_DTYPE", "")
    if forced not in ("", "fp32", "bf16"):
        raise ValueError(f"DECOUPLING_DTYPE={forced!r}: use fp32 or bf16 (or leave it unset)")
    if forced:
        return torch.bfloat16 if forced == "bf16" else torch.float32
    return torch.bfloat16 if DEVICE.type == "cuda" or cpu_has_bf16() else torch.float32


DTYPE = _dtype()
# Below this hidden width a CPU step is bound by overhead, not matmuls, and bf16's casts make it slower
# (GPT-2 training, one thread: width 64 6.5k tokens/s fp32 vs 3.7k bf16; width 128 3.3k vs 4.0k).
BF16_MIN_WIDTH = 128
if DEVICE.type == "cuda":
    REASON = "CUDA present: bf16 autocast, TF32 matmuls, fused AdamW"
elif DTYPE == torch.bfloat16:
    REASON = (f"CPU with bf16 units: bf16 autocast for transformers >= {BF16_MIN_WIDTH} wide, fp32 below; "
              "deterministic algorithms")
else:
    REASON = "CPU without bf16 units: fp32, deterministic algorithms (bitwise-reproducible runs)"

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


def width(model) -> int:
    """A transformer's hidden width (GPT-2 n_embd, BERT/Llama hidden_size), 0 for any other module."""
    conf = getattr(model, "config", None)
    return int(getattr(conf, "n_embd", 0) or getattr(conf, "hidden_size", 0) or 0)


def uses_bf16(model=None) -> bool:
    """Whether `autocast(model)` computes in bf16: on CUDA always; on a CPU with bf16 units for a
    transformer at least BF16_MIN_WIDTH wide (smaller models and plain MLPs are faster in fp32 there)."""
    if DTYPE != torch.bfloat16:
        return False
    return DEVICE.type == "cuda" or (model is not None and width(model) >= BF16_MIN_WIDTH)


def autocast(model=None):
    """The one autocast context of the process, for a forward pass of `model`: bf16 where `uses_bf16`,
    else a no-op (fp32)."""
    if uses_bf16(model):
        return torch.autocast(DEVICE.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def dtype_name() -> str:
    """What provenance records: the process's compute dtype ("bf16" or "fp32")."""
    return "bf16" if DTYPE == torch.bfloat16 else "fp32"


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
