"""The notebooks the launch buttons open. Colab opens only .ipynb, and a chapter's Colab/Binder button
points at book/<chapter>.ipynb in the repository, so each chapter's MyST source has its notebook committed
beside it: jupytext's reading of the .md, without outputs (`make notebooks` writes them). The rebuild must
still build the site from the *executed* notebook, never from this one."""
import json
import shutil

import jupytext
import nbformat
import pytest
import yaml

from decoupling.pipeline import publish, rebuild

from conftest import ROOT

CHAPTERS = publish.chapter_sources(ROOT)


def test_every_notebook_chapter_in_the_toc_is_covered():
    toc = yaml.safe_dump(yaml.safe_load((ROOT / "_toc.yml").read_text()))
    for line in toc.splitlines():
        entry = line.split(":", 1)[1].strip() if line.strip().startswith(("- file:", "file:", "root:")) else None
        md = ROOT / f"{entry}.md" if entry else None
        if md and md.exists() and "kernelspec:" in md.read_text()[:2000]:
            assert md in CHAPTERS, md


@pytest.mark.parametrize("md", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_has_its_paired_notebook_without_outputs(md):
    ipynb = md.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.relative_to(ROOT)} is missing: run `make notebooks`"
    nb = nbformat.read(ipynb, as_version=4)
    src = jupytext.read(md)
    got = [(c.cell_type, c.source, dict(c.metadata)) for c in nb.cells]
    want = [(c.cell_type, c.source, dict(c.metadata)) for c in src.cells]
    assert got == want, f"{ipynb.relative_to(ROOT)} is out of date with {md.name}: run `make notebooks`"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    assert nb.metadata["kernelspec"]["name"] == "python3"
    nbformat.validate(nb)
    # byte for byte what `make notebooks` writes (stable cell ids): regenerating changes nothing
    assert ipynb not in publish.write_notebooks(ROOT, check=True), "run `make notebooks`"


def test_staging_uses_the_executed_notebook_not_the_paired_one(tmp_path):
    """rebuild._stage copies book/ without any .ipynb, then drops in each chapter's executed notebook in
    place of its .md."""
    root, build = tmp_path / "book", tmp_path / "build"
    (root / "book").mkdir(parents=True)
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/ch\n")
    (root / "_config.yml").write_text("title: t\n")
    (root / "book" / "intro.md").write_text("# Intro\n")
    shutil.copy(ROOT / "tests" / "fixtures" / "minibook" / "book" / "tiny.md", root / "book" / "ch.md")
    publish.write_notebooks(root)
    assert (root / "book" / "ch.ipynb").exists()
    executed = build / "executed" / "smoke" / "ch.ipynb"
    executed.parent.mkdir(parents=True)
    nb = publish.paired_notebook(root / "book" / "ch.md")
    nb.metadata["executed-marker"] = True
    nbformat.write(nb, executed)
    src = rebuild._stage(rebuild.Book.load(root, build), "smoke", {})
    assert not (src / "book" / "ch.md").exists()
    assert json.loads((src / "book" / "ch.ipynb").read_text())["metadata"].get("executed-marker") is True
    assert (src / "book" / "intro.md").exists()
