"""The command line: --help that helps, bad input refused in one line naming the valid values."""
import subprocess
import sys


def _run(*args):
    return subprocess.run([sys.executable, "-m", "decoupling", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_the_commands():
    r = _run("--help")
    assert r.returncode == 0
    for cmd in ("data", "rebuild", "status", "demo"):
        assert cmd in r.stdout
    r = _run("rebuild", "--help")
    assert r.returncode == 0 and "--profile" in r.stdout and "--chapters" in r.stdout


def test_demo_refuses_unknown_task_listing_valid_ones():
    r = _run("demo", "--target", "sentiment/klingon")
    assert r.returncode == 2 and "sentiment/movies" in r.stderr
    r = _run("demo", "--source", "latin")
    assert r.returncode == 2 and "prose" in r.stderr
