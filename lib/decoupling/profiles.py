"""Profiles: named, frozen sizes for every experiment.

`smoke` runs the whole book on a 2-core laptop CPU in about ten minutes (CI and tests use it);
`full` is sized for one H100/H200 GPU (the whole book in about twenty minutes). Each experiments module
holds `PRESETS: dict[str, dict[str, Cfg]]`, keyed by the name of the experiment function each config is
for, with exactly {"smoke": Cfg(...), "full": Cfg(...)} of one frozen dataclass per experiment
(tests/test_presets.py). A chapter takes `preset(E.PRESETS["fn"], profile)` — or the module's name for
that dict, e.g. `preset(memory.GATING, profile)` — through `Chapter.config`.
"""
from __future__ import annotations

import dataclasses

PROFILES: tuple[str, ...] = ("smoke", "full")


class UnknownProfile(ValueError):
    pass


def check_profile(name: str) -> str:
    if name not in PROFILES:
        raise UnknownProfile(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    return name


def preset(presets: dict, profile: str, **overrides):
    """The frozen config for `profile`, with fields replaced by `overrides` (e.g. seed=...). A name that is
    not a field of the config is refused: a misspelt or outdated seed override must not be dropped silently
    (the run would then not be the one the chapter asked for)."""
    check_profile(profile)
    if profile not in presets:
        raise UnknownProfile(f"no preset for profile {profile!r}; this experiment has: {', '.join(presets)}")
    cfg = presets[profile]
    names = {f.name for f in dataclasses.fields(cfg)}
    if unknown := sorted(set(overrides) - names):
        raise TypeError(f"{type(cfg).__name__} has no field(s) {', '.join(unknown)}; its fields: "
                        f"{', '.join(sorted(names))}")
    return dataclasses.replace(cfg, **overrides)
