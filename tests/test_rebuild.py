"""The rebuild path, end to end through the real papermill + jupyter-book (no mocks): a fixture book
with one tiny chapter (and a copy with two, for the log file)."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from page_checks import machinery

FIX = Path(__file__).parent / "fixtures"
pytestmark = pytest.mark.slow


def _env(book: Path, tmp: Path, **env_extra) -> dict:
    return {**os.environ, "DECOUPLING_ROOT": str(book), "DECOUPLING_BUILD": str(book / "_build"),
            "DECOUPLING_STORE": str(tmp / "store"), "TINY_COUNTER": str(tmp / "counter"),
            # the repository's prepared data (store keys hash its manifest): not a second copy per fixture
            "DECOUPLING_DATA": os.environ.get("DECOUPLING_DATA", str(FIX.parents[1] / ".cache" / "data")),
            "PYTHONPATH": str(FIX) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "DECOUPLING_PROGRESS": "0", **env_extra}


def _command(*args) -> list[str]:
    return [sys.executable, "-m", "decoupling", "rebuild", *args]


def _rebuild(book: Path, tmp: Path, *args, **env_extra):
    return subprocess.run(_command(*args), env=_env(book, tmp, **env_extra), capture_output=True, text=True,
                          timeout=600)


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


def test_claims_are_tabulated_and_an_illustration_is_not_a_verdict(built):
    """The reproducibility page's table of every claim is generated from the records; a finding decided only
    at `full` shows at `smoke` as an illustration and needs no line in the snapshot (the build passed)."""
    book, _ = built
    page = (book / "_build" / "html" / "book" / "reproducibility.html").read_text()
    assert "claims-table" not in page  # the marker was replaced
    for text in ("slope-positive", "the fitted slope is above 0", "slope-near-two", "loss-falls",
                 "training loss falls"):
        assert text in page, text
    tiny = (book / "_build" / "html" / "book" / "tiny.html").read_text()
    assert "Holds if:" in tiny and "the smoke value is an illustration, not a verdict" in tiny


def test_page_shows_the_chapter_not_the_machinery(built):
    """No parameters cell (the source's or papermill's), no stderr block (tqdm's widget notice, which the
    fixture's experiment module provokes as transformers does), no repr after a claim: only its box."""
    book, _ = built
    page = (book / "_build" / "html" / "book" / "tiny.html").read_text()
    assert machinery(page) == []
    assert "slope-positive" in page and "loss-falls" in page  # the claims' boxes are there
    executed = json.loads((book / "_build" / "executed" / "smoke" / "tiny.ipynb").read_text())
    outputs = [o for c in executed["cells"] for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("name") == "stderr"], "a library wrote into the notebook"
    assert not [o for o in outputs if "text/plain" in o.get("data", {}) and "Claim(" in str(o["data"])]
    # the notebook the download button offers keeps its parameters, so it still runs
    offered = json.loads((book / "_build" / "html" / "_sources" / "book" / "tiny.ipynb").read_text())
    hidden = [c for c in offered["cells"] if "remove-cell" in c["metadata"].get("tags", [])]
    assert [c["metadata"]["tags"][0] for c in hidden] == ["parameters", "injected-parameters"]


def test_the_chapters_own_warning_still_shows(built):
    """Only library notices are kept off the page: a warning the chapter raises reaches its page, where
    the page check (the browser test's) finds it."""
    book, tmp = built
    r = _rebuild(book, tmp, "--force", TINY_WARN="1")
    assert r.returncode == 0, r.stderr
    executed = json.loads((book / "_build" / "executed" / "smoke" / "tiny.ipynb").read_text())
    stderr = "".join("".join(o["text"]) for c in executed["cells"] for o in c.get("outputs", [])
                     if o.get("name") == "stderr")  # a stream's text: a string or a list of lines
    assert "a warning of the chapter's own" in stderr and "IProgress" not in stderr
    found = machinery((book / "_build" / "html" / "book" / "tiny.html").read_text())
    assert len(found) == 1 and found[0].startswith("a stderr block") and "chapter's own" in found[0], found


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
    assert len(r.stderr.strip().splitlines()) == 1
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())  # a zombie has stopped


def test_sigterm_mid_chapter_stops_cleanly_and_the_next_run_resumes(built, tmp_path):
    book, tmp = built
    executed = book / "_build" / "executed" / "smoke"
    good = (executed / "tiny.ipynb").read_bytes()
    n = _trained(tmp)
    pid_file = tmp_path / "kernel.pid"
    proc = subprocess.Popen(_command("--force", "--no-html"), env=_env(book, tmp, TINY_PID_FILE=str(pid_file)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not pid_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pid_file.exists(), "the chapter never reached its busy cell"
        time.sleep(0.2)
        kernel = int(pid_file.read_text())
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, out, err)
    assert "stopped by SIGTERM" in err and "Traceback" not in err, err
    deadline = time.monotonic() + 15
    while _alive(kernel) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(kernel), "the chapter's kernel outlived the rebuild"
    # nothing half-written: the last good executed notebook, no temporary files, every record whole
    assert (executed / "tiny.ipynb").read_bytes() == good
    assert sorted(p.name for p in executed.iterdir()) == ["fingerprints.json", "tiny.ipynb"]
    for f in [*(tmp / "store").rglob("*"), *(book / "_build" / "records").rglob("*")]:
        if f.is_file() and ".locks" not in f.parts:  # the store's lock files hold nothing
            assert f.suffix == ".json" and not f.name.startswith("."), f
            json.loads(f.read_text())
    # the same command again finishes, from the store
    r = _rebuild(book, tmp, "--force", "--no-html")
    assert r.returncode == 0, r.stderr
    assert "tiny: executed" in r.stdout and _trained(tmp) == n


def _two_chapters(tmp_path, change: tuple[str, str]) -> tuple[Path, Path]:
    """The fixture book with a second chapter, tiny2: tiny's text with `change` applied (a different seed
    gives it its own store entry; anything else keeps tiny's)."""
    book = tmp_path / "book"
    shutil.copytree(FIX / "minibook", book)
    tiny = (book / "book" / "tiny.md").read_text()
    (book / "book" / "tiny2.md").write_text(
        tiny.replace('Chapter("tiny"', 'Chapter("tiny2"').replace('"tiny-loss"', '"tiny2-loss"').replace(*change))
    toc = book / "_toc.yml"
    toc.write_text(toc.read_text().replace("  - file: book/tiny\n", "  - file: book/tiny\n  - file: book/tiny2\n"))
    exp = book / "book" / "expected_verdicts.yml"
    exp.write_text(exp.read_text().replace("  tiny/slope-positive: holds\n",
                                           "  tiny/slope-positive: holds\n  tiny2/slope-positive: holds\n"))
    return book, tmp_path


def test_log_file_keeps_every_chapters_lines(tmp_path):
    """`make book > build.log 2>&1`: the rebuild's lines, papermill's bars and the kernels' reports all go
    to the one file, none overwriting another (each chapter's kernel used to open the file anew)."""
    book, tmp = _two_chapters(tmp_path, ("ch.config(PRESETS, seed=seed)", "ch.config(PRESETS, seed=seed + 1)"))
    r = _rebuild(book, tmp, "--no-html")
    assert r.returncode == 0, r.stdout + r.stderr
    entries = sorted((tmp / "store").rglob("*.json"))
    assert len(entries) == 2
    for e in entries:  # each chapter's kernel will report one
        e.write_text(e.read_text().replace('"slope"', '"slope_"'))
    log = tmp_path / "build.log"
    with open(log, "w") as f:  # as the shell's `> build.log 2>&1` opens it: one file, one offset
        r = subprocess.run(_command("--force", "--no-html"), env=_env(book, tmp, DECOUPLING_PROGRESS="1"),
                           stdout=f, stderr=subprocess.STDOUT, timeout=600)
    text = log.read_text()
    assert r.returncode == 0, text
    assert "\0" not in text  # no hole left by a writer at a stale offset
    assert "[IPKernelApp]" not in text  # the kernels' own log lines are noise to the person reading
    reports = [m.start() for m in re.finditer(re.escape("[store] corrupted record"), text)]
    assert len(reports) == 2, text
    first, second = text.index("[rebuild] tiny: executed"), text.index("[rebuild] tiny2: executed")
    assert reports[0] < first < reports[1] < second, text


def test_chapters_side_by_side_share_an_experiment_and_train_it_once(tmp_path):
    """`--jobs 2`: two chapters that ask for the same experiment run at once; the store lets one compute it
    while the other waits for its record, so it trains once and both pages show the same claims."""
    book, tmp = _two_chapters(tmp_path, ('Path(os.environ["TINY_PID_FILE"])',  # same store key as tiny
                                         'Path(os.environ["TINY_PID_FILE"] + "2")'))
    r = _rebuild(book, tmp, "--no-html", "--jobs", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "2 at a time" in out and "tiny: executed" in out and "tiny2: executed" in out
    assert _trained(tmp) == 1
    recs = {n: json.loads((book / "_build" / "records" / f"{n}.json").read_text()) for n in ("tiny", "tiny2")}
    values = [{c["name"]: c["value"] for c in recs[n]["claims"]} for n in ("tiny", "tiny2")]
    assert values[0] == values[1] and values[0]
    r = _rebuild(book, tmp, "--no-html", "--jobs", "0")  # refused in one line, nothing runs
    assert r.returncode == 2 and "--jobs" in r.stderr
    # SIGTERM while both run: both chapters stop with their kernels, and the next run resumes
    pid = tmp_path / "kernel.pid"
    proc = subprocess.Popen(_command("--force", "--no-html", "--jobs", "2"), env=_env(book, tmp, TINY_PID_FILE=str(pid)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids = [pid, Path(f"{pid}2")]
    try:
        deadline = time.monotonic() + 300
        while not all(p.exists() for p in pids) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(p.exists() for p in pids), "the chapters never reached their busy cells"
        time.sleep(0.2)
        kernels = [int(p.read_text()) for p in pids]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in err and "Traceback" not in err, err
    deadline = time.monotonic() + 15
    while any(_alive(k) for k in kernels) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(k) for k in kernels), "a chapter's kernel outlived the rebuild"
    assert not list((book / "_build" / "executed" / "smoke").glob(".*running*"))
    r = _rebuild(book, tmp, "--force", "--no-html", "--jobs", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert _trained(tmp) == 1


def test_a_gpu_part_cell_at_full_on_a_cpu_says_so_and_the_page_goes_on(tmp_path):
    """A chapter whose experiment sits in a %%gpu_part cell, built at `full` on a machine without CUDA and
    without its record: that cell shows one line instead of a traceback, nothing is trained, and the cells
    after it still execute. Outside such a cell the same error fails the page (the
    test above)."""
    book, tmp = _two_chapters(tmp_path, ('ch = Chapter("tiny2", profile=profile, seed=seed)\n',
                                         'ch = Chapter("tiny2", profile=profile, seed=seed)\n```\n\n'
                                         '```{code-cell} ipython3\n%%gpu_part\n'))
    md = book / "book" / "tiny2.md"
    md.write_text(md.read_text() + '\n```{code-cell} ipython3\nprint("after the GPU part")\n```\n')
    r = _rebuild(book, tmp, "--profile", "full", "--no-html", "--chapters", "tiny2")
    out = json.loads((book / "_build" / "executed" / "full" / "tiny2.ipynb").read_text())
    text = json.dumps(out["cells"])
    assert "Not shown at `full` on this machine" in text and "needs records computed on a GPU" in text, \
        r.stdout + r.stderr
    assert "after the GPU part" in text and "Traceback" not in text
    assert _trained(tmp) == 0
