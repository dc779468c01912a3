"""The presets contract (lib/decoupling/README.md, "Contracts"): every experiments module that defines frozen
config dataclasses has `PRESETS: dict[str, dict[str, Cfg]]`, keyed by the name of a module-level experiment
function, each value exactly {"smoke": Cfg(...), "full": Cfg(...)} of one frozen dataclass — the type the
function takes. Modules are discovered, so a new chapter's module is checked without editing this file."""
import dataclasses
import importlib
import inspect
import pkgutil
import typing

import pytest

import decoupling.experiments
from decoupling.profiles import PROFILES

MODULES = sorted(m.name for m in pkgutil.iter_modules(decoupling.experiments.__path__))


def _frozen_dataclasses(mod) -> list[type]:
    """The frozen dataclasses the module itself defines (not those it imports)."""
    return [c for c in vars(mod).values() if inspect.isclass(c) and c.__module__ == mod.__name__
            and dataclasses.is_dataclass(c) and c.__dataclass_params__.frozen]


@pytest.mark.parametrize("name", MODULES)
def test_module_presets_follow_the_contract(name):
    mod = importlib.import_module(f"decoupling.experiments.{name}")
    if not hasattr(mod, "PRESETS"):
        assert not _frozen_dataclasses(mod), \
            f"{name} defines config dataclasses {[c.__name__ for c in _frozen_dataclasses(mod)]} but no PRESETS"
        pytest.skip(f"{name} defines no experiments")
    presets = mod.PRESETS
    assert isinstance(presets, dict) and presets, f"{name}.PRESETS must be a non-empty dict"
    for fn_name, per_profile in presets.items():
        fn = getattr(mod, fn_name, None)
        assert inspect.isfunction(fn) and fn.__module__ == mod.__name__, \
            f"{name}.PRESETS[{fn_name!r}] names no function of {name}"
        assert isinstance(per_profile, dict) and list(per_profile) == list(PROFILES), \
            f"{name}.PRESETS[{fn_name!r}] has {list(per_profile)}, not exactly {list(PROFILES)}"
        smoke, full = per_profile["smoke"], per_profile["full"]
        cls = type(smoke)
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, \
            f"{name}.PRESETS[{fn_name!r}]['smoke'] is not a frozen dataclass"
        assert type(full) is cls, f"{name}.PRESETS[{fn_name!r}]: smoke is {cls.__name__}, full {type(full).__name__}"
        first = next(iter(inspect.signature(fn).parameters))  # the config the experiment runs on
        assert typing.get_type_hints(fn).get(first) is cls, \
            f"{name}.{fn_name} takes {first}: {typing.get_type_hints(fn).get(first)}, its presets are {cls.__name__}"
