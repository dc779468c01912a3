"""One sitting on a GPU machine without the notebook stack: the chapters' `full` experiments, banked as they finish.

A GPU cluster node has torch and transformers but not datasets, papermill, jupytext or IPython, so the
chapters cannot go through `decoupling rebuild` there. This module does the same work without notebooks,
in the order a reader would read this file:

1. What the machine lacks travels with the repository as one archive (`make_carry`, unpacked there by
   `unpack_carry`): the prepared data, the part of the full corpora the `full` bodies read, MiniLM in fp16
   and the pure-Python packages the chapters import.
2. Chapters run cheapest-per-finding first (`order_chapters`): the rule is stated there.
3. Each chapter's MyST `{code-cell}` blocks (`code_cells`) are executed in a plain Python process
   (`execute_chapter`: IPython.display stubbed, matplotlib Agg) with `profile = "full"` set after the
   parameters cell, as papermill sets it, so the results store receives exactly the records a `full`
   rebuild looks up. A failing cell is reported and the next one still runs; each chapter has its own
   process group and time box, and one chapter's failure never stops the next.
4. Every finished record is banked (`Bank`): after every chapter, and every `BANK_EVERY_S` seconds inside
   a long one, the output folder gets a fresh `full_results.tar.gz` holding every record finished so far
   (written atomically: a job killed at its time limit leaves the last complete archive). Records already
   committed under results/ are neither computed again nor packed: they are home already.
5. The next job starts from what is missing: the archive is ingested and committed (its records are then
   found under results/), or it is left in the output folder of the next job, which restores its records
   into the store before the first chapter (`restore`). Found records are never recomputed.
6. Back home, `ingest` verifies each returned record's checksum, copies it into results/ and sets the
   measured verdicts beside book/expected_verdicts.yml.

Importable with the standard library only (torch, numpy and yaml are imported where they are used), so
the GPU machine can run it before anything else is known to work. The chapter processes are started as
`python -m decoupling.pipeline.sitting chapter BOOK/CHAPTER.md PROFILE SEED`.
"""
from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from decoupling import files

ARCHIVE = "full_results.tar.gz"   # what a job leaves in its output folder
BANK_EVERY_S = 120.0              # the longest a finished record waits inside a running chapter to be banked
RESULTS_LIMIT = 15 * 2**20        # the returned archive drops figure images beyond this
CARRY_LIMIT = 60 * 2**20          # the archive that travels to the GPU machine stays under this
# Pure-Python distributions the chapters import and the GPU machine lacks: the computers chapter checks its
# timeline against book/references.bib with pybtex, which reads its own version and plugins from its metadata.
CARRIED_DISTS = ("pybtex", "latexcodec")
# A record's place in an archive (and, without the leading results/, in a store).
RECORD = re.compile(r"results/[\w.\-]+/[0-9a-f]{16}/[0-9a-f]{16}\.json")

_log = None


def say(msg: str = "") -> None:
    """Print a line and append it to the log file opened by `log_to`."""
    print(msg, flush=True)
    if _log is not None:
        _log.write(msg + "\n")
        _log.flush()


def log_to(path: Path) -> None:
    global _log
    _log = open(path, "a")


# =========================================================================== 1. the archive that travels
def make_carry(dest: Path, full_corpora: bool = True) -> int:
    """Write the archive the GPU machine needs, here where the data, MiniLM and CARRIED_DISTS are: the
    prepared data with the portable manifest (the optional Debian corpora stay behind; no experiment reads
    them, and the manifest's portable hash keeps the store keys), what the `full` bodies read of the full
    corpora (`_carry_full_corpora`), all-MiniLM-L6-v2 with fp16 weights (91 MB as fp32) and CARRIED_DISTS.
    Exit code 1 when something is missing or the archive passes CARRY_LIMIT."""
    import importlib.metadata
    import shutil
    import tempfile

    from safetensors.torch import load_file, save_file

    from decoupling import data
    from decoupling.core import models
    src, manifest = data.data_dir(), data.read_manifest()
    if manifest is None:
        say("!! no prepared data: run `decoupling data` first")
        return 1
    portable = data.portable_manifest(manifest)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "data"
        shutil.copytree(src / "tokenizer", d / "tokenizer")
        shutil.copytree(src / "tasks", d / "tasks")
        for kind in ("corpora", "tokens"):
            for name in portable[kind]:
                shutil.copytree(src / kind / name, d / kind / name)
        files.write_json(d / "manifest.json", portable)
        need = _carry_full_corpora(d / "full") if full_corpora else 0
        if need is None:
            return 1
        mdir, msrc = Path(tmp) / "minilm", models.minilm_path()
        shutil.copytree(msrc, mdir, ignore=shutil.ignore_patterns("*.safetensors", "README.md", ".git*"))
        weights = load_file(msrc / "model.safetensors")
        save_file({k: (v.half() if v.is_floating_point() else v) for k, v in weights.items()},
                  mdir / "model.safetensors", metadata={"format": "pt"})
        site = Path(tmp) / "site"
        for dist in map(importlib.metadata.distribution, CARRIED_DISTS):
            for f in dist.files or []:  # the package and its .dist-info, not its console scripts
                if ".." not in f.parts and f.suffix != ".pyc":
                    (site / f).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(dist.locate_file(f), site / f)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:xz", preset=6) as tar:
            tar.add(d, arcname="data")
            tar.add(mdir, arcname="minilm")
            tar.add(site, arcname="site")
        files.atomic_write(dest, buf.getvalue())
    size = dest.stat().st_size
    say(f"== {dest}: {size / 2**20:.1f} MiB (limit {CARRY_LIMIT / 2**20:.0f} MiB); data {data.manifest_hash(True)[:12]} "
        f"(portable manifest), " + (f"full corpora {data.manifest_hash(True, profile='full')[:12]} (first {need:,} "
                                    f"tokens of each stream)" if need else "NO full corpora") +
        f", MiniLM fp16, {', '.join(CARRIED_DISTS)}")
    return 0 if size <= CARRY_LIMIT else 1


def _carry_full_corpora(dest: Path) -> int | None:
    """Copy what the `full` bodies read of the full corpora into dest: the full manifest and every
    artifact's meta.json unchanged (so `manifest_hash(profile="full")`, hence every `full` key, is the one
    computed where the data was prepared), and of each token stream only its first U + eval tokens, the
    prefix `pretrain.pretrain` reads (U = pretrain.unique_tokens, the same for every body). The corpus texts
    stay behind: nothing that trains reads them. A body asking for more tokens than a carried stream holds
    fails loudly in `pretrain` (it checks the length it got). Returns that token count, or None."""
    import shutil

    import numpy as np

    from decoupling.data import full
    from decoupling.experiments import pretrain
    if full.read_full_manifest() is None:
        say("!! no full corpora: run `decoupling data --profile full` first (the full bodies read them)")
        return None
    cfg = pretrain.config("full", "code")
    need = pretrain.unique_tokens(cfg) + cfg.eval_tokens
    src = full.full_dir()
    dest.mkdir(parents=True)
    shutil.copy2(src / "manifest.json", dest / "manifest.json")
    for dom in full.FULL_DOMAINS:
        for sub in ("corpora", "tokens"):
            (dest / sub / dom).mkdir(parents=True)
            shutil.copy2(src / sub / dom / "meta.json", dest / sub / dom / "meta.json")
        ids = np.load(src / "tokens" / dom / "ids.npy", mmap_mode="r")
        np.save(dest / "tokens" / dom / "ids.npy", np.ascontiguousarray(ids[:need]))
    return need


def unpack_carry(archive: Path, where: Path) -> dict:
    """On the GPU machine: unpack the carried archive into `where` (once per version of the archive) and
    point this process and its children at it. Returns the variables set ({} when there is no archive)."""
    if not archive.exists():
        return {}
    stamp = where / ".from"
    sig = f"{archive.stat().st_size}:{archive.stat().st_mtime_ns}"
    if not (stamp.exists() and stamp.read_text() == sig):
        import shutil
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir(parents=True)
        with tarfile.open(archive) as tar:
            tar.extractall(where, filter="data")
        files.atomic_write(stamp, sig)
    os.environ["DECOUPLING_DATA"] = str(where / "data")
    os.environ["DECOUPLING_MINILM"] = str(where / "minilm")
    path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if (where / "site").is_dir() and str(where / "site") not in path:
        os.environ["PYTHONPATH"] = os.pathsep.join([*path, str(where / "site")])
    return {k: os.environ[k] for k in ("DECOUPLING_DATA", "DECOUPLING_MINILM", "PYTHONPATH") if k in os.environ}


# =========================================================================== 2. which chapter first
# Optimizer steps plus evaluation batches of each chapter at `full`, as benchmarks/full_cost.py counts them
# (the README's cost table). The book's models are launch-bound on a GPU, so GPU minutes are proportional.
FULL_COST = {"computers": 43_064, "memory": 14_044, "tyranny": 23_400, "generality": 21_491}
# The findings `full` decides in each chapter (every `finding(...)` whose applies_to holds "full", a loop's
# findings counted once per pass), read off the chapter sources; used until a chapter has recorded its claims.
FULL_FINDINGS = {"computers": 4, "memory": 3, "tyranny": 4, "generality": 12}
MS_PER_UNIT = 5.0  # the faster of full_cost.py's two rates: only the ratios between chapters matter


def cost_from_rows(rows: list[dict]) -> dict[str, int]:
    """{chapter: steps + evaluation batches} from the rows `benchmarks/full_cost.py --json` writes."""
    out: dict[str, int] = {}
    for r in rows:
        if "chapter" in r:
            out[r["chapter"]] = out.get(r["chapter"], 0) + int(r.get("steps", 0)) + int(r.get("eval_batches", 0))
    return out


def decided_findings(root: Path, build: Path | None, names) -> dict[str, int]:
    """{chapter: number of findings that `full` decides}. A chapter's findings are the union of those it
    recorded in <build>/records/<chapter>.json (any profile: a record lists each finding with the profiles
    that decide it) and the `full` verdicts committed in book/expected_verdicts.yml; a chapter with neither
    falls back to FULL_FINDINGS (0 for a chapter that table does not know)."""
    import yaml
    exp = root / "book" / "expected_verdicts.yml"
    committed = (yaml.safe_load(exp.read_text()) or {}).get("full") or {} if exp.exists() else {}
    out = {}
    for name in names:
        found = {k.split("/", 1)[1] for k in committed if k.startswith(f"{name}/")}
        rec = build / "records" / f"{name}.json" if build else None
        if rec is not None and rec.exists():
            claims = json.loads(rec.read_text()).get("claims", [])
            found |= {c["name"] for c in claims if c.get("kind") == "finding" and "full" in c.get("applies_to", [])}
        out[name] = len(found) if found else FULL_FINDINGS.get(name, 0)
    return out


def findings_per_minute(findings: dict[str, int], cost: dict[str, int]) -> dict[str, float | None]:
    """Findings decided per GPU minute of each chapter, at MS_PER_UNIT per counted step or batch; None for
    a chapter whose cost was not counted."""
    return {name: (n / (cost[name] * MS_PER_UNIT / 60_000) if cost.get(name) else None)
            for name, n in findings.items()}


def order_chapters(book_order: list[str], findings: dict[str, int], cost: dict[str, int]) -> list[str]:
    """The rule: most findings decided per GPU minute first, so a job cut short by its time limit has
    decided as many findings as its minutes allowed. Ties keep the book's order; chapters without a counted
    cost come last, in the book's order. (A pretrained body two chapters share is counted where the book
    first asks for it; moving it to the other chapter does not change the book's order.)"""
    rate = findings_per_minute({n: findings.get(n, 0) for n in book_order}, cost)
    known = sorted((n for n in book_order if rate[n] is not None), key=lambda n: -rate[n])  # stable
    return known + [n for n in book_order if rate[n] is None]


# =========================================================================== 3. executing a chapter
FENCE = re.compile(r"^(?P<fence>`{3,})\{code-cell\}[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S)


def code_cells(md: str) -> list[tuple[list[str], str]]:
    """(tags, source) of each MyST `{code-cell}`: option lines (`:tags: [...]`) or a `---` YAML block at
    the top are read for tags and dropped; IPython magics (%…, !…) are dropped, so a `%%gpu_part` cell
    runs as plain code."""
    cells = []
    for m in FENCE.finditer(md):
        lines = m["body"].splitlines()
        opts: list[str] = []
        if lines and lines[0].strip() == "---":
            end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), 0)
            opts, lines = lines[1:end], lines[end + 1:]
        while lines and lines[0].startswith(":"):
            opts.append(lines.pop(0)[1:])
        tags = []
        for o in opts:
            if (t := re.match(r"\s*tags\s*:\s*\[(.*)\]", o)):
                tags += [x.strip().strip("'\"") for x in t[1].split(",") if x.strip()]
        src = "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))
        cells.append((tags, src))
    return cells


def chapters(root: Path, only: list[str] | None = None) -> list[tuple[str, Path]]:
    """The book's chapters in _toc.yml order: entries whose .md is a notebook (a kernelspec in its header).
    A missing file is reported and skipped (rebuild would refuse the whole book)."""
    from decoupling.pipeline.rebuild import toc_entries
    out = []
    for entry in toc_entries(root):
        p = root / f"{entry}.md"
        if not p.exists():
            say(f"  (toc entry {entry}: no {p.name}; skipped)")
            continue
        if "kernelspec:" in p.read_text()[:2000] and (not only or p.stem in only):
            out.append((p.stem, p))
    return out


def _stub_ipython() -> None:
    """IPython.display for a plain process (the GPU machine has no IPython; stubbed everywhere, so the log
    reads the same): display() prints Markdown (the chapters' claims) and drops the rest (Chapter.figure
    saves figures to files anyway)."""
    import types

    class Shown:
        def __init__(self, data=None, *a, **k):
            self.data = data

    class Markdown(Shown):
        pass

    def display(*objs, **kw):
        for o in objs:
            if isinstance(o, Markdown) and isinstance(o.data, str):
                print("    " + o.data[:300].replace("\n", " "), flush=True)

    disp = types.ModuleType("IPython.display")
    disp.display, disp.Markdown = display, Markdown

    def other(name):  # HTML, Image, Latex, …; not module dunders (inspect asks for __file__)
        if name.startswith("__"):
            raise AttributeError(name)
        return Shown
    disp.__getattr__ = other
    ipy = types.ModuleType("IPython")
    ipy.display, ipy.get_ipython = disp, lambda: None
    ipy.version_info = (9, 0, 0, "stub")  # matplotlib reads it when IPython is in sys.modules
    sys.modules.update({"IPython": ipy, "IPython.display": disp})


def _reuse_committed_records() -> None:
    """Make the store answer a `full` lookup with a record committed under results/ for the same
    experiment and config (logical key) whose library source and data are those of this checkout, whatever
    device or torch version computed it: such records (those computed on a CPU included) are not computed
    again on the GPU. The exact-key lookup comes first and is unchanged."""
    from decoupling import paths
    from decoupling.pipeline import store
    exact = store.lookup

    def lookup(fn, config, profile, root=None):
        rec = exact(fn, config, profile, root)
        if rec is not None or profile != "full":
            return rec
        logical, _, parts = store.keys(fn, config, profile)
        for p in sorted((paths.RESULTS_DIR / store.experiment_name(fn) / logical[:16]).glob("*.json")):
            try:
                body = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            meta = body.get("meta", {})
            if store.is_intact(body) and (meta.get("source"), meta.get("data")) == (parts["source"], parts["data"]):
                return store.Record(body["value"], {**meta, "cache_hit": True, "stale": False, "path": str(p)})
        return None
    store.lookup = lookup


def execute_chapter(md: Path, profile: str, seed: int) -> int:
    """Execute one chapter's code cells in this process. Exit code: the number of failed cells (at most 100)."""
    _stub_ipython()
    _reuse_committed_records()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.chdir(md.parent)  # papermill runs a chapter with the book/ folder as its working directory
    sys.path.insert(0, str(md.parent))
    inject = f"profile = {profile!r}\nseed = {seed}\n"
    cells = code_cells(md.read_text())
    ns: dict = {"__name__": "__main__"}
    if not any("parameters" in tags for tags, _ in cells):
        exec(inject, ns)
    failed = 0
    for i, (tags, src) in enumerate(cells):
        t0 = time.perf_counter()
        try:
            exec(compile(src, f"{md.name}[cell {i}]", "exec"), ns)
            if "parameters" in tags:
                exec(inject, ns)  # what papermill's injected-parameters cell does
            status = "ok"
        except Exception as e:  # noqa: BLE001 - report and go on: later cells may still train and save
            failed += 1
            status = f"FAILED {type(e).__name__}: {str(e)[:300]}"
            print("".join(traceback.format_exc().splitlines(True)[-6:]), flush=True)
        plt.close("all")
        print(f"[{md.stem}] cell {i} ({len(src.splitlines())} lines): {status} in {time.perf_counter() - t0:.1f} s",
              flush=True)
    return min(failed, 100)


def stream(cmd: list[str], env: dict, timeout: float, prefix: str = "  ", cwd=None, tick=None,
           every: float = BANK_EVERY_S) -> tuple[int | None, str, float]:
    """Run cmd in its own process group, echo its output into the log, call `tick()` every `every` seconds
    while it runs, kill the group at the timeout (or when this process is stopped). Returns (exit code or
    None on timeout, output, wall seconds)."""
    t0 = time.perf_counter()
    end = t0 + max(1.0, timeout)
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, errors="replace")
    lines: list[str] = []

    def pump():
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            say(prefix + line)
    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    rc = None
    try:
        while True:
            try:
                rc = proc.wait(timeout=max(0.05, min(every, end - time.perf_counter())))
                break
            except subprocess.TimeoutExpired:
                if time.perf_counter() >= end:
                    break
                if tick is not None:
                    tick()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=10)
    return rc, "\n".join(lines), time.perf_counter() - t0


# =========================================================================== 4-5. banking what is finished, resuming
def store_records(store: Path) -> set[Path]:
    """The result records in a store (not its artifacts, caches or locks)."""
    if not store.exists():
        return set()
    return {p for p in store.rglob("*.json") if RECORD.fullmatch(f"results/{p.relative_to(store).as_posix()}")}


def pack(store: Path, build: Path, dest: Path, home: Path | None = None, limit: int = RESULTS_LIMIT) -> int:
    """Write `dest` atomically: the store's records as results/… (less those already under <home>/results/),
    plus the chapters' claims (build/records) and figures; the figures' images are dropped when the archive
    would pass `limit`. Returns the number of records packed."""
    recs = sorted(p for p in store_records(store)
                  if home is None or not (home / "results" / p.relative_to(store)).exists())
    for images in (True, False):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for p in recs:
                tar.add(p, arcname=f"results/{p.relative_to(store).as_posix()}")
            for sub in ("records", "figures"):
                for p in sorted((build / sub).glob("*")) if (build / sub).exists() else []:
                    if p.is_file() and (images or p.suffix == ".json"):
                        tar.add(p, arcname=f"build/{sub}/{p.name}")
        if buf.tell() <= limit:
            break
    files.atomic_write(dest, buf.getvalue())
    return len(recs)


@dataclass
class Bank:
    """Keeps `dest` holding every record finished so far; `update()` repacks only when the store's records
    or the chapters' claims changed since the last archive."""
    store: Path
    build: Path
    dest: Path
    home: Path | None = None
    _seen: tuple = field(default=(), repr=False)

    def _state(self) -> tuple:
        paths = sorted(store_records(self.store))
        paths += sorted((self.build / "records").glob("*.json")) if (self.build / "records").exists() else []
        return tuple((str(p), p.stat().st_mtime_ns) for p in paths)

    def update(self, force: bool = False) -> None:
        state = self._state()
        if state and (force or state != self._seen):
            n = pack(self.store, self.build, self.dest, self.home)
            self._seen = state
            say(f"== banked {n} record(s) in {self.dest}")


def restore(archive: Path, store: Path) -> int:
    """Copy into `store` every record of a previous job's archive whose checksum verifies and that the
    store lacks, so the next job starts from what is missing. Returns the number restored."""
    from decoupling.pipeline.store import is_intact
    n = 0
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            if m.isfile() and RECORD.fullmatch(m.name):
                dest = store / m.name.removeprefix("results/")
                raw = tar.extractfile(m).read()
                if not dest.exists() and is_intact(json.loads(raw)):
                    files.atomic_write(dest, raw)
                    n += 1
    return n


def _throughput(obj, path="") -> list[tuple[str, float]]:
    """(key path, value) of every tokens/s, examples/s or MFU number inside a result."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (int, float)) and (k in ("mfu", "tokens_per_s", "examples_per_s") or
                                                k.endswith("_per_s")):
                found.append((f"{path}.{k}".lstrip("."), float(v)))
            elif isinstance(v, (dict, list)):
                found += _throughput(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:50]):
            found += _throughput(v, f"{path}[{i}]")
    return found


@dataclass
class Sitting:
    """The chapters of one job: where the book, store and output folder are, and how to run them."""
    root: Path
    store: Path
    out: Path
    env: dict
    profile: str = "full"
    seed: int = 0
    only: list[str] | None = None
    chapter_timeout: float | None = None
    bank_every: float = BANK_EVERY_S
    cost: dict = field(default_factory=lambda: dict(FULL_COST))
    bank: Bank = field(init=False)

    def __post_init__(self):
        self.bank = Bank(self.store, self.build, self.out / ARCHIVE, self.root)

    @property
    def build(self) -> Path:
        return self.store.parent / "build"

    def ordered(self) -> list[tuple[str, Path, int, float | None]]:
        """(name, source, findings `full` decides, findings per GPU minute) in the order they run."""
        found = chapters(self.root, self.only)
        src = dict(found)
        decided = decided_findings(self.root, self.build, list(src))
        rate = findings_per_minute(decided, self.cost)
        return [(n, src[n], decided[n], rate[n]) for n in order_chapters(list(src), decided, self.cost)]

    def resume(self) -> int:
        """Restore the records of the archive a previous job left in the output folder."""
        prev = self.out / ARCHIVE
        n = restore(prev, self.store) if prev.exists() else 0
        if n:
            say(f"== restored {n} finished record(s) from {prev}: they are not computed again")
        return n

    def run(self, deadline: float, label: str = "cold") -> dict:
        """Execute every chapter once, banking as records finish; a summary per chapter."""
        res = {}
        env = {**self.env, "DECOUPLING_STORE": str(self.store), "DECOUPLING_BUILD": str(self.build),
               "DECOUPLING_ROOT": str(self.root)}
        for name, md, decided, rate in self.ordered():
            left = deadline - time.perf_counter()
            budget = left if self.chapter_timeout is None else min(self.chapter_timeout, left)
            if budget < 20:
                res[name] = {"status": "skipped: out of budget"}
                say(f"== {label} {name}: skipped, out of budget")
                continue
            before = store_records(self.store)
            say(f"== {label} {name} (profile {self.profile}, time box {budget:.0f} s; {decided} finding(s) "
                f"decided at full" + (f", {rate:.1f} per GPU minute)" if rate else ")"))
            try:
                rc, _, wall = stream([sys.executable, "-m", "decoupling.pipeline.sitting", "chapter", str(md),
                                      self.profile, str(self.seed)], env, budget, tick=self.bank.update,
                                     every=self.bank_every)
            finally:
                self.bank.update()
            res[name] = self._summary(name, rc, wall, sorted(store_records(self.store) - before))
            say(f"== {label} {name}: {res[name]['status']} in {wall:.0f} s; {res[name]['new_records']} new "
                f"record(s); claims {res[name].get('claims', {})}")
        return res

    def _summary(self, name: str, rc: int | None, wall: float, new: list[Path]) -> dict:
        r = {"status": "ok" if rc == 0 else ("timeout" if rc is None else f"{rc} cell(s) failed"),
             "wall_s": round(wall, 1), "new_records": len(new), "throughput": []}
        for p in new:
            body = json.loads(p.read_text())
            meta = body.get("meta", {})
            r["throughput"] += [(meta.get("experiment"), k, v) for k, v in _throughput(body.get("value"))][:20]
            say(f"  record {meta.get('experiment')}: {meta.get('wall_time_s')} s on {meta.get('device')}")
        for exp, k, v in r["throughput"]:
            say(f"  {exp} {k} = {v:,.4g}")
        rec = self.build / "records" / f"{name}.json"
        if rec.exists():
            state = json.loads(rec.read_text())
            r["claims"] = {c["name"]: c["verdict"] for c in state.get("claims", [])}
            r["cache_hits"] = sum(bool(x.get("cache_hit")) for x in state.get("records", []))
            r["runs"] = len(state.get("records", []))
        return r


# =========================================================================== 6. bringing records home
def ingest(tar_path: Path, into: Path, profile: str, write_verdicts: bool) -> int:
    """Bring a returned archive home: every record whose checksum verifies goes to <into>/results/ (the
    store's layout, so a `full` build here finds it); the measured verdicts of `profile` are set beside the
    committed snapshot (written into it with `write_verdicts`); gpu_full.json, when it lies beside the
    archive, is summarised for the README. Exit code 1 when a record was corrupted or a check failed."""
    import yaml

    from decoupling.pipeline import claims, store
    counts = {"new": 0, "same": 0, "replaced": 0, "corrupted": 0, "skipped": 0}
    chapter_records = {}
    with tarfile.open(tar_path) as tar:
        for m in tar.getmembers():
            if not m.isfile():
                continue
            if RECORD.fullmatch(m.name):
                raw = tar.extractfile(m).read()
                body = json.loads(raw)
                if not store.is_intact(body):
                    counts["corrupted"] += 1
                    say(f"!! corrupted record {m.name}: checksum mismatch; not copied")
                    continue
                dest = into / m.name
                state = "new" if not dest.exists() else ("same" if dest.read_bytes() == raw else "replaced")
                counts[state] += 1
                if state != "same":
                    files.atomic_write(dest, raw)
                    meta = body["meta"]
                    say(f"  {state:8s} {m.name}  ({meta.get('device')}, {meta.get('wall_time_s')} s, "
                        f"commit {str(meta.get('commit'))[:10]}{' dirty' if meta.get('dirty') else ''})")
            elif re.fullmatch(r"build/records/[\w\-]+\.json", m.name):
                chapter_records[Path(m.name).stem] = json.loads(tar.extractfile(m).read())
            elif not m.name.startswith("build/figures/"):
                counts["skipped"] += 1
                say(f"  skipped  {m.name} (not a record)")
    say(f"== records: {counts}")
    for name, rec in sorted(chapter_records.items()):
        say(f"== {name}: {rec.get('profile')} on {rec.get('device')}, {rec.get('wall_time_s')} s")
    measured_claims = [c for rec in chapter_records.values() for c in rec.get("claims", [])]
    measured = claims.verdicts(measured_claims, profile)
    failed_checks = claims.problems(measured_claims, None, profile)  # verdicts are set beside the snapshot below
    expected_file = into / claims.EXPECTED_FILE
    expected = claims.load_expected(into)
    committed = expected.get(profile) or {}
    say(f"== verdicts at {profile}: measured vs committed ({claims.EXPECTED_FILE})")
    for key in sorted(set(measured) | set(committed)):
        mark = "" if measured.get(key) == committed.get(key) else "   <- differs"
        say(f"  {key:45s} {str(measured.get(key, '-')):14s} {str(committed.get(key, '-')):14s}{mark}")
    for problem in failed_checks:
        say(f"!! on the GPU: {problem} (a `{profile}` rebuild will fail on it)")
    if write_verdicts and measured:
        header = "".join(line for line in expected_file.read_text().splitlines(True) if line.startswith("#")) \
            if expected_file.exists() else ""
        expected[profile] = {**committed, **measured}
        files.atomic_write(expected_file, header + yaml.safe_dump(expected, sort_keys=False, allow_unicode=True, width=120))
        say(f"== wrote {len(measured)} {profile} verdict(s) into {expected_file}")
    summary = Path(tar_path).with_name("gpu_full.json")
    if summary.exists():
        g = json.loads(summary.read_text())
        say(f"== {summary.name}: {json.dumps(g.get('environment', {}).get('device'))}")
        for name, r in (g.get("chapters") or {}).items():
            say(f"  chapter {name}: {r.get('status')} in {r.get('wall_s')} s, {r.get('new_records')} new record(s)")
        for name, r in (g.get("benchmarks") or {}).items():
            nums = {k: v for k, v in r.items() if k not in ("status", "wall_s") and not isinstance(v, (dict, list))}
            say(f"  {name}: {r.get('status')}; {nums}")
        if g.get("book"):
            say(f"  book: {g['book']}")
    return 1 if counts["corrupted"] or failed_checks else 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["chapter"] or len(sys.argv) != 5:
        raise SystemExit("usage: python -m decoupling.pipeline.sitting chapter BOOK/CHAPTER.md PROFILE SEED")
    raise SystemExit(execute_chapter(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
