"""code/agents: a code target no lab model of the zoo can have read.

code/module asks which stdlib package a 20-line window of source comes from, and every lab model of the
zoo (all-MiniLM-L6-v2 and all-mpnet-base-v2 from 2021, SmolLM2 from November 2024) has almost surely read
CPython's standard library. This target asks the same question of projects that did not exist when those
models were trained: four agent frameworks first uploaded to PyPI after CUTOFF, one class per project,

  openai-agents   (first upload 2025-03-04)   google-adk      (2025-03-17)
  a2a-sdk         (2025-05-15)                strands-agents  (2025-05-14)

read from their pinned py3-none-any wheels with zipfile. Two other agent projects on PyPI are left out, on
the evidence recorded in EXCLUDED: `mcp` was first uploaded on 2024-11-20, before CUTOFF, and `smolagents`
grew out of transformers' `agents` module (2024), which the lab models may have read (measured: 28% of
its local_python_executor.py windows and 25% of its tools.py windows are mostly in transformers 4.44.2).

Rows are made as code/module's (tasks._code_rows): non-overlapping SNIPPET_LINES-line windows of the raw
source (comments and docstrings kept), at least SNIPPET_MIN_LINES non-blank lines, each text once. Before
windowing, each file loses
  - its leading license header (every google-adk file opens with the same 13-line Apache notice, text
    every lab model has read many times and a giveaway of the label; stdlib files carry no header), and
  - every project's names: the import paths (google.adk, a2a, strands, and openai-agents' `agents` where
    it is an import path), the distribution names (openai-agents, google_adk, ...) and the short names
    inside identifiers (ADK, A2A, Strands) become PLACEHOLDER, in every file of every class, so no
    class is told by its own name (`scrub`).
Files a project did not write are dropped: tests (as in the full corpora), generated code (protoc,
datamodel-codegen) and the files the projects say they copied or adapted from older code (`not_its_own`,
found by reading every file's copyright lines and "adapted/taken/copied from" notes).

Decontamination as everywhere in the book (decoupling.data.overlap): a row whose 10-token windows are
mostly in any pretraining corpus of ours (the smoke corpora and the full ones) is dropped. Then every class
is cut to the smallest class's size, the windows taken in the fixed random order, so majority is chance.

The target needs the full corpora to be decontaminated against, so it is built by the full data step
(`decoupling data --profile full`, decoupling.data.full) under DATA_DIR/full/tasks/code__agents and
recorded in the full manifest; the readers load it like any task: `data.arrays("code/agents")`.
"""
from __future__ import annotations

import json
import re
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import decoupling.data.sources as sources
import decoupling.data.tasks as tasks
from decoupling.data.layout import (FULL_TASKS, PORTABLE_DOMAINS, artifact_meta, data_dir, full_dir,
                                    say, task_dir)

NAME = FULL_TASKS[0]  # "code/agents"
# The newest lab model of the zoo, SmolLM2, was released in November 2024; its corpora were collected
# before. A project first uploaded after this day cannot be in any of them.
CUTOFF = "2024-11-30"
PLACEHOLDER = "pkg"
TEST_PARTS = {"test", "tests", "testing"}  # as decoupling.data.full leaves tests out of the corpora


@dataclass(frozen=True)
class Project:
    """One class of the target: a PyPI project pinned by version and wheel sha256."""
    name: str  # the PyPI project, also the label name
    version: str
    sha256: str  # of the py3-none-any wheel on PyPI
    import_path: str  # what `import` names
    first_upload: str  # the earliest upload time (UTC) of any file of any release of the project on PyPI
    release_notes: str  # what the wheel and sdist ship as a changelog or release notes
    not_its_own: tuple[tuple[str, str], ...] = ()  # (wheel member, why): code the project did not write


# One class per project: a project is the package its users import, as each stdlib package of code/module
# is. The smallest (a2a-sdk, ~1.2k windows) is large enough for the zoo's 640 + 128 rows per run, so the
# larger ones are cut to its size rather than split into subpackages, whose names (tools, models, server)
# are words no scrubber could take out of the text.
FIRST_UPLOAD_SOURCE = ("PyPI JSON API https://pypi.org/pypi/{name}/json: the earliest upload_time_iso_8601 over "
                       "every file of every release (read 2026-12-07; re-checked by the data step where PyPI "
                       "answers)")
PROJECTS = (
    Project("openai-agents", "0.25.0", "09a02b815842b498647749a8d9e4c101b0bd69d2a81a8f91e8ec3ac0f2c54150",
            "agents", "2025-03-04T18:16:20.752702Z",
            "the wheel ships none; the 0.25.0 sdist's changelog starts at 0.23.0 (2026-10-01)",
            (("agents/strict_schema.py", "says it is adapted from openai-python's lib/_pydantic.py (2024)"),)),
    Project("google-adk", "2.15.0", "0b50fcc59d6fdd336d4772aad8ab8f01af6bf3dcd901a50eaa4e1e7f379e3b94",
            "google.adk", "2025-03-17T17:49:28.521047Z",
            "neither the wheel nor the 2.15.0 sdist ships one (METADATA links a changelog on GitHub)"),
    Project("a2a-sdk", "1.3.0", "b94a73b5dc7ff1afe5f11d324480f83386a64d02b8a6b719baf013595284cc6c",
            "a2a", "2025-05-15T20:13:06.370364Z",
            "the wheel ships none; the 1.3.0 sdist's changelog has its oldest entry at 0.2.2 (2025-05-20)",
            (("a2a/utils/_jcs.py", "says it is adapted from Anders Rundgren's JSON canonicalization "
                                   "reference implementation (RFC 8785, 2020)"),)),
    Project("strands-agents", "1.65.0", "5e8dd8538fea593763f9da9aecf72f5b71f421413ba8fafbeef1b2ccd3093658",
            "strands", "2025-05-14T21:13:27.589676Z", "neither the wheel nor the 1.65.0 sdist ships one",
            (("strands/models/llamaapi.py", "carries Meta Platforms' copyright, not the project's: it may be "
                                            "copied from Meta's code"),)),
)
EXCLUDED = {
    "mcp": "first uploaded to PyPI on 2024-11-20T11:37:34Z (0.9.1), before CUTOFF",
    "smolagents": "grew out of transformers' agents module (2024); against transformers 4.44.2's agents/*.py, "
                  "28% of local_python_executor.py's and 25% of tools.py's 20-line windows are mostly "
                  "(overlap.MOSTLY) found, and _function_type_hints_utils.py says it is taken from transformers",
}

# Generated code: written by a generator (protoc, datamodel-codegen), not by the project.
_GENERATED_NAME = re.compile(r"_pb2(_grpc)?\.pyi?$")
_GENERATED_NOTE = re.compile(r"(?i)generated by (the protocol buffer compiler|datamodel-codegen)|do not edit")


# --------------------------------------------------------------------------------------------------
# Scrubbing: no class is told by its own name
# --------------------------------------------------------------------------------------------------
# Distribution names and multi-part import paths, whatever joins their parts ("openai.agents" is
# openai-agents' logger, "google/adk" a path, strandsagents.com a web site).
_DISTRIBUTIONS = re.compile(r"(?i)(?<![A-Za-z0-9])(openai[-_. ]?agents|google[-_./ ]?adk|a2a[-_ ]?sdk|"
                            r"strands[-_ ]?agents|agent development kit)(?![A-Za-z0-9])")
# Short names that are only ever these projects' names: scrubbed where they stand as a word or as a part of
# an identifier (adk_request, AdkApp, A2AClient, _ADK_KEY, StrandsAgent).
SHORT_NAMES = ("adk", "a2a", "strands")
_SHORT = re.compile("(?i)" + "|".join(SHORT_NAMES))
_IMPORT_AGENTS = re.compile(r"(?m)^(\s*(?:from|import)\s+)agents(?=[\s.,]|$)")


def _styled(found: str) -> str:
    if found.isupper():
        return PLACEHOLDER.upper()
    return PLACEHOLDER.capitalize() if found[0].isupper() else PLACEHOLDER


def _a_part(text: str, i: int, j: int) -> bool:
    """Whether text[i:j] is a whole word or a whole part of an identifier: not inside a longer run of
    letters, except at a camel-case seam (adkApp, getAdk, A2AClient, StrandsAgent, A2AJSONResponse) or
    before a plural s (the left side is what keeps HEADKEY or loadKey whole)."""
    before = text[i - 1] if i > 0 else ""
    after = text[j] if j < len(text) else ""
    found = text[i:j]
    left = not before.isalnum() or (before.islower() or before.isdigit()) and found[0].isupper()
    then = text[j + 1] if j + 1 < len(text) else ""
    right = (not after.isalnum() or after.isupper() and found[-1].islower()
             or found.isupper() and (after.isupper() or after == "s" and not then.isalnum()))
    return left and right  # the last two: an acronym run (A2AJSONResponse) and a plural (ADKs)


def scrub(text: str, agents_modules: frozenset[str] = frozenset()) -> str:
    """`text` with every project's names replaced by PLACEHOLDER (pkg / Pkg / PKG, as the name was cased).

    openai-agents imports as `agents`, a word the other projects use for their own things (google.adk.agents,
    a variable `agents`): it is scrubbed only where it is that import path, in `from agents ...` /
    `import agents` and in a dotted reference into one of its own top-level modules (`agents_modules`,
    `agents.extensions.memory`) or to a name it exports (`agents.Agent`)."""
    text = _DISTRIBUTIONS.sub(lambda m: _styled(m.group(0)), text)
    text = _IMPORT_AGENTS.sub(lambda m: m.group(1) + PLACEHOLDER, text)
    own = "|".join(sorted(map(re.escape, agents_modules), key=len, reverse=True))
    # a module, not a call: `agents.items()` is a dict named agents, `agents.items` openai-agents' module
    text = re.sub(r"(?<![\w.])agents(?=\.(?:[A-Z]\w*" + (f"|(?:{own})(?![\\w(])" if own else "") + "))",
                  PLACEHOLDER, text)
    out, last = [], 0
    for m in _SHORT.finditer(text):
        if _a_part(text, m.start(), m.end()):
            out += [text[last:m.start()], _styled(m.group(0))]
            last = m.end()
    return "".join(out) + text[last:]


def strip_header(src: str) -> str:
    """The source without its leading comment block when that block is a copyright or license notice."""
    lines = src.split("\n")
    i = 0
    while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
        i += 1
    return "\n".join(lines[i:]) if re.search(r"(?i)copyright|licen[cs]e", "\n".join(lines[:i])) else src


# --------------------------------------------------------------------------------------------------
# Files -> rows
# --------------------------------------------------------------------------------------------------
def _dropped_why(p: Project, member: str, src: str) -> str | None:
    parts = member.split("/")
    if TEST_PARTS & set(parts[:-1]) or parts[-1].startswith("test_"):
        return "test"
    if _GENERATED_NAME.search(member) or _GENERATED_NOTE.search("\n".join(src.split("\n")[:15])):
        return "generated code"
    return dict(p.not_its_own).get(member)


def agents_modules(z: zipfile.ZipFile) -> frozenset[str]:
    """openai-agents' top-level modules and subpackages (agents/<name>.py, agents/<name>/...)."""
    return frozenset(n.split("/")[1].removesuffix(".py") for n in z.namelist()
                     if n.startswith("agents/") and n.endswith(".py")) - {"__init__"}


def project_files(p: Project, z: zipfile.ZipFile, modules: frozenset[str]) -> tuple[dict[str, str], dict]:
    """{member: scrubbed source without its license header} of a wheel's own .py files, and {member: why}
    for those left out."""
    files, dropped = {}, {}
    for member in sorted(n for n in z.namelist() if n.endswith(".py")):
        src = z.read(member).decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
        why = _dropped_why(p, member, src)
        if why:
            dropped[member] = why
            continue
        files[member] = scrub(strip_header(src), modules)
    return files, dropped


def windows(src: str) -> list[tuple[int, str]]:
    """(first line, text) of the non-overlapping windows code/module cuts (tasks._code_rows)."""
    lines, out = src.split("\n"), []
    for i in range(0, len(lines), tasks.SNIPPET_LINES):
        w = "\n".join(lines[i:i + tasks.SNIPPET_LINES]).strip("\n")
        if sum(1 for ln in w.split("\n") if ln.strip()) >= tasks.SNIPPET_MIN_LINES:
            out.append((i, w))
    return out


def _contaminated(texts: list[str]) -> list[bool]:
    """Per text: mostly (overlap.MOSTLY of its 10-token windows) in a pretraining corpus of ours, the smoke
    portable corpora or the full ones."""
    import numpy as np
    from tokenizers import Tokenizer

    import decoupling.data.overlap as overlap
    tok = Tokenizer.from_file(str(data_dir() / "tokenizer" / "tokenizer.json"))  # inside preparation: no readers
    bad = np.zeros(len(texts), bool)
    for root in (data_dir(), full_dir()):
        for dom in PORTABLE_DOMAINS:
            corpus = overlap.corpus_hashes(np.load(root / "tokens" / dom / "ids.npy"))
            bad |= overlap.overlap(texts, corpus, tok) >= overlap.MOSTLY
    return bad.tolist()


def rows(files: dict[str, dict[str, str]]) -> tuple[list[str], list[int], dict]:
    """Rows from {project: {member: source}}: windows, each text once (a text two projects share is dropped:
    its label would be ambiguous), decontaminated, then every class cut to the smallest class's size."""
    names = [p.name for p in PROJECTS]
    where: dict[str, set] = {}
    keyed = {n: {} for n in names}  # project -> {text: (member, first line)}
    for n in names:
        for member, src in files[n].items():
            for i, w in windows(src):
                where.setdefault(w, set()).add(n)
                keyed[n].setdefault(w, (member, i))
    shared = {w for w, ps in where.items() if len(ps) > 1}
    cands = [(n, w) for n in names for w in keyed[n] if w not in shared]
    bad = _contaminated([w for _, w in cands])
    kept = {n: {} for n in names}
    for (n, w), b in zip(cands, bad):
        if not b:
            kept[n][keyed[n][w]] = w
    per_class = min(len(v) for v in kept.values())
    texts, labels = [], []
    for k, n in enumerate(names):
        for key in sources.order(list(kept[n]))[:per_class]:  # the fixed random order: a uniform sample
            texts.append(kept[n][key])
            labels.append(k)
    info = {"windows": {n: len(keyed[n]) for n in names}, "dropped_shared": len(shared),
            "dropped_found_in_a_corpus": {n: sum(1 for (owner, _), b in zip(cands, bad) if b and owner == n)
                                          for n in names},
            "kept_before_the_cut": {n: len(kept[n]) for n in names}, "per_class": per_class}
    return texts, labels, info


# --------------------------------------------------------------------------------------------------
# The data step: fetch, record, build (called by decoupling.data.full once the full corpora exist)
# --------------------------------------------------------------------------------------------------
def first_upload_on_pypi(name: str, timeout: float = 30.0) -> str | None:
    """The earliest upload time of any file of `name` on PyPI, or None where PyPI's JSON API does not answer."""
    try:
        with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=timeout) as r:
            d = json.load(r)
    except (OSError, ValueError):
        return None
    times = [f["upload_time_iso_8601"] for fs in d.get("releases", {}).values() for f in fs]
    return min(times) if times else None


def check_first_upload(p: Project, progress: bool) -> None:
    """The pinned first upload must not be later than what PyPI says: an earlier one would break CUTOFF."""
    seen = first_upload_on_pypi(p.name)
    if seen is None:
        say(f"[data] {p.name}: PyPI's JSON API did not answer; first upload {p.first_upload} as pinned", progress)
    elif seen < p.first_upload:
        raise RuntimeError(f"{p.name}: PyPI says first uploaded {seen}, earlier than pinned {p.first_upload}")


def record(p: Project, whl: Path, z: zipfile.ZipFile, n_files: int, dropped: dict) -> dict:
    """The manifest's record of one project's wheel."""
    return {"origin": f"PyPI {p.name}=={p.version} wheel (.py files; tests, generated and copied code out)",
            "version": p.version, "license": sources.wheel_license(z), "sha256": p.sha256, "sha256_of": whl.name,
            "bytes": whl.stat().st_size, "n_files": n_files, "dropped_files": dropped,
            "import_path": p.import_path, "first_release": p.first_upload,
            "first_release_source": FIRST_UPLOAD_SOURCE.format(name=p.name), "release_notes": p.release_notes,
            "used_in": [NAME]}


def build(tmp: Path, progress: bool = True) -> tuple[dict, dict]:
    """Fetch the pinned wheels into tmp and save the task; returns (its meta, {source key: record}).
    Needs the smoke and the full token streams (it is decontaminated against them)."""
    t0 = time.time()
    files, records = {}, {}
    for p in PROJECTS:
        check_first_upload(p, progress)
        whl = sources.pypi_wheel(p.name, p.version, p.sha256, tmp)
        with zipfile.ZipFile(whl) as z:
            modules = agents_modules(z) if p.import_path == "agents" else frozenset()
            files[p.name], dropped = project_files(p, z, modules)
            records[f"pypi-{p.name}"] = record(p, whl, z, len(files[p.name]), dropped)
        if modules:  # what scrub() took for openai-agents' import path
            records[f"pypi-{p.name}"]["agents_modules"] = sorted(modules)
        say(f"[data] source    {records[f'pypi-{p.name}']['origin']}: {len(files[p.name])} files, "
            f"{len(dropped)} left out", progress)
    texts, labels, info = rows(files)
    meta = tasks._save_task(NAME, {"text": texts, "label": labels}, [p.name for p in PROJECTS], {
        "from": [f"pypi-{p.name}" for p in PROJECTS],
        "rule": f"{tasks.SNIPPET_LINES}-line windows of raw source (comments and docstrings kept; license header, "
                f"the projects' names and import paths -> {PLACEHOLDER!r}) -> the project; every project first "
                f"uploaded to PyPI after {CUTOFF}; rows mostly in a corpus of ours dropped; classes cut to equal "
                "size in the fixed random order", "excluded_projects": EXCLUDED, **info})
    say(f"[data] task {NAME:17s} train {meta['n_train']:5d}  test {meta['n_test']:4d}  majority "
        f"{meta['majority_test_acc']:.2f}  ({time.time() - t0:.1f} s)", progress)
    return meta, records


def built(manifest: dict | None = None) -> bool:
    """The task is prepared and current (its meta.json carries today's DATA_VERSION) and, given the full
    manifest, recorded there from today's pinned wheels (a new pin rebuilds it)."""
    if artifact_meta(task_dir(NAME)) is None:
        return False
    if manifest is None:
        return True
    recs = manifest.get("sources", {})
    return NAME in manifest.get("tasks", {}) and all(
        recs.get(f"pypi-{p.name}", {}).get("sha256") == p.sha256 for p in PROJECTS)
