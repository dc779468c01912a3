"""Publishing and citing: the site configuration, the bibliography, the provenance card, the GitHub
Actions workflow, and `make publish` pushing a site to the gh-pages branch of a (local, bare) remote."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from decoupling.pipeline import figures, publish

from conftest import ROOT

# Every reference the essay makes, and every paper and history source the chapters cite.
ESSAY_KEYS = {"taylor2021decoupling", "donahue2014decaf", "ruder2018imagenet", "olah2017feature",
              "place2016bidirectional", "radford2019language", "brown2020language", "turing1936computable",
              "vonneumann1945edvac", "wright1936factors", "moore1965cramming"}
HISTORY_KEYS = {"bush1931differential", "stibitz1940complex", "atanasoff1942abc", "aiken1944mark",
                "williams1948electronic", "amdahl1964architecture", "humphrey2002software"}
CHAPTER_KEYS = {"kaplan2020scaling", "hoffmann2022training", "besiroglu2024chinchilla", "zhang2017understanding",
                "belkin2019reconciling", "nakkiran2020deep", "allenzhu2024physics", "morris2025memorize",
                "collins2017capacity", "cover1965geometrical", "hernandez2021scaling", "blier2018description",
                "voita2020information", "yogatama2019learning", "you2021logme", "zamir2018taskonomy",
                "kumar2022finetuning", "garg2022what", "raventos2023pretraining", "hutto2014vader",
                "devlin2019bert", "chowdhery2022palm", "hernandez2020measuring", "nagy2013statistical",
                "hobbhahn2022trends", "reimers2019sentence", "wang2020minilm", "gururangan2020dont"}


def _config():
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def _bib():
    import pybtex.database
    return pybtex.database.parse_file(str(ROOT / "book" / "references.bib"))


# -- configuration ----------------------------------------------------------------------------------

def test_config_has_repository_launch_buttons_bibliography_and_vendored_mathjax():
    cfg = _config()
    repo = cfg["repository"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repo["url"]) and repo["branch"] == "main"
    assert repo.get("path_to_book", "") == ""  # chapters' notebooks are at book/<chapter>.ipynb from the root
    lb = cfg["launch_buttons"]
    assert lb["binderhub_url"] == "https://mybinder.org" and lb["colab_url"] == "https://colab.research.google.com"
    assert (ROOT / "environment.yml").exists()  # what Binder builds
    assert cfg["html"]["use_repository_button"] and cfg["html"]["use_issues_button"]
    assert (ROOT / cfg["html"]["favicon"]).exists()
    assert cfg["bibtex_bibfiles"] == ["book/references.bib"]
    sph = cfg["sphinx"]["config"]
    assert not sph["mathjax_path"].startswith("http") and "_extra" in sph["html_extra_path"]
    assert "decoupling.pipeline.publish" in cfg["sphinx"]["extra_extensions"]
    toc = (ROOT / "_toc.yml").read_text()
    assert "book/bibliography" in toc and "book/reproducibility" in toc
    assert "{bibliography}" in (ROOT / "book" / "bibliography.md").read_text()
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["repository-code"].rstrip("/") == repo["url"].rstrip("/")


def test_without_npm_mathjax_falls_back_to_the_cdn_with_one_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(publish, "VENDOR_DIR", tmp_path / "vendor")  # nothing vendored yet
    monkeypatch.setattr(publish.shutil, "which", lambda name: None)   # and no npm
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "_config.yml", src / "_config.yml")
    publish.stage_assets(src, tmp_path / "figures", [])
    cfg = yaml.safe_load((src / "_config.yml").read_text())
    assert cfg["sphinx"]["config"]["mathjax_path"] == publish.MATHJAX_CDN
    assert cfg["sphinx"]["extra_extensions"] == _config()["sphinx"]["extra_extensions"]  # the rest kept
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "WARNING" in err[0] and "CDN" in err[0]
    assert not (src / "_extra" / "_static" / "mathjax").exists()


def test_links_to_a_chapters_md_point_at_its_staged_notebook(tmp_path):
    """The staged book has book/memory.ipynb, not book/memory.md; links written to the .md must still work."""
    from types import SimpleNamespace
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "memory.ipynb").write_text("{}")
    (tmp_path / "book" / "scorecard.md").write_text("# s")
    app = SimpleNamespace(env=SimpleNamespace(doc2path=lambda doc: str(tmp_path / f"{doc}.md")))
    text = ["[m](memory.md) [m](memory.md#gate) [s](scorecard.md) [w](https://e.org/memory.md) [o](other.md)"]
    publish._md_links_to_staged_notebooks(app, "book/intro", text)
    assert text == ["[m](memory.ipynb) [m](memory.ipynb#gate) [s](scorecard.md) [w](https://e.org/memory.md) "
                    "[o](other.md)"]


# -- bibliography -----------------------------------------------------------------------------------

def test_references_bib_holds_every_reference_of_the_essay_and_the_chapters():
    entries = _bib().entries
    missing = (ESSAY_KEYS | HISTORY_KEYS | CHAPTER_KEYS) - set(entries)
    assert not missing, sorted(missing)
    for key in ESSAY_KEYS:
        assert "essay" in entries[key].fields.get("keywords", ""), key
    for key in HISTORY_KEYS:
        assert "history" in entries[key].fields.get("keywords", ""), key
    assert entries["place2016bidirectional"].fields["doi"] == "10.1038/nn.4327"
    assert entries["williams1948electronic"].fields["volume"] == "162"


def test_every_entry_is_complete_and_no_work_is_entered_twice():
    seen: dict[str, str] = {}
    for key, e in _bib().entries.items():
        assert e.fields.get("title") and e.fields.get("year") and e.persons.get("author"), key
        assert re.fullmatch(r"[a-z][a-z0-9]*\d{4}[a-z0-9]*", key), f"{key}: use <firstauthor><year><firstword>"
        for ident in ("doi", "eprint", "url"):
            if v := e.fields.get(ident):
                assert v.lower() not in seen, f"{key} and {seen[v.lower()]} are the same work ({ident} {v})"
                seen[v.lower()] = key


def test_history_reads_the_years_of_the_bibliography_with_pybtex(tmp_path):
    from decoupling.pipeline import history
    bib = tmp_path / "r.bib"
    bib.write_text('@article{a1931x,\n title = {A {Nested} title, with = and a comma},\n year = {1931}\n}\n'
                   '@misc{b2002y, title = "B", year = 2002}\n@book{nodate, title = {C}}\n')
    assert history.bib_years(bib) == {"a1931x": 1931, "b2002y": 2002, "nodate": 0}
    book = history.bib_years(ROOT / "book" / "references.bib")
    assert set(book) == set(_bib().entries) and book["williams1948electronic"] == 1948


def test_every_citation_in_the_book_is_in_the_bibliography():
    keys = set(_bib().entries)
    cited = {}
    for md in sorted((ROOT / "book").glob("*.md")):
        for role_keys in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", md.read_text()):
            for k in role_keys.split(","):
                cited.setdefault(k.strip(), md.name)
    unknown = {k: f for k, f in cited.items() if k not in keys}
    assert not unknown, f"cited but not in book/references.bib: {unknown}"


# -- the provenance card ------------------------------------------------------------------------------

SIDE = {"id": "memory-gating", "commit": "0123456789abcdef", "dirty": False, "profile": "full", "device": "NVIDIA H100",
        "seeds": [0, 1, 2], "wall_time_s": 12.34, "records": 3, "cache_hits": 2, "stale": False}


def test_card_shows_provenance_and_links_to_the_cell():
    card = figures.card_html(SIDE, "https://github.com/o/r/blob/0123456789abcdef/book/memory.md#L40")
    for text in ("memory-gating", "profile", "full", "0123456789", "NVIDIA H100", "seeds 0, 1, 2",
                 "compute 12.3 s", "cache 2 hits / 1 miss"):
        assert text in card, text
    assert 'class="provenance"' in card and 'id="prov-memory-gating"' in card
    assert 'href="#fig-memory-gating"' in card and "#L40" in card
    assert 'href="../_static/figures/memory-gating.json"' in card and "STALE" not in card
    assert figures.anchor_html("memory-gating") == '<a id="fig-memory-gating" class="figure-anchor"></a>'


def test_card_marks_a_stale_full_figure():
    card = figures.card_html({**SIDE, "stale": True, "dirty": True})
    assert "STALE" in card and "(dirty)" in card and 'class="provenance-stale"' in card


def test_card_escapes_what_it_shows():
    card = figures.card_html({**SIDE, "device": "<script>x</script>"})
    assert "<script>" not in card


# -- the workflow -------------------------------------------------------------------------------------

def test_workflow_builds_and_publishes_the_book_on_push_to_main():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "main" in on["push"]["branches"]
    assert wf["permissions"]["contents"] == "write"
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    runs = [s.get("run", "") for s in steps]
    i_book = next(i for i, r in enumerate(runs) if re.search(r"\bmake book\b", r))
    i_pub = next(i for i, r in enumerate(runs) if re.search(r"\bmake publish\b", r))
    assert i_book < i_pub and "_build/html" in runs[i_pub]
    assert any(s.get("uses", "").startswith("actions/checkout@") for s in steps)


# -- make publish -------------------------------------------------------------------------------------

def _git(*args, cwd=None, env=None):
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def git_env():
    who = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}
    return {**os.environ, **who, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def _publish(work: Path, html: Path, env, *remote) -> subprocess.CompletedProcess:
    # -f: this working tree's Makefile, run in a throwaway repository (ghp-import commits to the gh-pages
    # branch of the repository it runs in, so never in the project's own checkout here)
    return subprocess.run(["make", "-s", "-f", str(ROOT / "Makefile"), "publish", *remote, f"HTML={html}",
                           f"VENV={ROOT / '.venv'}"], cwd=work, env=env, capture_output=True, text=True, timeout=300)


def test_make_publish_pushes_the_site_to_gh_pages(tmp_path, git_env):
    remote, work, html = tmp_path / "remote.git", tmp_path / "work", tmp_path / "html"
    _git("init", "-q", "--bare", str(remote), env=git_env)
    _git("init", "-q", str(work), env=git_env)
    _git("commit", "-q", "--allow-empty", "-m", "source", cwd=work, env=git_env)
    _git("remote", "add", "origin", str(remote), cwd=work, env=git_env)  # REMOTE defaults to origin
    (html / "book").mkdir(parents=True)
    (html / "_static").mkdir()
    (html / "index.html").write_text("<meta http-equiv='Refresh' content='0; url=book/intro.html'>")
    (html / "book" / "intro.html").write_text("<h1>first</h1>")
    (html / "_static" / "site.css").write_text("body{}")

    r = _publish(work, html, git_env)
    assert r.returncode == 0, r.stdout + r.stderr
    files = set(_git("--git-dir", str(remote), "ls-tree", "-r", "--name-only", "gh-pages").split())
    assert files == {".nojekyll", "index.html", "book/intro.html", "_static/site.css"}, files
    assert "first" in _git("--git-dir", str(remote), "show", "gh-pages:book/intro.html")
    assert "Book built from" in _git("--git-dir", str(remote), "log", "-1", "--format=%s", "gh-pages")

    # a second publish replaces the site (force push, one commit: no history of old builds to carry)
    (html / "book" / "intro.html").write_text("<h1>second</h1>")
    (html / "_static" / "site.css").unlink()
    r = _publish(work, html, git_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "second" in _git("--git-dir", str(remote), "show", "gh-pages:book/intro.html")
    assert "_static/site.css" not in _git("--git-dir", str(remote), "ls-tree", "-r", "--name-only", "gh-pages")
    assert _git("--git-dir", str(remote), "rev-list", "--count", "gh-pages").strip() == "1"


def test_make_publish_refuses_without_a_built_site(tmp_path, git_env):
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    _git("init", "-q", "--bare", str(remote), env=git_env)
    _git("init", "-q", str(work), env=git_env)
    r = _publish(work, tmp_path / "nothing", git_env, f"REMOTE={remote}")
    assert r.returncode != 0 and "run make book first" in r.stdout + r.stderr
    assert _git("--git-dir", str(remote), "branch", "--list").strip() == ""


def test_a_built_page_names_and_installs_the_commit_that_built_it(tmp_path, monkeypatch):
    """stamp_build on a staged book: the launch buttons point at the commit (the staged _config.yml's
    branch), every notebook's first cell installs exactly that commit, and the reproducibility page names
    it with the commands that rebuild its numbers from it. The committed files are left as they were."""
    import json
    src = tmp_path / "src"
    (src / "book").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", src / "_config.yml")
    shutil.copy(ROOT / "book" / "memory.ipynb", src / "book" / "memory.ipynb")
    shutil.copy(ROOT / "book" / "reproducibility.md", src / "book" / "reproducibility.md")
    commit = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv(publish.BUILD_COMMIT_ENV, commit)
    assert publish.stamp_build(src) == commit
    assert yaml.safe_load((src / "_config.yml").read_text())["repository"]["branch"] == commit
    url, _ = publish.repository(ROOT)
    first = json.loads((src / "book" / "memory.ipynb").read_text())["cells"][0]
    code = "".join(first["source"])
    assert f"git+{url}@{commit}" in code and "remove-cell" in first["metadata"]["tags"]
    page = (src / "book" / "reproducibility.md").read_text()
    assert publish.BUILD_MARKER not in page and f"git checkout {commit}" in page and f"/commit/{commit}" in page
    publish.stamp_build(src)  # a second stamp adds no second set-up cell
    cells = json.loads((src / "book" / "memory.ipynb").read_text())["cells"]
    assert sum(publish.INSTALL_TAG in c["metadata"].get("tags", []) for c in cells) == 1
    assert publish.BUILD_MARKER in (ROOT / "book" / "reproducibility.md").read_text()
