"""Shared fixtures. `smoke_book` builds the real book once per test session at the smoke profile: first
`decoupling compute` computes every declared record, then the real `decoupling rebuild --draw-only`
(papermill + jupyter-book) executes the pages, which may compute nothing. It reuses the default results
store and build dir, so `make test` after `make book` (or a second `make test`) retrains nothing."""
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class BuiltBook:
    returncode: int
    stdout: str
    stderr: str
    html: Path
    build: Path


@pytest.fixture(scope="session")
def smoke_book() -> BuiltBook:
    env = {**os.environ, "DECOUPLING_PROGRESS": os.environ.get("DECOUPLING_PROGRESS", "0")}
    c = subprocess.run([sys.executable, "-m", "decoupling", "compute", "--profile", "smoke", "--jobs", "2"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if c.returncode != 0:
        return BuiltBook(c.returncode, c.stdout, c.stderr, Path("/nonexistent"), Path("/nonexistent"))
    r = subprocess.run([sys.executable, "-m", "decoupling", "rebuild", "--profile", "smoke", "--draw-only"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    build = Path(os.environ.get("DECOUPLING_BUILD", ROOT / "_build"))
    return BuiltBook(r.returncode, r.stdout, r.stderr, build / "html", build)


@pytest.fixture
def one_thread():
    """Tests of ~3k-parameter models: one thread is as fast as two, and immune to the 10x slowdown of
    OpenMP spin-waiting when other processes share the cores (seen on the 2-core dev machine)."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
