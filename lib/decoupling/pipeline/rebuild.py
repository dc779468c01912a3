"""`decoupling rebuild`: execute the chapters with papermill, then build the book with jupyter-book.

    _toc.yml -> book/<chapter>.md (MyST notebook) --jupytext--> .ipynb --papermill(profile, seed)-->
    <build>/executed/<profile>/<chapter>.ipynb -> staged source tree <build>/src -> jupyter-book -> <build>/html

- A chapter is re-executed only when its fingerprint changed: its source, the library, the data manifest,
  the profile or the seed. Experiments inside it are cached by the results store in any case.
- Each chapter runs in its own process group with a whole-chapter timeout (nbclient has only a per-cell
  one); a timeout or a raising cell fails the rebuild naming the chapter (and the cell), and that
  chapter's previous good executed notebook is kept.
- After execution the chapter's claims are read: a failing check, or a finding whose verdict differs from
  book/expected_verdicts.yml, fails the rebuild.
- Progress bars and reports from a chapter's kernel reach the terminal or file the rebuild was launched
  from, never the page (see decoupling.progress); the rebuild's own lines are flushed as they are written,
  so a log file keeps them in order with the kernels' lines.
- `jobs` > 1 executes that many chapters side by side (each in its own process, its experiments on one
  CPU thread): on a 2-core laptop two chapters take about the time of the longer one. Chapters that need
  the same experiment or pretrained body do not train it twice: the results store lets one process compute
  a key while the others wait for its record.
- Ctrl-C or SIGTERM stops the running chapters together with their kernels and leaves the previous executed
  notebook, the fingerprints and the results store as they were; completed experiments stay in the store,
  so the next run resumes where this one stopped.
- A page shows what the reader needs: the parameters cell and the one papermill injects are hidden.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from decoupling import files
from decoupling.pipeline import claims as _claims
from decoupling.profiles import check_profile

GENERATED = ("status", "scorecard")  # pages written by the rebuild from the records
# Cells a reader does not need: the chapter's parameters cell and the one papermill injects after it
# (`profile = 'smoke'`, `seed = 0`). Tagged remove-cell, Jupyter Book leaves them off the page; they stay in
# the notebook the page's download button offers, which therefore still runs.
HIDDEN_TAGS = ("parameters", "injected-parameters")
STOP_GRACE_S = 10.0  # after SIGTERM, how long a chapter's process has to shut its kernel down


class RebuildError(Exception):
    pass


def _say(msg: str, err: bool = False) -> None:
    """One line of the rebuild's own, flushed at once: in a log file it stays in order with what the
    chapters' processes write there."""
    print(msg, file=sys.stderr if err else sys.stdout, flush=True)


def toc_entries(root: Path) -> list[str]:
    """Every `root:`/`file:` entry of _toc.yml, in order, once each (e.g. "book/generality")."""
    toc = root / "_toc.yml"
    if not toc.is_file():
        raise RebuildError(f"no _toc.yml in {root}: run inside the book's repository or set DECOUPLING_ROOT")
    found: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for k in ("root", "file"):
                if isinstance(node.get(k), str):
                    found.append(node[k])
            for v in node.values():
                if isinstance(v, (list, dict)):
                    walk(v)
        elif isinstance(node, list):
            for x in node:
                walk(x)
    walk(yaml.safe_load(toc.read_text()))
    return list(dict.fromkeys(found))


@dataclass
class Book:
    root: Path
    build: Path
    files: list[str] = field(default_factory=list)  # toc entries, e.g. "book/generality"

    @classmethod
    def load(cls, root: Path, build: Path) -> "Book":
        return cls(root, build, toc_entries(root))

    def source(self, entry: str) -> Path:
        for ext in (".md", ".ipynb"):
            p = self.root / (entry + ext)
            if p.exists():
                return p
        raise RebuildError(f"_toc.yml names {entry!r} but no {entry}.md exists")

    @property
    def chapters(self) -> dict[str, str]:
        """{chapter name: toc entry} for the entries that are notebooks (MyST with a kernelspec)."""
        out = {}
        for e in self.files:
            p = self.source(e)
            if p.suffix == ".md" and "kernelspec:" in p.read_text()[:2000]:
                out[Path(e).name] = e
        return out

    def check_chapters(self, names) -> None:
        """Raise RebuildError naming the valid chapters when any of `names` is not one."""
        valid = self.chapters
        unknown = [c for c in names if c not in valid]
        if unknown:
            raise RebuildError(f"unknown chapter(s) {', '.join(map(repr, unknown))}; "
                               f"valid chapters: {', '.join(valid)}")


def fingerprint(src: Path, profile: str, seed: int) -> str:
    from decoupling.pipeline import provenance
    h = hashlib.sha256()
    h.update(src.read_bytes())
    h.update(provenance.library_hash().encode())  # the page depends on every module, presentation too
    h.update(provenance.data_hash().encode())
    h.update(f"{profile}:{seed}".encode())
    return h.hexdigest()


def _execute(book: Book, name: str, entry: str, profile: str, seed: int, timeout: float) -> tuple[bool, str]:
    """Run one chapter in a child process group; returns (ok, message). The child's stderr is ours, and
    its kernel inherits it: papermill's bar and the kernel's bars and reports reach our terminal or log."""
    from decoupling import progress
    out_dir = book.build / "executed" / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{name}.running.ipynb"
    cmd = [sys.executable, "-m", "decoupling.pipeline.rebuild", "_exec", str(book.source(entry)), str(tmp),
           profile, str(seed), name]
    env = {**os.environ, "DECOUPLING_ROOT": str(book.root), "DECOUPLING_BUILD": str(book.build),
           progress.BOOK_BUILD: "1"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=None, text=True)
    with _LOCK:
        _RUNNING[name] = (proc, tmp)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc, tmp)
        return False, f"chapter {name!r} ran out of time ({timeout:.0f} s for the whole chapter)"
    except BaseException:  # Ctrl-C, or SIGTERM (the command line turns it into KeyboardInterrupt)
        _stop(proc, tmp)
        raise
    finally:
        with _LOCK:
            _RUNNING.pop(name, None)
    if proc.returncode != 0:
        _discard(tmp)
        msg = (out or "").strip().splitlines()
        return False, msg[-1] if msg else f"chapter {name!r} failed (exit {proc.returncode})"
    os.replace(tmp, out_dir / f"{name}.ipynb")
    return True, ""


# The chapters running now ({name: (process, unfinished notebook)}), so that an interrupt reaching the main
# thread can stop those that worker threads started (`_execute_side_by_side`).
_RUNNING: dict[str, tuple[subprocess.Popen, Path]] = {}
_LOCK = threading.Lock()


def _execute_side_by_side(book: "Book", todo: list[str], valid: dict, profile: str, seed: int, timeout: float,
                          jobs: int, done) -> None:
    """Execute `todo` with `jobs` chapters at a time, in book order; `done(name, ok, msg, seconds)` is called
    in this thread as each one ends. An interrupt stops every running chapter with its kernel and re-raises."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    def one(name):
        t0 = time.perf_counter()
        ok, msg = _execute(book, name, valid[name], profile, seed, timeout)
        return name, ok, msg, time.perf_counter() - t0

    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="chapter")
    try:
        pending = set()
        for name in todo:
            pending.add(pool.submit(one, name))
        _say(f"[rebuild] executing {', '.join(todo)}: {jobs} at a time")
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for f in finished:
                done(*f.result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        with _LOCK:
            running = list(_RUNNING.values())
        for proc, tmp in running:
            _stop(proc, tmp)
        raise
    pool.shutdown(wait=True)


def _stop(proc: subprocess.Popen, tmp: Path) -> None:
    """Stop a chapter's process and its kernel, and drop its unfinished notebook. SIGTERM first: nbclient
    then shuts the kernel down (the kernel runs in a session of its own, which a signal to the chapter's
    process group does not reach). SIGKILL whatever is left after STOP_GRACE_S; a kernel that outlives its
    parent exits by itself within a second (ipykernel polls for its parent)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if proc.stdout:
        proc.stdout.close()
    _discard(tmp)


def _discard(tmp: Path) -> None:
    """The unfinished output notebook and, if the child could not remove it, its staged input."""
    tmp.unlink(missing_ok=True)
    tmp.with_suffix(".input.ipynb").unlink(missing_ok=True)


def _exec_child(src: str, dst: str, profile: str, seed: str, name: str) -> int:
    """Child process: jupytext -> papermill. Prints one line naming chapter and cell on failure."""
    import jupytext
    import nbformat
    import papermill as pm
    nb = jupytext.read(src)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.setdefault("jupytext", {})
    staged = Path(dst).with_suffix(".input.ipynb")
    nbformat.write(nb, staged)
    sockets = tempfile.mkdtemp(prefix="decoupling-kernel-")
    try:
        pm.execute_notebook(str(staged), dst, parameters={"profile": profile, "seed": int(seed)},
                            kernel_name="python3", cwd=str(Path(src).parent), progress_bar=_progress(name),
                            report_mode=False, request_save_on_cell_execute=False,
                            config=_kernel_sockets(sockets),
                            # the kernel's own log lines (the interrupt jupyter_client sends before every
                            # shutdown) are not the reader's business either; a kernel that dies still
                            # fails the chapter, in one line
                            extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
    except pm.PapermillExecutionError as e:
        print(f"chapter {name!r} failed in cell {e.cell_index} (execution count {e.exec_count}): "
              f"{e.ename}: {str(e.evalue)[:600]}")
        return 1
    except Exception as e:  # the kernel died or was shut down (SIGTERM): one line, not papermill's traceback
        print(f"chapter {name!r} stopped: {type(e).__name__}: {str(e)[:600]}")
        return 1
    finally:
        staged.unlink(missing_ok=True)
        shutil.rmtree(sockets, ignore_errors=True)
    return 0


def _kernel_sockets(directory: str):
    """Kernel config that talks over Unix sockets in `directory` instead of TCP ports. jupyter_client picks
    TCP ports by binding port 0 and letting go; two chapters started side by side can be handed the same
    port before either kernel binds it ("Address already in use", then a 60 s start-up timeout). Socket
    files in a directory of the chapter's own cannot collide."""
    from traitlets.config import Config
    return Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(directory, "k")}})


def _progress(name):
    from decoupling import progress
    if not progress.enabled():
        return False
    # whole lines, not carriage-return redraws, where stderr is a log file or a pipe (progress.tqdm_kwargs)
    return progress.tqdm_kwargs({"desc": f"{name:>14}", "file": sys.stderr, "leave": True})


def _stage(book: Book, profile: str, recs: dict | None = None) -> Path:
    """A copy of the book's source tree where each chapter is its executed notebook (`recs`: the chapters'
    records, for their figures)."""
    src = book.build / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for f in ("_config.yml", "_toc.yml", "CITATION.cff", "environment.yml"):
        if (book.root / f).exists():
            shutil.copy2(book.root / f, src / f)
    shutil.copytree(book.root / "book", src / "book",
                    ignore=shutil.ignore_patterns("*.ipynb", "_build", ".ipynb_checkpoints"))
    for name, entry in book.chapters.items():
        ex = book.build / "executed" / profile / f"{name}.ipynb"
        md = src / (entry + ".md")
        md.unlink(missing_ok=True)
        if ex.exists():
            _page_notebook(ex, src / (entry + ".ipynb"))
        else:  # never executed successfully: show the source with a note rather than break the build
            md.write_text(f"# {name}\n\nThis chapter has not been executed successfully at profile "
                          f"`{profile}` yet. Run `decoupling rebuild --chapters {name}`.\n")
    # Files the site serves besides its pages: MathJax (so formulas render offline) and each staged
    # figure's SVG + provenance sidecar (the provenance card links to them). See publish.stage_assets.
    from decoupling.pipeline import publish
    publish.stage_assets(src, book.build / "figures", [f["id"] for r in (recs or {}).values()
                                                       if r.get("profile") == profile for f in r.get("figures", [])])
    return src


def _page_notebook(executed: Path, dst: Path) -> None:
    """The executed notebook as its page shows it: cells tagged with one of HIDDEN_TAGS get remove-cell."""
    nb = json.loads(executed.read_text())
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if set(tags) & set(HIDDEN_TAGS) and "remove-cell" not in tags:
            cell["metadata"]["tags"] = [*tags, "remove-cell"]
    dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def _tree_hash(d: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(d.rglob("*")):
        rel = p.relative_to(d)  # not p.parts: the staged tree itself lives under <build>/src
        if p.is_file() and "_build" not in rel.parts:
            h.update(str(rel).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _jupyter_book(book: Book, src: Path, force: bool) -> None:
    html = book.build / "html"
    stamp = book.build / "html.fingerprint"
    fp = _tree_hash(src)
    if not force and html.joinpath("index.html").exists() and stamp.exists() and stamp.read_text() == fp:
        _say("[rebuild] html unchanged; skipping jupyter-book")
        return
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(src), "--builder", "html"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-4000:] + r.stderr[-4000:])
        raise RebuildError("jupyter-book build failed (output above)")
    warnings = [l for l in (r.stdout + r.stderr).splitlines() if "WARNING" in l]
    if warnings:
        _say(f"[rebuild] jupyter-book: {len(warnings)} warnings, e.g. {warnings[0][:200]}")
    tmp = book.build / ".html.new"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src / "_build" / "html", tmp)
    shutil.rmtree(html, ignore_errors=True)
    os.replace(tmp, html)
    stamp.write_text(fp)


def rebuild(profile: str = "smoke", chapters: list[str] | None = None, force: bool = False, seed: int = 0,
            root: Path | None = None, build: Path | None = None, timeout: float | None = None,
            html: bool = True, jobs: int = 1) -> int:
    from decoupling import paths
    from decoupling.pipeline import status
    check_profile(profile)
    root = Path(root or paths.ROOT)
    build = Path(build or paths.BUILD_DIR)
    book = Book.load(root, build)
    valid = book.chapters
    chosen = list(valid) if not chapters else chapters
    book.check_chapters(chosen)
    timeout = timeout or float(os.environ.get("DECOUPLING_CHAPTER_TIMEOUT", 1800 if profile == "smoke" else 3600))
    errors: list[str] = []
    fps_file = build / "executed" / profile / "fingerprints.json"
    fps = _read_fingerprints(fps_file)
    todo: dict[str, str] = {}  # chapter -> its fingerprint, in book order
    for name in chosen:
        fp = fingerprint(book.source(valid[name]), profile, seed)
        if not force and fps.get(name) == fp and (build / "executed" / profile / f"{name}.ipynb").exists():
            _say(f"[rebuild] {name}: unchanged, not re-executed")
        else:
            todo[name] = fp

    def done(name: str, ok: bool, msg: str, seconds: float) -> None:
        if ok:
            fps[name] = todo[name]
            files.write_json(fps_file, fps)
            _say(f"[rebuild] {name}: executed in {seconds:.0f} s")
        else:
            fps.pop(name, None)
            files.write_json(fps_file, fps)
            errors.append(msg)
            _say(f"[rebuild] FAILED {msg}", err=True)

    if jobs > 1 and len(todo) > 1:
        _execute_side_by_side(book, list(todo), valid, profile, seed, timeout, jobs, done)
    else:
        for name in todo:
            t0 = time.perf_counter()
            ok, msg = _execute(book, name, valid[name], profile, seed, timeout)
            done(name, ok, msg, time.perf_counter() - t0)
    # Claims of every chapter executed at this profile (not only the chosen ones).
    recs = status.load_records(build, list(valid))
    expected = _claims.load_expected(root)
    all_claims = [c for r in recs.values() if r.get("profile") == profile for c in r.get("claims", [])]
    errors += _claims.problems([c for c in all_claims if c["chapter"] in chosen], expected, profile)
    if html:
        src = _stage(book, profile, recs)
        status.write_pages(src, recs, profile, expected, errors)
        _jupyter_book(book, src, force)
        _say(f"[rebuild] book: {build / 'html' / 'index.html'}")
    if errors:
        _say("[rebuild] failed:\n  " + "\n  ".join(errors), err=True)
        return 1
    return 0


def _read_fingerprints(path: Path) -> dict:
    """{chapter: fingerprint} of the chapters executed at a profile; unreadable means none (re-execute)."""
    try:
        fps = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return fps if isinstance(fps, dict) else {}


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "_exec":
    raise SystemExit(_exec_child(*sys.argv[2:7]))
