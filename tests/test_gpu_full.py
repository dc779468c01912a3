"""benchmarks/gpu_full.py, the one script for the GPU machine, exercised here on CPU: its import check with
the GPU machine's missing packages blocked, a real (tiny) run on the fixture book, and bringing the
returned archive home (`--ingest`). GPU minutes are scarce: a script that breaks there wastes them. What it
calls (decoupling.pipeline.sitting) is tested in tests/test_sitting.py, stopping and resuming included."""
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from decoupling.pipeline import sitting

ROOT = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "fixtures"
SCRIPT = ROOT / "benchmarks" / "gpu_full.py"
pytestmark = pytest.mark.slow


def _script(*args, **env_extra):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FIX), os.environ.get("PYTHONPATH", "")]), **env_extra}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600)


def _probe(code: str, **env_extra) -> str:
    """Run `code` in a fresh interpreter (its own environment: the data dir is read at import) and return its
    stdout, which must hold a PROBE line."""
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env_extra}, capture_output=True,
                         text=True, timeout=300)
    assert "PROBE " in out.stdout, out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def carry(tmp_path_factory):
    """The archive the GPU machine gets (`--make-carry`): prepared data + MiniLM, which it lacks."""
    archive = tmp_path_factory.mktemp("carry") / "carry.tar.xz"
    r = _script("--make-carry", "--carry", str(archive), "--without-full-corpora")  # those: the next test
    assert r.returncode == 0, r.stdout + r.stderr
    return archive


def test_carried_full_corpora_keep_the_full_keys_and_hold_what_the_bodies_read(tmp_path):
    """The carry holds each full token stream's first U + eval tokens and the full manifest unchanged: on the
    GPU machine the `full` bodies' configs (hence every `full` key) must hash as here, and each body must
    get every token it reads. Needs the full corpora (`decoupling data --profile full`)."""
    from decoupling import data
    from decoupling.data import full
    if full.read_full_manifest() is None:
        pytest.skip("the full corpora are not prepared here (`decoupling data --profile full`)")
    carried = tmp_path / "data"
    carried.mkdir()
    for name in ("manifest.json", "tokenizer", "tasks", "corpora", "tokens"):  # the smoke data, as it is
        (carried / name).symlink_to(data.data_dir() / name)
    need = sitting._carry_full_corpora(carried / "full")
    assert need and all((carried / "full" / "tokens" / d / "ids.npy").stat().st_size < 2 * need + 1024
                        for d in full.FULL_DOMAINS)
    probe = ("from decoupling.experiments import pretrain as P; from decoupling import data\n"
             "for d in P.COMPARED + ('shuffled',):\n"
             "    c = P.config('full', d); n = P.unique_tokens(c) + c.eval_tokens\n"
             "    print('PROBE', d, c.data_sha, n, len(data.token_ids(d, max_tokens=n, profile='full')))")

    def run(**extra):
        return [line.split()[1:] for line in _probe(probe, **extra).splitlines() if line.startswith("PROBE ")]

    here, there = run(), run(DECOUPLING_DATA=str(carried))
    assert here == there and all(n == got for _, _, n, got in there)


def test_dry_run_imports_without_the_packages_the_gpu_machine_lacks(carry):
    r = _script("--dry-run", "--skip-bench", "--carry", str(carry))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "import check: ok" in r.stdout
    for chapter in ("computers", "memory", "tyranny", "generality"):
        assert f"chapter {chapter}:" in r.stdout


@pytest.fixture(scope="module")
def returned(tmp_path_factory):
    """What a GPU run would bring back from a (tiny, CPU, smoke-profile) run on the fixture book."""
    tmp = tmp_path_factory.mktemp("gpu")
    r = _script("--skip-bench", "--profile", "smoke", "--root", str(FIX / "minibook"), "--out", str(tmp / "out"),
                "--store", str(tmp / "store"), "--budget-s", "300", TINY_COUNTER=str(tmp / "counter"))
    assert r.returncode == 0, r.stdout + r.stderr
    return tmp, r.stdout


def test_tiny_run_returns_records_claims_and_a_warm_pass(returned):
    tmp, out = returned
    summary = json.loads((tmp / "out" / "gpu_full.json").read_text())
    assert summary["chapters"]["tiny"]["status"] == "ok" and summary["chapters"]["tiny"]["new_records"] == 1
    assert summary["chapters_warm"]["tiny"]["new_records"] == 0  # the warm pass trained nothing
    assert len((tmp / "counter").read_text().splitlines()) == 1
    with tarfile.open(tmp / "out" / "full_results.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.startswith("results/tests_fixture_exp.fit_line/") for n in names)
    assert "build/records/tiny.json" in names


def test_ingest_copies_verified_records_and_sets_verdicts_beside_the_snapshot(returned):
    tmp, _ = returned
    home = tmp / "home"
    (home / "book").mkdir(parents=True)
    exp = home / "book" / "expected_verdicts.yml"
    exp.write_text("# the snapshot\nsmoke:\n  other/finding: holds\n")
    tar = tmp / "out" / "full_results.tar.gz"
    r = _script("--ingest", str(tar), "--into", str(home), "--profile", "smoke")
    assert r.returncode == 0, r.stdout + r.stderr
    recs = list((home / "results").rglob("*.json"))
    assert len(recs) == 1 and "'new': 1" in r.stdout
    assert "tiny/slope-positive" in r.stdout and "<- differs" in r.stdout
    assert yaml.safe_load(exp.read_text()) == {"smoke": {"other/finding": "holds"}}  # not without --write-verdicts
    r = _script("--ingest", str(tar), "--into", str(home), "--profile", "smoke", "--write-verdicts")
    assert r.returncode == 0 and "'same': 1" in r.stdout
    assert exp.read_text().startswith("# the snapshot\n")
    assert yaml.safe_load(exp.read_text()) == {"smoke": {"other/finding": "holds", "tiny/slope-positive": "holds"}}
    # A tampered record is refused, and says so in the exit code.
    bad = tmp / "bad.tar.gz"
    body = json.loads(recs[0].read_text())
    body["value"]["slope"] = -1.0
    forged = tmp / "forged.json"
    forged.write_text(json.dumps(body))
    with tarfile.open(bad, "w:gz") as t:
        t.add(forged, arcname=str(recs[0].relative_to(home)))
    shutil.rmtree(home / "results")
    r = _script("--ingest", str(bad), "--into", str(home), "--profile", "smoke")
    assert r.returncode == 1 and "checksum mismatch" in r.stdout and not (home / "results").exists()


def test_carry_fits_the_device_limit_and_gives_the_same_data_keys_and_minilm(carry, tmp_path):
    """The GPU machine has neither the prepared data nor the MiniLM package: the carried archive must fit
    the archive limit, give the store the same data hash (so keys match), and a MiniLM whose fp16
    weights, loaded back as fp32, compute what the package's fp32 weights compute."""
    archive = carry
    assert archive.stat().st_size <= sitting.CARRY_LIMIT
    env_before = dict(os.environ)
    try:
        where = sitting.unpack_carry(archive, tmp_path / "unpacked")
    finally:  # unpack_carry points this process at the copy; the probe below sets it per child instead
        os.environ.clear()
        os.environ.update(env_before)
    probe = ("import json, torch; from decoupling import data; from decoupling.core import models\n"
             "from decoupling.pipeline import provenance\n"
             "m = models.load_minilm(); tok = models.minilm_tokenizer()\n"
             "x = tok(['a film worth seeing twice', 'def f(x): return x'], return_tensors='pt', padding=True)\n"
             "with torch.no_grad(): h = m(**x).last_hidden_state\n"
             "print('PROBE', json.dumps({'data': provenance.data_hash(), 'dtype': str(next(m.parameters()).dtype),"
             " 'h': h.flatten().tolist(), 'tasks': len(data.arrays('digits/5-9')['train'][1])}))")

    def run_probe(**extra):
        return json.loads(_probe(probe, **extra).split("PROBE ", 1)[1])

    here, carried = run_probe(), run_probe(**where)
    assert carried["data"] == here["data"] and carried["tasks"] == here["tasks"]
    assert carried["dtype"] == "torch.float32"
    import numpy as np
    a, b = np.array(here["h"]), np.array(carried["h"])
    assert np.abs(a - b).max() < 1e-2 * np.abs(a).max()  # fp16 weight rounding only
