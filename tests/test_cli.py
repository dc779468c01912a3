"""The command line: --help that helps, bad input refused in one line naming the valid values (exit 2,
no traceback, before anything runs)."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def _run(*args, **env):
    return subprocess.run([sys.executable, "-m", "decoupling", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, **env})


def test_help_lists_the_commands():
    r = _run("--help")
    assert r.returncode == 0
    for cmd in ("data", "rebuild", "status", "demo"):
        assert cmd in r.stdout
    r = _run("rebuild", "--help")
    assert r.returncode == 0 and "--profile" in r.stdout and "--chapters" in r.stdout
    r = _run("demo", "--help")
    assert r.returncode == 0 and "sentiment/movies" in r.stdout and "digits" not in r.stdout


def _a_file(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("not a directory\n")
    return str(f)


# (arguments, environment (a callable of tmp_path), words the one line must contain)
BAD = {
    "demo-seeds-zero": (["demo", "--seeds", "0"], {}, ["--seeds", "at least 1"]),
    "demo-seeds-negative": (["demo", "--seeds", "-2"], {}, ["--seeds", "at least 1"]),
    "demo-seeds-not-a-number": (["demo", "--seeds", "three"], {}, ["--seeds", "whole number"]),
    "demo-unknown-task": (["demo", "--target", "sentiment/klingon"], {}, ["sentiment/movies", "code/module"]),
    "demo-digits-task": (["demo", "--target", "digits/0-4"], {}, ["valid tasks: sentiment/movies"]),
    "demo-unknown-source": (["demo", "--source", "latin"], {}, ["valid sources:", "code", "prose"]),
    "rebuild-unknown-profile": (["rebuild", "--profile", "huge"], {}, ["valid profiles: smoke, full"]),
    "rebuild-unknown-chapter": (["rebuild", "--chapters", "nope"], {}, ["valid chapters:", "generality"]),
    "rebuild-negative-seed": (["rebuild", "--seed", "-1"], {}, ["--seed", "at least 0"]),
    "rebuild-zero-timeout": (["rebuild", "--timeout", "0"], {}, ["--timeout", "greater than 0"]),
    "rebuild-no-book-here": (["rebuild"], {"DECOUPLING_ROOT": lambda t: str(t)}, ["_toc.yml", "DECOUPLING_ROOT"]),
    "rebuild-build-dir-is-a-file": (["rebuild"], {"DECOUPLING_BUILD": _a_file}, ["DECOUPLING_BUILD"]),
    "rebuild-store-under-a-file": (["rebuild"], {"DECOUPLING_STORE": lambda t: _a_file(t) + "/store"},
                                   ["DECOUPLING_STORE"]),
    "data-dir-is-a-file": (["data"], {"DECOUPLING_DATA": _a_file}, ["DECOUPLING_DATA"]),
    "demo-data-dir-is-a-file": (["demo"], {"DECOUPLING_DATA": _a_file}, ["DECOUPLING_DATA"]),
    "unknown-command": (["frobnicate"], {}, ["rebuild", "demo"]),
    "no-command": ([], {}, ["required"]),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_refused_in_one_line(case, tmp_path):
    args, env, words = BAD[case]
    r = _run(*args, **{k: make(tmp_path) for k, make in env.items()})
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert all(w in lines[0] for w in words), (words, lines[0])
    assert r.stdout == ""


def test_gain_refuses_a_table_without_rows_in_one_line(tmp_path):
    """The installed command, end to end: a CSV with a header and no rows is refused before any model
    loads (exit 2, one line naming the file)."""
    bad = tmp_path / "header-only.csv"
    bad.write_text("text,label\n")
    r = _run("gain", "--model", "minilm", "--data", str(bad))
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{bad}: no rows" in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert r.stdout == ""
