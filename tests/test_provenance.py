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
    path.write_text(path.read_text() + "\n# edited\n")


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
               'data.preparation', 'data.read', 'data.sources', 'data.tasks', 'experiments',
               'experiments.computers', 'experiments.pretrain'],
 'generality': ['core', 'core.baselines', 'core.batched', 'core.device', 'core.encoders', 'core.measures',
                'core.models', 'core.prequential', 'core.train', 'data', 'data.full', 'data.layout', 'data.overlap',
                'data.preparation', 'data.read', 'data.sources', 'data.tasks', 'experiments',
                'experiments.generality', 'experiments.pretrain'],
 'memory': ['core', 'core.batched', 'core.device', 'core.encoders', 'core.intervals', 'core.measures',
            'core.models', 'core.train', 'experiments', 'experiments.memory'],
 'tyranny': ['core', 'core.batched', 'core.device', 'core.encoders', 'core.intervals', 'core.measures',
             'core.models', 'core.padded_mlp',
             'core.prequential', 'core.train', 'data', 'data.full', 'data.layout', 'data.overlap',
             'data.preparation', 'data.read', 'data.sources', 'data.tasks', 'experiments',
             'experiments.tyranny']}
