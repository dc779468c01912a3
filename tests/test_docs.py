"""Docs that are true: every module is in the module map, every file the docs cite exists, and nothing points
at files a reader of this repository does not have."""
import re
import subprocess

import pytest

from conftest import ROOT

LIB = ROOT / "lib" / "decoupling"
TRACKED = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True).stdout.split()
TEXT = [ROOT / f for f in TRACKED if f.endswith((".py", ".md", ".yml", ".toml", ".cfg", ".cff")) or f == "Makefile"]


def test_every_module_is_in_the_module_map():
    text = (LIB / "README.md").read_text()
    missing = []
    for p in sorted(LIB.rglob("*.py")):
        if p.name in ("__init__.py", "__main__.py"):
            continue
        rel = p.relative_to(LIB).with_suffix("")
        dotted, slashed = ".".join(rel.parts), "/".join(rel.parts)
        if f"`{dotted}`" not in text and f"`{slashed}`" not in text and f"`experiments/{rel.name}`" not in text:
            missing.append(dotted)
    assert not missing, f"lib/decoupling/README.md's module map lacks {missing}"


CITED = re.compile(r"(?<![\w/.-])((?:tests|benchmarks|book|lib/decoupling|\.github|\.ci)/[\w./-]+\.(?:py|md|yml|bib|ipynb|json))")


def test_every_cited_file_exists():
    bad = []
    for f in TEXT:
        if not f.exists():
            continue
        for m in CITED.finditer(f.read_text(errors="replace")):
            path = m.group(1).rstrip(".")
            if "*" in path or "<" in path or "NAME" in path:
                continue
            if not (ROOT / path).exists():
                bad.append(f"{f.relative_to(ROOT)} cites {path}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("needle", ["SCIENCE.md", "DATA.md", "DESIGN.md", "../shared", "shared DATA"])
def test_no_reference_to_files_outside_the_repository(needle):
    hits = [str(f.relative_to(ROOT)) for f in TEXT if f.exists() and f.name != "test_docs.py"
            and needle in f.read_text(errors="replace")]
    assert not hits, f"{needle!r} in {hits}"
