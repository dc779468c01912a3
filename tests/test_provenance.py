"""The results key follows the code's own imports (pipeline/provenance.py).

An experiment's key must change when any computing module it imports (transitively) changes, and must not
change when a module that only schedules, stores or presents results changes."""
import shutil

import pytest

from decoupling import paths
from decoupling.pipeline import provenance

CHAPTERS = ["computers", "memory", "tyranny", "generality"]


@pytest.fixture()
def lib_copy(tmp_path):
    dst = tmp_path / "decoupling"
    shutil.copytree(paths.LIB_DIR, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def _keys(lib):
    provenance._source_hash.cache_clear()  # the files changed under the same paths
    return {c: provenance.source_hash(f"decoupling.experiments.{c}", lib) for c in CHAPTERS}


def _touch(path):
    """A code edit: a new statement (a comment would not count, see the tests at the end)."""
    path.write_text(path.read_text() + "\n_EDITED = 1\n")


def test_editing_pretrain_changes_every_key_that_pretrains(lib_copy):
    before = _keys(lib_copy)
    _touch(lib_copy / "experiments" / "pretrain.py")
    after = _keys(lib_copy)
    # generality pretrains its bodies and computers reuses them: both must recompute
    assert after["generality"] != before["generality"]
    assert after["computers"] != before["computers"]
    # memory and tyranny never touch a pretrained body
    assert after["memory"] == before["memory"]
    assert after["tyranny"] == before["tyranny"]


@pytest.mark.parametrize("rel", ["progress.py", "paths.py", "profiles.py", "cli.py", "pipeline/store.py",
                                 "pipeline/figures.py", "pipeline/book.py", "pipeline/provenance.py"])
def test_editing_a_pipeline_or_utility_module_changes_no_key(lib_copy, rel):
    before = _keys(lib_copy)
    _touch(lib_copy / rel)
    assert _keys(lib_copy) == before


def test_editing_a_core_module_changes_the_keys_that_use_it(lib_copy):
    before = _keys(lib_copy)
    _touch(lib_copy / "core" / "models.py")
    after = _keys(lib_copy)
    assert all(after[c] != before[c] for c in CHAPTERS)  # every chapter builds its models there


def test_imports_inside_functions_count(tmp_path):
    lib = tmp_path / "decoupling"
    (lib / "experiments").mkdir(parents=True)
    (lib / "core").mkdir()
    for d in (lib, lib / "experiments", lib / "core"):
        (d / "__init__.py").write_text("")
    (lib / "core" / "a.py").write_text("X = 1\n")
    (lib / "core" / "b.py").write_text("Y = 2\n")
    (lib / "experiments" / "e.py").write_text("def f():\n    from decoupling.core import a\n"
                                              "    from ..core.b import Y\n    return a.X + Y\n")
    deps = provenance.dependencies("decoupling.experiments.e", lib)
    assert deps == ["decoupling.core", "decoupling.core.a", "decoupling.core.b", "decoupling.experiments",
                    "decoupling.experiments.e"]


def test_each_chapter_depends_on_these_modules():
    """What each chapter's experiments depend on, written out: a change to this list is a change to which
    edits recompute which results, so it must be made on purpose."""
    deps = {c: [m.removeprefix("decoupling.") for m in
                provenance.dependencies(f"decoupling.experiments.{c}")] for c in CHAPTERS}
    for c, mods in deps.items():
        print(c, mods)
        assert not any(m.startswith(("pipeline", "progress", "paths", "profiles", "cli")) for m in mods), c
    assert deps == EXPECTED


EXPECTED = {'computers': ['core', 'core.baselines', 'core.batched', 'core.device', 'core.encoders', 'core.intervals', 'core.measures',
               'core.models', 'core.prequential', 'core.train', 'data', 'data.full', 'data.layout', 'data.overlap',
               'data.preparation', 'data.read', 'data.sources', 'data.tasks', 'data.unexposed', 'experiments',
               'experiments.computers', 'experiments.pretrain'],
 'generality': ['core', 'core.baselines', 'core.batched', 'core.device', 'core.encoders', 'core.measures',
                'core.models', 'core.prequential', 'core.train', 'data', 'data.full', 'data.layout', 'data.overlap',
                'data.preparation', 'data.read', 'data.sources', 'data.tasks', 'data.unexposed', 'experiments',
                'experiments.generality', 'experiments.pretrain'],
 'memory': ['core', 'core.batched', 'core.device', 'core.encoders', 'core.intervals', 'core.measures',
            'core.models', 'core.train', 'experiments', 'experiments.memory'],
 'tyranny': ['core', 'core.batched', 'core.device', 'core.encoders', 'core.intervals', 'core.measures',
             'core.models', 'core.padded_mlp',
             'core.prequential', 'core.train', 'data', 'data.full', 'data.layout', 'data.overlap',
             'data.preparation', 'data.read', 'data.sources', 'data.tasks', 'data.unexposed', 'experiments',
             'experiments.tyranny']}


def test_a_comment_or_docstring_edit_keeps_every_key(lib_copy):
    before = _keys(lib_copy)
    f = lib_copy / "core" / "models.py"
    text = f.read_text()
    at = text.index('"""', text.index("\ndef ")) + 3  # inside the first function's docstring
    f.write_text(text[:at] + "Reworded for a reader. " + text[at:] + "\n# a comment fixed for a typo\n")
    assert _keys(lib_copy) == before


def test_a_changed_constant_moves_the_keys_that_import_it(lib_copy):
    import re
    before = _keys(lib_copy)
    f = lib_copy / "experiments" / "memory.py"
    text = f.read_text()
    m = re.search(r"^    \w+: int = (\d+)", text, re.M)  # a config field's integer default
    assert m, "memory.py has a config dataclass with an integer default"
    f.write_text(text[:m.start(1)] + str(int(m.group(1)) + 1) + text[m.end(1):])
    after = _keys(lib_copy)
    assert after["memory"] != before["memory"]
    assert after["tyranny"] == before["tyranny"]  # tyranny does not import memory


def test_code_text_drops_comments_and_docstrings_only():
    a = provenance.code_text('"""Module."""\nX = 1  # one\ndef f():\n    """Doc."""\n    return X\n')
    b = provenance.code_text("X = 1\n\n\ndef f():\n    return X\n")
    assert a == b
    assert provenance.code_text("X = 2\ndef f():\n    return X\n") != b
    # a function whose body is only its docstring keeps a body
    assert "pass" in provenance.code_text('def f():\n    """Only a docstring."""\n')
