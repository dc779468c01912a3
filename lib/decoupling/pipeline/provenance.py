"""Who made a result and from what code: the library source an experiment depends on (from the import
graph), commit, dirty flag, versions. Shared by the store, the chapter fingerprints and the figures.

The results key must change exactly when code that can alter a number changes. So an experiment's
source hash covers every project module its module imports, transitively, limited to the computing
packages (`core`, `data`, `experiments`): editing `experiments/pretrain.py` changes the keys of every
experiment that pretrains a body, while editing a progress bar, the store or the figures changes none.
The graph is read from the source with `ast` (imports inside functions count), not kept by hand.

What is hashed is each module's code, not its text: `code_text` parses it and prints it back without
comments and docstrings, so fixing a typo in a comment never marks hours of computed records stale, while
any change to a statement, a name or a constant does.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import subprocess
from pathlib import Path

from decoupling.paths import LIB_DIR, ROOT

PACKAGE = "decoupling"
# Packages whose code computes results; everything else (pipeline/, cli, paths, profiles, progress)
# only schedules, stores or presents them.
COMPUTING = ("core", "data", "experiments")


def module_file(module: str, lib_dir: Path = LIB_DIR) -> Path | None:
    """decoupling.a.b -> lib_dir/a/b.py (or lib_dir/a/b/__init__.py); None when it is not a project module."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    rel = Path(*module.split(".")[1:]) if module != PACKAGE else Path()
    for cand in (lib_dir / rel.with_suffix(".py"), lib_dir / rel / "__init__.py"):
        if rel.parts and cand.is_file():
            return cand
    return None


def _imports(path: Path, module: str) -> set[str]:
    """Project modules named by the import statements of one file (anywhere in it)."""
    out: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in out if m == PACKAGE or m.startswith(PACKAGE + ".")}


def _computing(module: str) -> bool:
    parts = module.split(".")
    return len(parts) >= 2 and parts[1] in COMPUTING


def dependencies(module: str, lib_dir: Path = LIB_DIR) -> list[str]:
    """The computing modules `module` depends on, itself included, transitively, sorted.

    A pipeline or top-level module on the way is not followed: it cannot change a number."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen or not _computing(m) or (f := module_file(m, lib_dir)) is None:
            continue
        seen.add(m)
        # importing a.b.c runs a/__init__ and a/b/__init__ too
        parents = [".".join(m.split(".")[:i]) for i in range(2, len(m.split(".")))]
        todo.extend(parents)
        todo.extend(_imports(f, m))
    return sorted(seen)


def _without_docstring(body: list) -> list:
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return body[1:] or [ast.Pass()]  # a body that was only a docstring still needs a statement
    return body


def code_text(source: str, filename: str = "<module>") -> str:
    """The code of a module as `ast.unparse` prints it: comments, docstrings and layout gone (a module's,
    a class's and a function's leading string), everything that runs kept."""
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            node.body = _without_docstring(node.body)
    return ast.unparse(tree)


def source_hash(module: str, lib_dir: Path = LIB_DIR) -> str:
    """sha256 over (relative path, code text) of every module in `dependencies(module)`: a comment or
    docstring edit keeps it, a code edit moves it (`code_text`)."""
    return _source_hash(module, str(lib_dir))


@functools.lru_cache(maxsize=None)
def _source_hash(module: str, lib_dir: str) -> str:
    h = hashlib.sha256()
    for m in dependencies(module, Path(lib_dir)):
        f = module_file(m, Path(lib_dir))
        h.update(str(f.relative_to(lib_dir)).encode())
        h.update(code_text(f.read_text(), str(f)).encode())
    return h.hexdigest()


def library_hash(lib_dir: Path = LIB_DIR) -> str:
    """sha256 of every module of the library, presentation included: a chapter's executed page depends on
    all of it (figures, claims, captions), so the chapter fingerprint uses this, not the results key."""
    h = hashlib.sha256()
    for f in sorted(lib_dir.rglob("*.py")):
        h.update(str(f.relative_to(lib_dir)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def git_state() -> tuple[str, bool]:
    """(commit, dirty). 'unknown' outside a git checkout (e.g. an sdist)."""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or "unknown"
        dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "lib", "book"],
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


@functools.lru_cache(maxsize=None)
def versions() -> dict:
    import torch
    out = {"torch": torch.__version__}
    try:
        import transformers
        out["transformers"] = transformers.__version__
    except ImportError:
        out["transformers"] = None
    return out


def data_hash(profile: str = "smoke") -> str:
    """The prepared data's manifest hash, or 'none' when no data was prepared (synthetic chapters). At
    `full` it covers the full corpora and the full-only tasks too (a full record reads bodies pretrained on
    them, or code/agents), or says they are not prepared: a full key never starts a download."""
    try:
        from decoupling import data
        # portable: the PyPI/stdlib sources only, so a machine without apt (no Debian extras) computes
        # the same keys and finds the committed results
        if profile == "full":
            from decoupling.data import full
            if full.read_full_manifest() is None:
                return "full-data-not-prepared"
            return data.manifest_hash(portable=True, profile="full")
        return data.manifest_hash(portable=True)
    except Exception:  # no data prepared yet: experiments that need data will fail on their own
        return "none"
