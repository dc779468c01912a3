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


UPPER_MD = re.compile(r"(?<![\w/.-])([A-Z][A-Z_]+\.md)\b")  # README.md-style names cited bare
# a path that climbs out of the repository (the built site's own relative links, ../_static, are not)
OUTSIDE = re.compile(r"(?<![\w.])\.\./(?!_)[\w.-]+")


def test_no_reference_to_files_outside_the_repository():
    names = {p.name for p in ROOT.rglob("*.md") if ".venv" not in p.parts and "_build" not in p.parts}
    bad = []
    for f in TEXT:
        if not f.exists():
            continue
        text = f.read_text(errors="replace")
        bad += [f"{f.relative_to(ROOT)}: {m}" for m in UPPER_MD.findall(text) if m not in names]
        bad += [f"{f.relative_to(ROOT)}: {m}" for m in OUTSIDE.findall(text)]
    assert not bad, "\n".join(bad)
