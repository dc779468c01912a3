"""The notebooks the launch buttons open. Colab opens only .ipynb, and a chapter's Colab/Binder button
points at book/<chapter>.ipynb in the repository, so each chapter's MyST source has its notebook committed
beside it: jupytext's reading of the .md, without outputs (`make notebooks` writes them). The rebuild must
still build the site from the *executed* notebook, never from this one."""
import json
from pathlib import Path
import shutil

import jupytext
import nbformat
import pytest
import yaml

from decoupling import paths
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
    assert publish.INSTALL_TAG in nb.cells[0].metadata.get("tags", []), "the first cell installs the library"
    got = [(c.cell_type, c.source, dict(c.metadata)) for c in nb.cells[1:]]
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


@pytest.mark.slow
def test_setup_cell_installs_the_library_outside_the_repository(tmp_path):
    """A launch button opens book/<chapter>.ipynb where nothing has installed the library. In a fresh
    virtual environment that sees the pinned dependencies but not `decoupling`, run from a directory outside
    the repository, the notebook's first cell is the only install (pointed at a local copy of the library
    instead of the repository URL) and the chapter then executes at smoke."""
    import os
    import subprocess
    import sys
    import sysconfig
    env_dir, deps, src, run = (tmp_path / d for d in ("env", "deps", "src", "run"))
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    # the dependencies, already installed here, without this checkout's own editable install
    deps.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        if not entry.name.startswith(("decoupling", "__editable__")):
            (deps / entry.name).symlink_to(entry)
    py = env_dir / "bin" / "python"
    env_site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
    (env_site / "deps.pth").write_text(str(deps) + "\n")
    assert subprocess.run([str(py), "-c", "import decoupling"], capture_output=True).returncode != 0
    # a local copy of the library stands in for the repository URL
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "lib", src / "lib", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    run.mkdir()
    shutil.copy(ROOT / "book" / "memory.ipynb", run / "memory.ipynb")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DECOUPLING_ROOT", "PYTHONPATH"))}
    env.update({publish.INSTALL_ENV: str(src), "DECOUPLING_STORE": str(tmp_path / "store"),
                "DECOUPLING_BUILD": str(tmp_path / "build"), "DECOUPLING_PROGRESS": "0",
                "DECOUPLING_DATA": str(paths.DATA_DIR),  # prepared already: the cell's data step finds it
                "PIP_NO_BUILD_ISOLATION": "0",  # pip's inverted switch: build with the setuptools already here
                "VIRTUAL_ENV": str(env_dir), "PATH": f"{env_dir / 'bin'}:{os.environ['PATH']}"})
    r = subprocess.run([str(py), "-m", "papermill", "memory.ipynb", "out.ipynb", "-p", "profile", "smoke",
                        "-k", "python3", "--cwd", str(run)], cwd=run, env=env, capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0, r.stderr[-4000:]
    out = json.loads((run / "out.ipynb").read_text())
    assert not any(o.get("output_type") == "error" for c in out["cells"] for o in c.get("outputs", []))
    # the first cell installed it into the fresh environment, not this checkout's
    where = subprocess.run([str(py), "-c", "import decoupling; print(decoupling.__file__)"], capture_output=True,
                           text=True, env=env, check=True).stdout
    assert str(env_site) in where, where
