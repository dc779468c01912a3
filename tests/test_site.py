"""The built site, read the way a reader reads it: the whole book built at `smoke` (the session's
`smoke_book`), served on loopback, every page opened in headless Chromium driven by Selenium (Debian's
chromium and chromium-driver, which `make browser` installs where apt-get can; CHROMIUM and CHROMEDRIVER
name other binaries). Without them the tests skip with one line saying so, before building anything;
with DECOUPLING_REQUIRE_BROWSER=1 (CI) they fail instead.

On every page: no console error, every image loaded, nothing fetched from outside the site (Chromium is
told that every other host does not exist, so a CDN script fails here as it would for an offline reader),
every same-site link answers 200 and its #fragment exists, every figure is followed by its provenance
card, and nothing of the build's machinery shows (no parameters cell, no stderr block, no repr of a
library object, no traceback: tests/page_checks.py). Formulas are typeset by the vendored MathJax. The launch buttons open notebooks that exist in the
repository, the download button offers the executed notebook, search finds a word. A screenshot of a
chapter is saved to <build>/artifacts/.

Console errors are not filtered: a new one fails the test until it is fixed or a reason to ignore it is
written in IGNORED_CONSOLE below.
"""
import functools
import json
import os
import re
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest
import yaml

from decoupling.pipeline import publish
from page_checks import machinery

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SCREENSHOT_PREFERENCE = ["generality", "memory", "tyranny", "computers"]  # the first that has a figure
WINDOW = (1280, 1000)  # a laptop's browser window: every table must fit the main column at this width
# (regex on the console message, why it is harmless). Empty: nothing is ignored.
IGNORED_CONSOLE: list[tuple[str, str]] = []

pytestmark = pytest.mark.slow


def _find_browser() -> tuple[tuple[str, str] | None, str]:
    """((chromium, chromedriver), "") or (None, why not)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None, "selenium is not installed (pip install -e '.[test]')"
    chromium = os.environ.get("CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    if not chromium or not driver:
        missing = " and ".join(n for n, p in (("Chromium", chromium), ("chromedriver", driver)) if not p)
        return None, f"no {missing} found (`make browser` installs Debian's where apt-get can)"
    return (chromium, driver), ""


@pytest.fixture(scope="module")
def browser() -> tuple[str, str]:
    """The browser and its driver; asked for before the site, so a missing browser skips at once."""
    found, why = _find_browser()
    if found is None:
        if os.environ.get("DECOUPLING_REQUIRE_BROWSER") == "1":
            pytest.fail(f"the browser test must run here: {why}")
        pytest.skip(why)
    return found


# -- the site, served on loopback -------------------------------------------------------------------

class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(browser, smoke_book):
    assert smoke_book.returncode == 0, smoke_book.stdout[-3000:] + smoke_book.stderr[-5000:]
    html = smoke_book.html
    assert (html / "index.html").exists()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(html)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", html, smoke_book.build
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def driver(browser):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never try to download a browser or driver
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    opts = webdriver.ChromeOptions()
    chromium, chromedriver = browser
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--user-data-dir={profile}",
                 # every host but loopback fails to resolve: the site must need nothing from the internet
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=opts, service=Service(executable_path=chromedriver))
    d.set_page_load_timeout(60)
    d.set_script_timeout(60)
    yield d
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _pages(html: Path) -> list[str]:
    skip = {"_static", "_sources", "_images"}
    return sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html") if not skip & set(p.relative_to(html).parts))


# Every table of a page that is wider than what holds it: the table's scrollWidth (its content, overflowing
# cells included) against the clientWidth of its parent (pydata-sphinx-theme's scrollable wrapper, or a
# cell's output) and of the page's main column. Shared by the site test and its own check below.
TABLES_JS = r"""
const col = document.querySelector('.bd-article') || document.body;
return Array.from(document.querySelectorAll('table')).filter(t => t.offsetParent !== null).map((t, i) => {
  const parent = t.parentElement;
  const head = Array.from(t.querySelectorAll('th')).slice(0, 3).map(h => h.textContent.trim()).join(' | ');
  return {i: i, head: head, width: Math.ceil(Math.max(t.scrollWidth, t.getBoundingClientRect().width)),
          parent: parent.clientWidth, parent_scroll: parent.scrollWidth, column: col.clientWidth};
}).filter(t => t.width > t.parent + 1 || t.parent_scroll > t.parent + 1 || t.width > t.column + 1);
"""

# What each page reports once loaded and typeset (one pass over the site; the tests below read it).
PAGE_JS = r"""
const done = arguments[arguments.length - 1];
const settle = async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  window.scrollTo(0, document.body.scrollHeight);              // lazy images, if any, start loading
  for (let i = 0; i < 100 && !Array.from(document.images).every(im => im.complete); i++) {
    await new Promise(r => setTimeout(r, 100));
  }
  window.scrollTo(0, 0);
  const cellImgs = Array.from(document.querySelectorAll('.cell_output img'));
  const hasCard = el => !!el && (el.matches('.provenance') || !!el.querySelector('.provenance'));
  const hasAnchor = el => !!el && (el.matches('a.figure-anchor') || !!el.querySelector('a.figure-anchor'));
  return {
    url: location.href,
    images: Array.from(document.images).map(im => [im.currentSrc || im.src, im.complete, im.naturalWidth]),
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
    resources: performance.getEntriesByType('resource').map(e => e.name),
    uncarded: cellImgs.filter(im => !hasCard(im.nextElementSibling)).map(im => im.src),
    unanchored: cellImgs.filter(im => !hasAnchor(im.previousElementSibling)).map(im => im.src),
    n_figures: cellImgs.length,
    cards: Array.from(document.querySelectorAll('.provenance')).map(c => ({
      id: c.id, text: c.textContent, links: Array.from(c.querySelectorAll('a')).map(a => [a.textContent, a.href])})),
    math: document.querySelectorAll('.math').length,
    math_unrendered: Array.from(document.querySelectorAll('.math')).filter(m => !m.querySelector('mjx-container')).length,
    mjx: document.querySelectorAll('mjx-container').length,
    mathjax_src: Array.from(document.scripts).map(s => s.src).filter(s => /mathjax/i.test(s)),
    launch: Array.from(document.querySelectorAll('a[href*="colab.research.google.com"], a[href*="mybinder.org"]')).map(a => a.href),
    downloads: Array.from(document.querySelectorAll('a[href*="_sources/"]')).map(a => a.href),
    tables: (() => { TABLES })(),
    n_tables: document.querySelectorAll('table').length,
    html: document.documentElement.outerHTML,
  };
};
settle().then(done, e => done({error: String(e)}));
""".replace("TABLES", TABLES_JS)


@pytest.fixture(scope="module")
def visited(site, driver):
    base, html, _ = site
    out = {}
    for page in _pages(html):
        driver.get(base + page)
        if 'http-equiv="Refresh"' in (html / page).read_text()[:2000]:  # index.html: a redirect page
            from selenium.webdriver.support.ui import WebDriverWait
            WebDriverWait(driver, 20).until(lambda d: d.current_url != base + page)
        info = driver.execute_async_script(PAGE_JS)
        assert "error" not in info, (page, info)
        info["console"] = driver.get_log("browser")
        out[page] = info
    return out


# -- every page ---------------------------------------------------------------------------------------

def test_site_has_the_books_pages(visited):
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    entries = re.findall(r"(?:file|root): (\S+)", yaml.safe_dump(toc))
    missing = [e for e in entries if f"{e}.html" not in visited]
    assert not missing, missing
    assert "search.html" in visited and "book/bibliography.html" in visited


def test_no_console_errors(visited):
    errors = [(page, e["message"]) for page, info in visited.items() for e in info["console"]
              if e["level"] == "SEVERE" and not any(re.search(rx, e["message"]) for rx, _ in IGNORED_CONSOLE)]
    assert not errors, "\n".join(f"{p}: {m}" for p, m in errors)


def test_no_page_shows_the_build_machinery(visited):
    """A reader sees the essay: not the parameters cells, library warnings on stderr, reprs of the
    library's objects (e.g. after a claim) or a traceback."""
    shown = {page: found for page, info in visited.items() if (found := machinery(info["html"]))}
    assert not shown, "\n".join(f"{p}: {'; '.join(f)}" for p, f in sorted(shown.items()))


def test_every_image_loaded(visited):
    broken = [(page, src) for page, info in visited.items() for src, complete, w in info["images"]
              if not (complete and w > 0)]
    assert not broken, broken


def test_nothing_is_fetched_from_outside_the_site(site, visited):
    base = site[0]
    outside = sorted({(page, r) for page, info in visited.items() for r in info["resources"]
                      if not r.startswith((base, "data:", "blob:"))})
    assert not outside, outside


def _too_wide(tables: list[dict]) -> list[str]:
    return [f"table {t['i']} ({t['head'][:80]!r}) is {t['width']} px wide in {t['parent']} px "
            f"(main column {t['column']} px)" for t in tables]


def test_every_table_fits_the_main_column(visited):
    """At a 1280-pixel window no table is wider than its container: the scorecard's verdict, and every
    other column of every table, is on screen without scrolling sideways."""
    assert visited["book/scorecard.html"]["n_tables"] > 0
    wide = {page: _too_wide(info["tables"]) for page, info in visited.items() if info["tables"]}
    assert not wide, "\n".join(f"{p}: {w}" for p, ws in sorted(wide.items()) for w in ws)


def test_the_table_check_sees_a_table_too_wide_and_the_books_css_fits_it(driver, tmp_path):
    """The check above, on a page built like the book's (main column, the theme's scrollable wrapper) with
    a table of long numbers and lists: without book/_static/custom.css the table overflows and the check
    says so; with it the same table fits."""
    cells = "".join(f"<td>{'0.123456789' * 6}, [{', '.join(['sentiment-imdb'] * 6)}]</td>" for _ in range(5))
    heads = "".join(f"<th>column{i}</th>" for i in range(6))
    page = ("<!doctype html><html><head>{css}</head><body><main style='width: 900px'>"
            "<article class='bd-article'><div class='pst-scrollable-table-container' style='overflow-x: auto'>"
            f"<table class='table'><thead><tr>{heads}</tr></thead><tbody><tr><td>"
            f"<code class='docutils literal'><span class='pre'>{'memory/no-context-at-chance' * 3}</span></code>"
            f"</td>{cells}</tr></tbody></table></div></article></main></body></html>")
    css = (ROOT / "book" / "_static" / "custom.css").read_text()
    for name, head in (("bare", "<style>span.pre { white-space: nowrap; }</style>"),
                       ("styled", f"<style>span.pre {{ white-space: nowrap; }}\n{css}</style>")):
        (tmp_path / f"{name}.html").write_text(page.format(css=head))
    driver.get((tmp_path / "bare.html").as_uri())
    assert _too_wide(driver.execute_script(TABLES_JS)), "a table wider than its column went unnoticed"
    driver.get((tmp_path / "styled.html").as_uri())
    assert not _too_wide(driver.execute_script(TABLES_JS))


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("id", "name") and v:
                self.ids.add(v)


def test_every_internal_link_resolves(site, visited):
    base, html, _ = site
    targets: dict[str, set[str]] = {}
    for page, info in visited.items():
        for href in info["links"]:
            if href.startswith(base):
                url, frag = urldefrag(href)
                targets.setdefault(url, set())
                if frag:
                    targets[url].add(unquote(frag))
    assert len(targets) > len(visited) // 2, "too few internal links collected"
    problems = []
    for url, frags in sorted(targets.items()):
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                status, body, ctype = r.status, r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            problems.append(f"{url}: HTTP {e.code}")
            continue
        if status != 200:
            problems.append(f"{url}: HTTP {status}")
        elif frags and "html" in ctype:
            p = _Ids()
            p.feed(body.decode("utf-8", "replace"))
            problems += [f"{url}#{f}: no such anchor" for f in sorted(frags - p.ids)]
    assert not problems, "\n".join(problems)


# -- figures and their provenance -----------------------------------------------------------------

def test_every_figure_has_its_provenance_card(site, visited):
    _, _, build = site
    uncarded = [(p, src) for p, info in visited.items() for src in info["uncarded"]]
    assert not uncarded, f"images in cell outputs without a provenance card right after them: {uncarded}"
    unanchored = [(p, src) for p, info in visited.items() for src in info["unanchored"]]
    assert not unanchored, f"figures without their #fig-<id> anchor right before them: {unanchored}"
    n = 0
    for rec_file in sorted((build / "records").glob("*.json")):
        rec = json.loads(rec_file.read_text())
        page = f"book/{rec['chapter']}.html"
        if rec.get("profile") != "smoke" or page not in visited:
            continue
        cards = {c["id"]: c for c in visited[page]["cards"]}
        for fig in rec.get("figures", []):
            n += 1
            card = cards.get(f"prov-{fig['id']}")
            assert card, f"{page}: figure {fig['id']} has no provenance card"
            for word in ("profile", "commit", "device", "seeds", "compute", "cache", "hit", "miss"):
                assert word in card["text"], (fig["id"], word, card["text"])
            assert fig["id"] in card["text"] and fig["commit"][:10] in card["text"]
            assert fig["profile"] in card["text"]
            links = dict(card["links"])
            assert links.get("cell", "").endswith(f"#fig-{fig['id']}"), card["links"]
            assert {"svg", "json"} <= set(links), card["links"]
    assert n > 0 and n == sum(info["n_figures"] for info in visited.values()), \
        "every figure of the records is on its page, and every image in a cell output is a recorded figure"


# -- formulas, buttons, search -------------------------------------------------------------------

def test_mathjax_is_vendored_and_typesets_every_formula(site, visited):
    base = site[0]
    with_math = {p: i for p, i in visited.items() if i["math"]}
    assert "book/reproducibility.html" in with_math
    for page, info in with_math.items():
        assert info["mathjax_src"] and all(s.startswith(base + "_static/mathjax/") for s in info["mathjax_src"]), \
            (page, info["mathjax_src"])
        assert info["math_unrendered"] == 0 and info["mjx"] >= info["math"], (page, info["math"], info["mjx"])


def test_essays_kl_formula_is_rendered(site, visited):
    """The essay's information gain D_KL(p(y;θ0) || p(y;θP)) is typeset wherever the book writes it
    (the preface, the generality chapter, the reproducibility page)."""
    html = site[1]
    pages = [p for p in visited if "D_{KL}" in (html / p).read_text()]
    assert "book/reproducibility.html" in pages, pages
    for p in pages:
        assert visited[p]["mjx"] > 0 and visited[p]["math_unrendered"] == 0, p


def test_launch_and_download_buttons_point_at_files_that_exist(site, visited):
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = urlparse(cfg["repository"]["url"]).path.strip("/")
    # a built site's buttons open the chapter's notebook at the commit that built it (publish.stamp_build),
    # or on the configured branch where no commit is known
    branch = publish.build_commit(ROOT)[0] or cfg["repository"]["branch"]
    assert (ROOT / "environment.yml").exists()  # what Binder builds from
    chapters = [f"book/{p.stem}.html" for p in (ROOT / "book").glob("*.md")
                if "kernelspec:" in p.read_text()[:2000] and f"book/{p.stem}.html" in visited]
    assert chapters
    for page in chapters:
        info = visited[page]
        nb = page.removesuffix(".html") + ".ipynb"
        colab = [u for u in info["launch"] if "colab" in u]
        binder = [u for u in info["launch"] if "mybinder" in u]
        assert colab == [f"https://colab.research.google.com/github/{repo}/blob/{branch}/{nb}"], colab
        assert binder and binder[0].startswith(f"https://mybinder.org/v2/gh/{repo}/{branch}?urlpath="), binder
        assert binder[0].endswith(f"/tree/{nb}"), binder
        assert (ROOT / nb).is_file(), f"the launch buttons open {nb}, which is not in the repository (make notebooks)"
        # download: the executed notebook itself (its link is checked by the internal-link test)
        assert any(u.endswith(f"_sources/{nb}") for u in info["downloads"]), info["downloads"]


def test_search_finds_a_word(site, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(site[0] + "search.html?q=provenance")
    hits = WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "ul.search li a"))
    assert any("reproducibility" in h.get_attribute("href") for h in hits)
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_screenshot_of_a_chapter(site, driver, visited):
    base, _, build = site
    chapter = next((c for c in SCREENSHOT_PREFERENCE if visited.get(f"book/{c}.html", {}).get("n_figures")),
                   next((p.split("/")[-1][:-5] for p, i in visited.items() if i["n_figures"]), None))
    assert chapter, "no chapter with a figure"
    driver.get(f"{base}book/{chapter}.html")
    driver.execute_script("document.querySelector('.cell_output img').scrollIntoView({block: 'center'})")
    out = build / "artifacts" / f"screenshot-{chapter}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(out)) and out.stat().st_size > 10_000
