"""What each chapter runs at a profile: the one list that `decoupling compute` computes and the pages read.

A chapter's runs are `Run`s: an experiment function, its frozen config and the group the page asks for it
by (`ch.result("economics")`, `ch.results("transfer")`). Pretrained bodies are runs too (`artifact=True`:
`store.artifact` builds a checkpoint directory instead of a record), listed before the experiments that
fine-tune them and named in their `needs`: `decoupling compute` trains a body only when a record that
reads it is missing, and each body once.

The page and `decoupling compute` read the same list, so they cannot disagree about which records exist:
a page asks for its runs by group, never builds a config of its own (tests/test_plan.py compares the
records a smoke build asked for with this list).

The declarations live here, not in the experiment modules, on purpose: an experiment's results key
covers the source of every computing module it imports, and which runs a chapter shows is not part of how
any one of them is computed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from decoupling.profiles import check_profile, preset

CHAPTERS = ("computers", "memory", "tyranny", "generality", "leaderboard")  # the book's order (_toc.yml)


@dataclass(frozen=True)
class Run:
    group: str            # what the page asks for: ch.result(group) / ch.results(group)
    fn: Callable          # experiments.<module>.<function>(cfg) -> dict, or pretrain.pretrain(cfg, out_dir)
    cfg: object           # its frozen config
    profile: str          # the profile the store keys it under (a body: the preset it was trained from)
    artifact: bool = False  # a pretrained body: a checkpoint directory, no record
    needs: tuple = ()     # the body runs it fine-tunes or reads: computed before it, and only if it is missing

    @property
    def label(self) -> str:
        """One line naming it, for progress reports and --count tables."""
        cfg = self.cfg
        what = [getattr(cfg, k) for k in ("domain", "model", "target", "source", "name")
                if isinstance(getattr(cfg, k, None), str)]
        if (inputs := getattr(cfg, "inputs", None)) is not None:
            what.append(inputs.target)
        what += [f"{k} {getattr(cfg, k)}" for k in ("steps", "seed") if self.artifact and hasattr(cfg, k)]
        return " ".join([self.group, *what])


def _seeded(presets: dict, profile: str, seed: int, **kw):
    """A preset at `profile` with its seeds shifted by the book's seed parameter (Chapter.seeds' rule)."""
    base = preset(presets, profile)
    return preset(presets, profile, seeds=tuple(seed + s for s in base.seeds), **kw)


def _body(cfg, profile: str) -> Run:
    from decoupling.experiments import pretrain
    return Run("body", pretrain.pretrain, cfg, profile, artifact=True)


def _bodies(pairs, profile: str) -> list[Run]:
    """Body runs of `pretrain.config(profile, domain, seed)` for each (domain, seed), each once."""
    from decoupling.experiments import pretrain
    return [_body(pretrain.config(profile, d, s), profile) for d, s in dict.fromkeys(pairs)]


# ------------------------------------------------------------------------------------------ chapters
def computers(profile: str, seed: int = 0) -> list[Run]:
    from decoupling.experiments import computers as E
    econ = _seeded(E.ECONOMICS, profile, seed)
    bodies = tuple(_body(dataclasses.replace(econ.body, seed=s), econ.profile) for s in econ.seeds)
    return [*bodies, Run("economics", E.economics, econ, profile, needs=bodies),
                     Run("platform", E.minilm_platform, _seeded(E.PLATFORM, profile, seed), profile),
                     Run("specialist", E.platform_vs_specialist, _seeded(E.SPECIALIST, profile, seed), profile)]


def memory(profile: str, seed: int = 0) -> list[Run]:
    from decoupling.experiments import memory as E
    return [Run("gating", E.context_gating, _seeded(E.GATING, profile, seed), profile),
            Run("task_token", E.task_token, _seeded(E.TASK_TOKEN, profile, seed), profile),
            Run("prompting", E.prompting, _seeded(E.PROMPTING, profile, seed), profile),
            Run("icl", E.icl_diversity, _seeded(E.ICL, profile, seed), profile)]


def tyranny(profile: str, seed: int = 0) -> list[Run]:
    from decoupling.experiments import tyranny as E
    from decoupling.experiments import tyranny_data as TD
    data = _seeded(TD.DATA, profile, seed)
    bodies = tuple(_body(TD.body_config(data, steps, s), data.body_profile)
                   for steps in data.body_steps for s in data.seeds)
    return [
        *bodies,
        Run("scaling", E.scaling, _seeded(E.SCALING, profile, seed), profile),
        Run("pretraining_data", TD.pretraining_data, data, profile, needs=bodies),
        Run("memorization", E.memorization, _seeded(E.MEMORIZATION, profile, seed), profile),
        Run("compression", E.compression, preset(E.COMPRESSION, profile, order_seed=seed, label_seed=seed, seed=seed),
            profile),
        Run("double_descent", E.double_descent, preset(E.DOUBLE_DESCENT, profile, subset_seed=seed), profile)]


def generality(profile: str, seed: int = 0) -> list[Run]:
    from decoupling.experiments import generality as E
    transfers = [_seeded(E.TRANSFER, profile, seed, target=t) for t in E.TARGETS[profile]]
    out = []
    for c in transfers:
        bodies = _bodies([(d, s) for d in c.sources for s in c.seeds], c.body_profile)
        out += [*bodies, Run("transfer", E.transfer, c, profile, needs=tuple(bodies))]
    out += [Run("reference", E.reference_transfer, c, profile) for c in transfers]  # the leaderboard reads them too
    out += [Run("minilm", E.minilm_transfer, _seeded(E.MINILM, profile, seed), profile)]
    out += [Run("digits", E.digits_transfer, _seeded(E.DIGITS, profile, seed, **kw), profile) for kw in ({}, E.REVERSE)]
    if profile != "full":  # where the seed-vs-seed control is decided, the transfer's own runs suffice
        sc = preset(E.SEED_CONTROL, profile)
        out.append(Run("seed_control", E.seed_control, sc, profile, needs=tuple(_bodies([("code", 0)], sc.body_profile))))
    return out + zoo(profile, seed)


def zoo(profile: str, seed: int = 0) -> list[Run]:
    """The zoo's runs (the leaderboard's, and the generality chapter's section on real platforms)."""
    from decoupling.experiments import zoo as Z
    from decoupling.experiments import zoo_summary as ZS
    refs, cells = ZS.configs(profile, seed)
    out = [Run("zoo_reference", Z.zoo_reference, c, profile) for c in refs]
    for c in cells:
        bodies = _bodies([(c.model.split(":", 1)[1], r) for r in c.inputs.runs], c.body_profile) \
            if Z.is_body(c.model) else []
        out += [*bodies, Run("zoo_cell", Z.zoo_cell, c, profile, needs=tuple(bodies))]
    return out


def leaderboard(profile: str, seed: int = 0) -> list[Run]:
    return zoo(profile, seed)


_DECLARED = {"computers": computers, "memory": memory, "tyranny": tyranny, "generality": generality,
             "leaderboard": leaderboard}


def runs(chapter: str, profile: str, seed: int = 0) -> list[Run]:
    """Every run of `chapter` at `profile`, bodies first, in the order the page reads them."""
    check_profile(profile)
    if chapter not in _DECLARED:
        raise ValueError(f"unknown chapter {chapter!r}; chapters with runs: {', '.join(CHAPTERS)}")
    return list(dict.fromkeys(_DECLARED[chapter](profile, seed)))  # a body several runs read: once


def book(profile: str, chapters=CHAPTERS, seed: int = 0) -> list[Run]:
    """The runs of `chapters`, each once (chapters share bodies and the zoo), in book order; a body comes
    before the first run that needs it."""
    from decoupling.pipeline import store
    seen, out = set(), []
    for ch in chapters:
        for r in runs(ch, profile, seed):
            key = (r.artifact, store.keys(r.fn, r.cfg, r.profile)[0])
            if key not in seen:
                seen.add(key)
                out.append(r)
    return out
