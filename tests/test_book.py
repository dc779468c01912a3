"""A chapter's machinery (`decoupling.pipeline.book.Chapter`) on a throwaway store and build folder: the
figures name the runs they were drawn from, the module's example names real things, values print one way."""
import json
import re
from dataclasses import dataclass

import pytest

from decoupling import paths
from decoupling.pipeline import book, claims, figures, store


@dataclass(frozen=True)
class LineCfg:
    slope: int = 2
    seed: int = 0


@dataclass(frozen=True)
class SeedsCfg:
    seeds: tuple = (0,)


def line(cfg: LineCfg) -> dict:
    return {"y": [cfg.slope * x for x in range(3)]}


def square(cfg: LineCfg) -> dict:
    return {"y": cfg.slope ** 2}


@pytest.fixture
def chapter(tmp_path, monkeypatch):
    """A Chapter writing into tmp_path, and what it shows (the HTML it displays, in order)."""
    for name, sub in (("STORE_DIR", "store"), ("BUILD_DIR", "build"), ("RESULTS_DIR", "results")):
        monkeypatch.setattr(paths, name, tmp_path / sub)
    shown = []
    import IPython.display
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    return book.Chapter("cards", profile="smoke", seed=0), shown


def _figure(ch, fig_id, **kw):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    return ch.figure(fig, fig_id, **kw)


def _cards(shown) -> list[str]:
    return [o.data for o in shown if 'class="provenance"' in str(getattr(o, "data", ""))]


def _logical(fn, cfg) -> str:
    return store.keys(fn, cfg, "smoke")[0][:12]


def test_a_figure_names_the_runs_made_since_the_previous_one(chapter):
    ch, shown = chapter
    a = ch.run(line, LineCfg(2))
    b = ch.run(line, LineCfg(3))
    side = _figure(ch, "two-lines")
    want = [{"experiment": "test_book.line", "logical": _logical(line, LineCfg(2))},
            {"experiment": "test_book.line", "logical": _logical(line, LineCfg(3))}]
    assert side["experiments"] == want and a["y"] == [0, 2, 4] and b["y"] == [0, 3, 6]
    on_disk = json.loads((paths.BUILD_DIR / "figures" / "two-lines.json").read_text())
    assert on_disk["experiments"] == want  # the sidecar says it too
    card = _cards(shown)[-1]
    assert "experiments" not in card  # one function, so "experiment", followed by its two config hashes
    assert card.count("test_book.line") == 1 and all(w["logical"] in card for w in want)
    # the function is linked to its line in the repository (the tests are part of the book's repository)
    assert re.search(rf'href="[^"]*/blob/[^"]*/tests/test_book\.py#L{line.__code__.co_firstlineno}"', card)
    # each run's record keeps its config hash, so the status page and the sidecar agree
    rec = json.loads((paths.BUILD_DIR / "records" / "cards.json").read_text())
    assert [r["logical"][:12] for r in rec["records"]] == [w["logical"] for w in want]


def test_without_new_runs_a_figure_names_every_run_so_far_and_runs_name_them_exactly(chapter):
    ch, shown = chapter
    a = ch.run(line, LineCfg(2))
    _figure(ch, "first")
    s = ch.run(square, LineCfg(5))
    assert [x["experiment"] for x in _figure(ch, "second")["experiments"]] == ["test_book.square"]
    assert [x["experiment"] for x in _figure(ch, "third")["experiments"]] == ["test_book.line", "test_book.square"]
    exact = _figure(ch, "fourth", runs=[a])
    assert exact["experiments"] == [{"experiment": "test_book.line", "logical": _logical(line, LineCfg(2))}]
    assert exact["records"] == 1
    with pytest.raises(ValueError, match="ch.run returned"):
        _figure(ch, "fifth", runs=[{"y": 25}])  # equal to a result, but not one this chapter's ch.run returned
    assert _figure(ch, "sixth", runs=[s])["experiments"][0]["experiment"] == "test_book.square"


def test_a_figure_before_any_run_says_so(chapter):
    ch, shown = chapter
    assert _figure(ch, "drawn-by-hand")["experiments"] == []
    assert "no experiment run" in _cards(shown)[-1]


def test_card_names_experiments_and_escapes_them():
    side = {"id": "f", "experiments": [{"experiment": "experiments.memory.context_gating", "logical": "0123456789ab"},
                                       {"experiment": "x<y>", "logical": "ba9876543210"}]}
    card = figures.card_html(side, code_urls={"experiments.memory.context_gating": "https://e.org/m.py#L7"})
    assert ('<a href="https://e.org/m.py#L7" title="the experiment function"><code>'
            'experiments.memory.context_gating</code></a>') in card
    assert "0123456789ab" in card and "ba9876543210" in card and "experiments " in card
    assert "x<y>" not in card and "x&lt;y&gt;" in card


def test_seeds_are_the_profiles_shifted_by_the_book_seed(chapter):
    ch, _ = chapter
    presets = {"smoke": LineCfg(), "full": LineCfg()}
    seeded = {"smoke": SeedsCfg(seeds=(0, 1)), "full": SeedsCfg(seeds=(0, 1, 2))}
    assert ch.seeds(seeded) == (0, 1)
    ch.seed = 10
    assert ch.seeds(seeded) == (10, 11) and ch.config(seeded, seeds=ch.seeds(seeded)).seeds == (10, 11)
    with pytest.raises(AttributeError):
        ch.seeds(presets)  # a config without seeds has none to shift


# -- the module docstring's example ------------------------------------------------------------------

def test_the_module_docstring_example_names_real_things():
    example = [ln.strip() for ln in book.__doc__.splitlines() if ln.startswith("    ")]
    imports = [ln for ln in example if ln.startswith(("from decoupling", "import decoupling"))]
    assert imports, "the example imports what it uses"
    ns: dict = {}
    exec("\n".join(imports), ns)  # every `decoupling...` module and name it imports exists
    code = "\n".join(ln.split("#")[0] for ln in example if ln not in imports)
    used = re.findall(r"\b([A-Za-z_]\w*)\.([A-Za-z_]\w*)", code)
    assert used
    for owner, attr in used:
        target = book.Chapter if owner == "ch" else ns.get(owner)
        assert target is not None, f"{owner}.{attr}: {owner} is neither imported nor the chapter"
        assert hasattr(target, attr), f"{owner}.{attr} does not exist"
    assert re.search(r"ch = Chapter\(", code)


# -- values as the book prints them ------------------------------------------------------------------

@pytest.mark.parametrize("value, text", [(0.123456, "0.1235"), (None, "–"), (3, "3"), ([1.0, (2.5, None)], "[1, [2.5, –]]"),
                                         ("a", "a")])
def test_fmt(value, text):
    assert claims.fmt(value) == text


def test_fmt_ci():
    assert claims.fmt_ci((0.1, 0.25)) == "0.1 … 0.25" and claims.fmt_ci(None) == "–"
