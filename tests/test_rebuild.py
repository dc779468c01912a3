"""The rebuild path, end to end through the real papermill + jupyter-book (no mocks): a fixture book
with one tiny chapter."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIX = Path(__file__).parent / "fixtures"
pytestmark = pytest.mark.slow


def _rebuild(book: Path, tmp: Path, *args, **env_extra):
    env = {**os.environ, "DECOUPLING_ROOT": str(book), "DECOUPLING_BUILD": str(book / "_build"),
           "DECOUPLING_STORE": str(tmp / "store"), "TINY_COUNTER": str(tmp / "counter"),
           # the repository's prepared data (store keys hash its manifest): not a second copy per fixture
           "DECOUPLING_DATA": os.environ.get("DECOUPLING_DATA", str(FIX.parents[1] / ".cache" / "data")),
           "PYTHONPATH": str(FIX) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "DECOUPLING_PROGRESS": "0", **env_extra}
    return subprocess.run([sys.executable, "-m", "decoupling", "rebuild", *args], env=env,
                          capture_output=True, text=True, timeout=600)


def _trained(tmp):
    c = tmp / "counter"
    return len(c.read_text().splitlines()) if c.exists() else 0


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rb")
    book = tmp / "book"
    shutil.copytree(FIX / "minibook", book)
    r = _rebuild(book, tmp)
    assert r.returncode == 0, r.stdout + r.stderr
    return book, tmp


def test_fixture_book_builds_html_with_figure_and_status(built):
    book, tmp = built
    html = book / "_build" / "html"
    assert (html / "index.html").exists()
    page = (html / "book" / "tiny.html").read_text()
    assert 'class="provenance"' in page and "tiny-loss" in page
    status = (html / "book" / "status.html").read_text()
    assert "tiny" in status and "slope-positive" in status
    side = json.loads((book / "_build" / "figures" / "tiny-loss.json").read_text())
    assert side["profile"] == "smoke" and side["cache_hits"] == 0 and side["records"] == 1
    assert {"commit", "dirty", "torch", "transformers", "device", "seeds", "wall_time_s"} <= set(side)
    assert (book / "_build" / "figures" / "tiny-loss.svg").exists()
    assert _trained(tmp) == 1


def test_second_rebuild_trains_nothing(built):
    book, tmp = built
    n = _trained(tmp)
    r = _rebuild(book, tmp)  # unchanged chapter: not even re-executed
    assert r.returncode == 0, r.stderr
    assert "unchanged" in r.stdout and _trained(tmp) == n
    r = _rebuild(book, tmp, "--force")  # re-executed, but the store answers
    assert r.returncode == 0, r.stderr
    assert _trained(tmp) == n
    side = json.loads((book / "_build" / "figures" / "tiny-loss.json").read_text())
    assert side["cache_hits"] == 1


def test_corrupted_entry_is_recomputed(built):
    book, tmp = built
    entries = list((tmp / "store").rglob("*.json"))
    assert len(entries) == 1
    entries[0].write_text(entries[0].read_text().replace('"slope"', '"slope_"'))
    n = _trained(tmp)
    r = _rebuild(book, tmp, "--force")
    assert r.returncode == 0, r.stderr
    assert "corrupted record" in r.stderr
    assert _trained(tmp) == n + 1
    assert json.loads(entries[0].read_text())["value"]["slope"] > 1.5


def test_failing_cell_names_chapter_and_cell_and_keeps_output(built):
    book, tmp = built
    good = (book / "_build" / "executed" / "smoke" / "tiny.ipynb").read_bytes()
    r = _rebuild(book, tmp, "--force", TINY_RAISE="1")
    assert r.returncode != 0
    assert "'tiny'" in r.stderr and "cell" in r.stderr and "boom from the fixture" in r.stderr
    assert (book / "_build" / "executed" / "smoke" / "tiny.ipynb").read_bytes() == good


def test_failing_check_fails_rebuild(built):
    book, tmp = built
    r = _rebuild(book, tmp, "--force", "--no-html", TINY_FAIL_CHECK="1")
    assert r.returncode != 0 and "check failed: tiny/forced" in r.stderr


def test_finding_verdict_differs_from_snapshot_fails(built):
    book, tmp = built
    exp = book / "book" / "expected_verdicts.yml"
    old = exp.read_text()
    try:
        exp.write_text(old.replace("tiny/slope-positive: holds", "tiny/slope-positive: does not hold"))
        r = _rebuild(book, tmp, "--no-html")
        assert r.returncode != 0 and "differs from the committed" in r.stderr
    finally:
        exp.write_text(old)


def test_unknown_profile_and_chapter_refused_before_running(built):
    book, tmp = built
    n = _trained(tmp)
    r = _rebuild(book, tmp, "--profile", "huge")
    assert r.returncode == 2 and "valid profiles: smoke, full" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = _rebuild(book, tmp, "--chapters", "nope")
    assert r.returncode == 2 and "valid chapters: tiny" in r.stderr
    assert _trained(tmp) == n


def test_full_without_gpu_stops_with_a_pointer_unless_allowed(built):
    book, tmp = built
    n = _trained(tmp)
    r = _rebuild(book, tmp, "--profile", "full", "--no-html")
    assert r.returncode != 0
    assert "'tiny'" in r.stderr and "gpu_full.py" in r.stderr and "--allow-cpu-full" in r.stderr
    assert _trained(tmp) == n  # refused before training anything
    r = _rebuild(book, tmp, "--profile", "full", "--no-html", "--allow-cpu-full")
    assert "tiny: executed" in r.stdout, r.stdout + r.stderr
    assert _trained(tmp) == n + 1
    # computed here, so its verdict is new: the snapshot rule still asks for it to be added on purpose
    assert "no expected verdict for profile 'full'" in r.stderr
