"""Progress bars in a log file: `make book > build.log 2>&1` must give whole lines. A bar whose stream is not
a terminal writes no carriage return: a line when it starts, one when it ends (count, elapsed, rate), and at
most one every DECOUPLING_PROGRESS_EVERY seconds between. On a terminal the bar is tqdm's own."""
import io
import subprocess
import sys
import time

import pytest
from tqdm import tqdm

from decoupling import progress

from conftest import ROOT


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def sink(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(progress, "_SINK", out)
    monkeypatch.setenv("DECOUPLING_PROGRESS", "1")
    return out


def _lines(text: str) -> list[str]:
    assert "\r" not in text
    assert text.endswith("\n")
    return text.splitlines()


def test_a_bar_in_a_file_writes_a_line_at_its_start_and_one_at_its_end(sink):
    with progress.bar(total=400, desc="train memory", unit="step", mininterval=0) as b:
        for _ in range(400):
            b.update(1)
    lines = _lines(sink.getvalue())
    assert len(lines) == 2, lines
    assert lines[0].startswith("train memory: 0/400 step")
    assert lines[1].startswith("train memory: 400/400 step [") and "step/s" in lines[1], lines[1]


def test_a_long_bar_adds_a_line_at_most_every_interval(sink, monkeypatch):
    monkeypatch.setenv("DECOUPLING_PROGRESS_EVERY", "0.2")
    for _ in progress.bar(range(10), desc="sweep", unit="run", mininterval=0):
        time.sleep(0.05)
    lines = _lines(sink.getvalue())
    assert 3 <= len(lines) <= 5, lines  # start, one or two in between (0.5 s at 0.2 s), end
    assert lines[-1].startswith("sweep: 10/10 run")


def test_bars_open_together_keep_to_their_own_lines(sink):
    """Nested bars (a sweep around training runs) each write their own lines; none moves the cursor."""
    outer = progress.bar(total=2, desc="sweep", unit="run")
    for _ in range(2):
        for _ in progress.bar(range(3), desc="train", unit="step"):
            pass
        outer.update(1)
    outer.close()
    lines = _lines(sink.getvalue())
    assert "\x1b" not in sink.getvalue()
    assert [line.split(":")[0] for line in lines] == ["sweep", "train", "train", "train", "train", "sweep"], lines
    assert lines[-1].startswith("sweep: 2/2 run")


def test_a_disabled_bar_writes_nothing(sink, monkeypatch):
    monkeypatch.setenv("DECOUPLING_PROGRESS", "0")
    for _ in progress.bar(range(3), desc="quiet"):
        pass
    assert sink.getvalue() == ""


def test_on_a_terminal_the_bar_is_tqdms_own(monkeypatch):
    term = _Terminal()
    monkeypatch.setattr(progress, "_SINK", term)
    monkeypatch.setenv("DECOUPLING_PROGRESS", "1")
    for _ in progress.bar(range(3), desc="live", mininterval=0):
        pass
    assert "\r" in term.getvalue()


def test_papermills_bar_gets_the_same_lines():
    """The rebuild hands papermill tqdm keyword arguments; papermill makes its bar from them
    (`tqdm(total=cells, unit="cell", **kwargs)`)."""
    out = io.StringIO()
    kw = progress.tqdm_kwargs({"desc": f"{'memory':>14}", "file": out, "leave": True})
    with tqdm(total=5, unit="cell", **kw) as b:
        for _ in range(5):
            b.update(1)
    lines = _lines(out.getvalue())
    assert lines[0].startswith("memory: 0/5 cell") and lines[-1].startswith("memory: 5/5 cell"), lines
    term = {"file": _Terminal(), "desc": "x", "leave": True}
    assert progress.tqdm_kwargs(term) == term  # a terminal keeps tqdm's redrawn bar


def test_a_script_whose_stderr_is_a_file_logs_whole_lines(tmp_path):
    """The process-level path: stderr redirected to a file, as `make book > log 2>&1` does."""
    log = tmp_path / "log"
    code = ("from decoupling import progress\n"
            "for _ in progress.bar(range(50), desc='stage one', unit='step'): pass\n"
            "progress.report('[store] a report line')\n"
            "for _ in progress.bar(range(20), desc='stage two', unit='run'): pass\n")
    with open(log, "w") as f:
        r = subprocess.run([sys.executable, "-c", code], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                           env={"PATH": "/usr/bin:/bin", "DECOUPLING_PROGRESS": "1"}, timeout=120)
    assert r.returncode == 0, log.read_text()
    lines = _lines(log.read_text())
    assert [line.split(":")[0] for line in lines] == ["stage one", "stage one", "[store] a report line",
                                                      "stage two", "stage two"], lines
    assert lines[1].startswith("stage one: 50/50 step") and lines[4].startswith("stage two: 20/20 run")
