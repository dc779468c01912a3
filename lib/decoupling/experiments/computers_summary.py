"""What the computers chapter's records say (book/computers.md): its numbers, the data its figures plot,
and its findings and checks, decided by `core.verdicts`. Pure functions of the records that
`experiments.computers` returns (`economics`, `minilm_platform`, `platform_vs_specialist`); nothing trains.

Kept apart from `experiments.computers` so that the statistics can change without changing the records'
keys (no experiment module imports this one).

Conventions. A *pair* is the scratch run and the fine-tune run of one seed of one task: same head init,
data order and test rows. A run that missed the target is charged the whole budget (censored), so a pair
where only scratch missed has a saving that is only a lower bound, one where only the fine-tune missed an
upper bound; pairs where both missed carry nothing and are left out. Intervals over seeds are Student-t
(`intervals.mean_ci`). The suite of tasks is fixed, so a claim about it is decided task by task
(`verdicts.on_every`), each task's interval shown.
"""
from __future__ import annotations

import math

import numpy as np

from decoupling import paths
from decoupling.core import intervals, models, verdicts
from decoupling.core.intervals import Interval
from decoupling.core.verdicts import Check, Finding
from decoupling.experiments import computers as E
from decoupling.pipeline import history
from decoupling.pipeline.page import fmt_interval, sci, sci_interval

LEVEL = 0.95
SPECIALIST_GAP = -0.02  # accuracy: how far the fine-tuned body may trail TF-IDF + logistic and still match it
MARGIN = E.SPECIALIST_MARGIN  # accuracy: the one-platform-vs-specialist non-inferiority margin
NAN = float("nan")


# ================================================================================== the history
def timeline(bib=None) -> tuple[list[dict], Check]:
    """The history table (`pipeline.history`) and the check that it is ordered and every row cites a source
    of its year in book/references.bib (or `bib`)."""
    rows = history.table()
    problems = history.check_table(history.bib_years(bib or paths.ROOT / "book" / "references.bib"))
    return rows, Check("timeline-cited", passed=not problems, value=len(rows), detail="; ".join(problems),
                       statement="the timeline's years are strictly increasing, every row cites a key in "
                                 "references.bib, and each primary source is dated the year of its event")


def timeline_table(rows: list[dict]) -> tuple[list, list]:
    yes = {None: "–", True: "yes", False: "no"}
    return (["year", "what", "programmable", "stored program", "source"],
            [[r["year"], r["name"], yes[r["programmable"]], yes[r["stored_program"]], f"{{cite}}`{r['key']}`"]
             for r in rows])


# ================================================================================== economics: pairs
def pairs(rec: dict) -> list[dict]:
    """The (scratch, fine-tune) pairs of one task's record, by seed: {"seed", "kind", "saving", "log_ratio"}.
    kind: "exact" (both reached the target), "lower" (only scratch missed: the saving is a lower bound),
    "upper" (only the fine-tune missed: an upper bound) or "dropped" (both missed; saving None)."""
    out = []
    for a, b in zip(rec["runs"]["scratch"], rec["runs"]["pretrained"]):
        fa, fb = a["flops_to_target"], b["flops_to_target"]
        if fa is None and fb is None:
            out.append({"seed": a.get("seed"), "kind": "dropped", "saving": None, "log_ratio": None})
            continue
        kind = "exact" if fa is not None and fb is not None else "lower" if fa is None else "upper"
        fa = a["flops"] if fa is None else fa  # a miss is charged the whole budget
        fb = b["flops"] if fb is None else fb
        out.append({"seed": a.get("seed"), "kind": kind, "saving": fa - fb, "log_ratio": math.log(fb / fa)})
    return out


def _kept(ps: list[dict], key: str) -> list[float]:
    return [p[key] for p in ps if p["kind"] != "dropped"]


def _mean_or_none(vals):
    return float(np.mean(vals)) if vals and all(v is not None for v in vals) else None


def t_star_interval(c_pretrain: float, saving: Interval) -> Interval:
    """T* = C_pretrain / saving with the interval its saving's interval maps to: [C/hi, C/lo] when the saving
    is surely positive, up to ∞ when its interval reaches 0, ∞ when the saving is not positive. An estimate,
    not a test (p is NaN): see `Economics.t_star`."""
    def inv(s):
        return NAN if s is None or math.isnan(s) else c_pretrain / s if s > 0 else math.inf
    return Interval(inv(saving.value), inv(saving.hi), inv(saving.lo), level=saving.level, n=saving.n,
                    method="C_pretrain / saving")


def task_numbers(rec: dict, c_pretrain: float, ref_acc_per_seed=None) -> dict:
    """One task's numbers: costs to the target (means over seeds, None when a seed missed), seconds, how many
    runs reached it, accuracies at the end, the saving and log ratio per pair with their t intervals, T*
    with its interval, and the accuracy gap to the TF-IDF reference per seed (paired with the reference's
    score on that seed's test rows when the record has it)."""
    sc, ft = rec["runs"]["scratch"], rec["runs"]["pretrained"]
    ps = pairs(rec)
    saving = intervals.mean_ci(_kept(ps, "saving"), LEVEL)
    ref = ref_acc_per_seed or [rec["reference"]["acc"]] * len(ft)
    c_s = _mean_or_none([r["flops_to_target"] for r in sc])
    c_f = _mean_or_none([r["flops_to_target"] for r in ft])
    return {
        "target": rec["target"], "budget_flops": sc[0]["flops"], "pairs": ps,
        "lr_scratch": rec["lr_choice"]["scratch"]["lr"], "lr_finetune": rec["lr_choice"]["pretrained"]["lr"],
        "c_scratch": c_s, "c_finetune": c_f,
        "seconds_scratch": _mean_or_none([r["seconds_to_target"] for r in sc]),
        "seconds_finetune": _mean_or_none([r["seconds_to_target"] for r in ft]),
        "wall_scratch": float(np.mean([r["wall_s"] for r in sc])),
        "wall_finetune": float(np.mean([r["wall_s"] for r in ft])),
        "reached_scratch": float(np.mean([r["reached"] for r in sc])),
        "reached_finetune": float(np.mean([r["reached"] for r in ft])),
        "acc_scratch": intervals.mean_ci([r["final_acc"] for r in sc], LEVEL),
        "acc_finetune": intervals.mean_ci([r["final_acc"] for r in ft], LEVEL),
        "saving": saving,
        "log_ratio": intervals.mean_ci(_kept(ps, "log_ratio"), LEVEL),
        "t_star": t_star_interval(c_pretrain, saving),
        "gap": intervals.mean_ci([r["final_acc"] - a for r, a in zip(ft, ref)], LEVEL),
    }


def _ratio(iv: Interval) -> str:
    """A log ratio's interval shown as a ratio: 0.85 [0.60, 1.20]."""
    if math.isnan(iv.value):
        return "–"
    if math.isnan(iv.lo):  # one pair: no interval
        return f"{math.exp(iv.value):.2f}"
    return f"{math.exp(iv.value):.2f} [{math.exp(iv.lo):.2f}, {math.exp(iv.hi):.2f}]"


def _acc_fmt(iv: Interval) -> str:
    return fmt_interval(iv, 3, signed=False)


def _decider(d: verdicts.Decision) -> str:
    """The part of a per-target decision whose interval it shows (the one that decides)."""
    return next((k for k, iv in d.parts.items() if iv is d.interval), "–")


def _kinds(ps: list[dict]) -> str:
    return " / ".join(str(sum(p["kind"] == k for p in ps)) for k in ("exact", "lower", "upper", "dropped"))


# ================================================================================== economics: the class
class Economics:
    """The economics record (`computers.economics`) read: per task `numbers[task]` (`task_numbers`), the
    pretraining cost, the break-even estimate, the friction and specialist findings, and the checks."""

    def __init__(self, res: dict):
        self.res = res
        self.tasks = list(res["tasks"])
        self.c_pretrain = float(res["pretrain"]["flops"])
        seeds = res.get("body_seeds")
        self.numbers = {t: task_numbers(rec, self.c_pretrain, self._ref_per_seed(rec, seeds))
                        for t, rec in res["tasks"].items()}
        kinds = [p["kind"] for n in self.numbers.values() for p in n["pairs"]]
        self.pair_kinds = {k: kinds.count(k) for k in ("exact", "lower", "upper", "dropped")}
        self.n_pairs = len(kinds) - self.pair_kinds["dropped"]

    @staticmethod
    def _ref_per_seed(rec: dict, seeds) -> list | None:
        """The reference's accuracy on each run's own test rows, in the runs' order, where recorded."""
        per = rec["reference"].get("acc_per_seed")
        if not per or not seeds:
            return None
        by_seed = dict(zip(seeds, per))
        return [by_seed[r["seed"]] for r in rec["runs"]["pretrained"]]

    # -- the break-even estimate -----------------------------------------------------------------------
    @property
    def saving(self) -> Interval:
        """The average task's saving C_scratch − C_finetune: the mean over tasks of each task's mean over its
        pairs, with a t interval over the task means (a task drawn like these; it describes, it decides
        nothing)."""
        per = {t: _kept(n["pairs"], "saving") for t, n in self.numbers.items()}
        per = {t: v for t, v in per.items() if v}
        return intervals.clustered_ci(per, LEVEL) if per else Interval(NAN)

    @property
    def t_star(self) -> Interval:
        """The break-even number of tasks for the average task, C_pretrain / saving, with its interval. A
        reported estimate, not a test: "T* ≤ the N tasks served" cannot hold by arithmetic while one fine-tune
        budget (the most a task can save) is below C_pretrain / N, as at both profiles (`budget_flops`,
        `pretrain_per_task`); and "T* finite" is "the fine-tune is cheaper", which the friction finding
        decides task by task."""
        return t_star_interval(self.c_pretrain, self.saving)

    @property
    def saving_reading(self) -> str:
        """What the mean saving is, given which runs missed their target: a measurement, a bound, or
        neither (a mix of lower and upper bounds)."""
        k = self.pair_kinds
        if not self.n_pairs:
            return "undefined"
        if k["lower"] == k["upper"] == 0:
            return "measured"
        if k["upper"] == 0:
            return "a lower bound"
        if k["lower"] == 0:
            return "an upper bound"
        return "neither a lower nor an upper bound"

    @property
    def pretrain_per_task(self) -> float:
        """C_pretrain / N for the N tasks served here: the saving per task at which T* = N."""
        return self.c_pretrain / len(self.tasks)

    @property
    def budget_flops(self) -> float:
        """The largest fine-tuning budget of a run: no pair's saving can exceed it."""
        return max(n["budget_flops"] for n in self.numbers.values())

    @property
    def mean_costs(self) -> tuple[float, float] | None:
        """(mean C_scratch, mean C_finetune) over tasks, or None when a seed of some task missed the target."""
        cs = [n["c_scratch"] for n in self.numbers.values()]
        cf = [n["c_finetune"] for n in self.numbers.values()]
        if any(v is None for v in cs + cf):
            return None
        return float(np.mean(cs)), float(np.mean(cf))

    def amortization(self, n_max: int = 1000) -> dict:
        """The break-even figure's data: N, the platform's cost per task C_pretrain / N + C_finetune, the
        scratch line, T* and C_pretrain / C_finetune; None where the mean costs are only bounded."""
        mc = self.mean_costs
        if mc is None:
            return {"n": None, "platform": None, "scratch": None, "finetune": None, "t_star": self.t_star.value,
                    "pretrain_in_finetunes": None}
        n = np.unique(np.logspace(0, math.log10(n_max), 200).round().astype(int))
        return {"n": n, "platform": E.cost_per_task(self.c_pretrain, mc[1], n), "scratch": mc[0],
                "finetune": mc[1], "t_star": self.t_star.value, "pretrain_in_finetunes": self.c_pretrain / mc[1]}

    # -- the figure of learning curves -----------------------------------------------------------------
    def curves(self) -> dict:
        """{task: {init: [{"flops", "acc", "hit" (flops, acc) or None, "lr"} per seed]}}: what the
        to-target figure plots, the hit being the first curve point at or above the target."""
        out = {}
        for task, rec in self.res["tasks"].items():
            out[task] = {}
            for init, runs in rec["runs"].items():
                out[task][init] = []
                for r in runs:
                    c = r["curve"]
                    hit = E.first_reach([p["flops"] for p in c], [p["acc"] for p in c], rec["target"])
                    out[task][init].append({"flops": [p["flops"] for p in c], "acc": [p["acc"] for p in c],
                                            "hit": (hit["x"], hit["acc"]) if hit else None, "lr": r["lr"]})
        return out

    # -- tables ------------------------------------------------------------------------------------------
    def cost_table(self) -> tuple[list, list]:
        """Per task: target, learning rates, FLOPs to the target, their ratio and T* with its interval."""
        def cost(c, n):
            return sci(c) if c is not None else f"> {sci(n['budget_flops'])} (missed)"
        rows = [[t, f"{n['target']:.3f}", f"{n['lr_scratch']:g} / {n['lr_finetune']:g}",
                 cost(n["c_scratch"], n), cost(n["c_finetune"], n), _kinds(n["pairs"]), _ratio(n["log_ratio"]),
                 sci_interval(n["t_star"])] for t, n in self.numbers.items()]
        return (["task", "target", "lr θ⁰ / θᴾ", "C_scratch", "C_finetune",
                 "pairs: measured / θ⁰ missed / θᴾ missed / both missed",
                 "C_finetune / C_scratch (geometric mean [95% CI over seeds])", "T* [95% CI over seeds]"], rows)

    def seconds_table(self) -> tuple[list, list]:
        def s(x):
            return "–" if x is None else f"{x:.1f}"
        rows = [[t, s(n["seconds_scratch"]), s(n["seconds_finetune"]),
                 f"{n['reached_scratch']:.0%} / {n['reached_finetune']:.0%}",
                 f"{n['acc_scratch'].value:.3f} / {n['acc_finetune'].value:.3f}"] for t, n in self.numbers.items()]
        return (["task", "s to target, θ⁰", "s to target, θᴾ", "runs reaching it (θ⁰ / θᴾ)",
                 "accuracy at the end (θ⁰ / θᴾ, mean over seeds)"], rows)

    def reference_table(self) -> tuple[list, list]:
        rows = []
        for t, n in self.numbers.items():
            rec = self.res["tasks"][t]
            ref = rec["reference"]
            rows.append([t, f"{_acc_fmt(n['acc_scratch'])}, {n['wall_scratch']:.1f} s",
                         f"{_acc_fmt(n['acc_finetune'])}, {n['wall_finetune']:.1f} s",
                         f"{ref['acc']:.3f} (C = {ref['C']:g}), {ref['fit_s']:.1f} s",
                         f"{rec['baseline']['majority']:.3f}", fmt_interval(n["gap"])])
        return (["task", "θ⁰: accuracy [95% CI over seeds], s", "θᴾ: accuracy [95% CI], s",
                 "TF-IDF + logistic: accuracy, s to fit", "majority", "θᴾ − TF-IDF [95% CI]"], rows)

    # -- checks ------------------------------------------------------------------------------------------
    def accounting_checks(self, model_cfg) -> list[Check]:
        """The economics' bookkeeping checks: FLOP accounting and the learning-rate rule."""
        return [flop_accounting(self.res, model_cfg), lr_rule(self.res)]

    def reference_competent(self) -> Check:
        return reference_competent(self.res)

    # -- findings ----------------------------------------------------------------------------------------
    def friction(self) -> Finding:
        """reducing-friction: on every task the fine-tune reaches the target with fewer FLOPs than scratch,
        i.e. the 95% t interval over seeds of log(C_finetune / C_scratch) lies below 0."""
        parts = {t: n["log_ratio"] for t, n in self.numbers.items()}
        d = verdicts.on_every(parts, 0.0, "<")
        empty = d.interval is None or math.isnan(d.interval.value)  # a task where no pair reached the target
        return Finding(
            "reducing-friction",
            essay="a new task is cheaper to solve from the pretrained platform than from scratch: it reaches the "
                  "same accuracy with fewer fine-tuning FLOPs",
            criterion="per task, the 95% t interval over seeds of log(C_finetune / C_scratch) (FLOPs to the target, "
                      "paired by seed; a run that missed is charged the budget). Holds when it lies below 0 (the "
                      "ratio below 1) on every task; does not hold when on some task it lies above 0; inconclusive "
                      "otherwise",
            decision=d, applies_to=("full",),
            value=f"undefined: no pair reached the target on {_decider(d)}" if empty else None,
            anchor="BERT: fine-tune ≤ 1 h on one Cloud TPU vs ≈ 4 days × 16 chips pretraining (Devlin et al. 2019)",
            detail="value: the mean log ratio (natural log) of the task that decides; geometric mean over tasks of "
                   f"the ratio {self.geomean_ratio or float('nan'):.2f}; per task (ratio [95% CI]): "
                   + "; ".join(f"{t}: {_ratio(iv)}" for t, iv in parts.items()))

    @property
    def tasks_with_pairs(self) -> int:
        return sum(not math.isnan(n["log_ratio"].value) for n in self.numbers.values())

    @property
    def geomean_ratio(self) -> float | None:
        """exp(mean over tasks of each task's mean log ratio): the average task's C_finetune / C_scratch, over
        the tasks where some pair reached the target (`tasks_with_pairs`)."""
        v = [n["log_ratio"].value for n in self.numbers.values() if not math.isnan(n["log_ratio"].value)]
        return float(math.exp(np.mean(v))) if v else None

    def matches_specialist(self) -> Finding:
        """platform-matches-specialist: on every task the fine-tuned body's accuracy minus TF-IDF + logistic's
        (same training and test rows, paired by seed) has a 95% interval above SPECIALIST_GAP."""
        parts = {t: n["gap"] for t, n in self.numbers.items()}
        return Finding(
            "platform-matches-specialist",
            essay="a general-purpose platform, adapted, does the job of an application-specific solution",
            criterion=f"per task, the 95% t interval over seeds of the test-accuracy gap (fine-tuned platform − "
                      f"TF-IDF + logistic on the same rows). Holds when it lies above {SPECIALIST_GAP} on every "
                      f"task; does not hold when on some task it lies below {SPECIALIST_GAP}; inconclusive "
                      "otherwise. Decided at full only: at smoke the network gets a few dozen steps while the "
                      "reference is fitted to convergence",
            decision=verdicts.on_every(parts, SPECIALIST_GAP, ">"), applies_to=("full",),
            detail="per task: " + "; ".join(f"{t}: {fmt_interval(iv)}" for t, iv in parts.items()))


# ================================================================================== economics: checks
def flop_accounting(res: dict, model_cfg) -> Check:
    """Every run's counted FLOPs = steps · batch · T · flops_per_token, that per-token count equals a recount
    from the module's parameters, and the body's pretraining FLOPs = tokens · flops_per_token(body). T is the
    fine-tunes' sequence length (`seq_len`, the body's block size where a record has none)."""
    T = res.get("seq_len") or model_cfg.block_size
    per_token = models.flops_per_token(model_cfg, T, include_head=False)
    errs = []
    for rec in res["tasks"].values():
        for runs in rec["runs"].values():
            for r in runs:
                want = r["curve"][-1]["step"] * r["batch"] * T * per_token
                errs += [abs(r["flops"] / want - 1), abs(r["recounted_flops_per_token"] / r["counted_flops_per_token"] - 1)]
    pre = res["pretrain"]
    errs.append(abs(pre["flops"] / (pre["tokens"] * models.flops_per_token(model_cfg)) - 1))
    return Check("flop-accounting", passed=max(errs) < 1e-9, value=max(errs),
                 statement="counted training FLOPs equal steps × batch × T × flops_per_token (PaLM app. B), that "
                           "per-token count matches a recount from the module's parameters, and pretraining FLOPs = "
                           "tokens × flops_per_token (largest relative error)")


def lr_rule(res: dict) -> Check:
    """Each init's kept rate is the grid point with the best held-out score, every reported run uses it, and
    the reference's C follows the same rule on the same held-out rows."""
    bad = []
    for task, rec in res["tasks"].items():
        for init, sel in rec["lr_choice"].items():
            best = sel["grid"][E.choose(sel["scores"])]
            if sel["lr"] != best or any(r["lr"] != best for r in rec["runs"][init]) or rec["n_heldout"] < 1:
                bad.append(f"{task}/{init}")
        ref = rec["reference"]
        if ref["C"] != ref["grid"][E.choose(ref["heldout_acc"])]:
            bad.append(f"{task}/reference")
    return Check("lr-chosen-on-seen-data", passed=not bad, value=len(bad), detail="; ".join(bad),
                 statement="every initialisation's learning rate (and the reference's C) is the grid point with the "
                           "best score on held-out rows of the training split, and every reported run uses it")


def reference_competent(res: dict) -> Check:
    """The TF-IDF reference beats the majority class by more than 0.05 on every task: a misaligned label or
    text would leave it at the majority class."""
    gaps = {t: rec["reference"]["acc"] - rec["baseline"]["majority"] for t, rec in res["tasks"].items()}
    worst = min(gaps, key=gaps.get)
    return Check("reference-competent", passed=bool(np.isfinite(gaps[worst]) and gaps[worst] > 0.05),
                 value=gaps[worst], detail="; ".join(f"{t}: {g:+.3f}" for t, g in gaps.items()),
                 statement="the TF-IDF + logistic reference beats the majority class by more than 0.05 on every "
                           "task (smallest margin shown): a misaligned label or text would leave it at the "
                           "majority class")


# ================================================================================== MiniLM and its control
class Platform:
    """The MiniLM platform record (`computers.minilm_platform`) beside the economics (`Economics`): per task
    the accuracies of our body, scratch, MiniLM and its random-weight control, and the control check."""

    ENCODERS = {"minilm": "MiniLM", "random": "random BERT"}

    def __init__(self, econ: Economics, mini: dict):
        self.econ, self.mini, self.mode = econ, mini, mini["mode"]
        self.acc = {t: {n: intervals.mean_ci([r["final_acc"] for r in m["encoders"][n]["runs"]], LEVEL)
                        for n in self.ENCODERS} for t, m in mini["tasks"].items()}
        # paired by seed: the same head init, data order and test rows for both encoders
        self.diff = {t: intervals.mean_ci([a["final_acc"] - b["final_acc"] for a, b in
                                           zip(m["encoders"]["minilm"]["runs"], m["encoders"]["random"]["runs"])], LEVEL)
                     for t, m in mini["tasks"].items()}

    def bars(self) -> dict:
        """The platform figure's data, per task of the economics: accuracies (mean over seeds) of scratch and
        our body, and of MiniLM and its control with their intervals (NaN where MiniLM did not run), and the
        targets."""
        def iv(t, n):
            return self.acc[t][n] if t in self.acc else Interval(NAN)
        tasks = self.econ.tasks
        return {"tasks": tasks,
                "scratch": [self.econ.numbers[t]["acc_scratch"].value for t in tasks],
                "ours": [self.econ.numbers[t]["acc_finetune"].value for t in tasks],
                "minilm": [iv(t, "minilm") for t in tasks], "random": [iv(t, "random") for t in tasks],
                "target": [self.econ.res["tasks"][t]["target"] for t in tasks]}

    def table(self) -> tuple[list, list]:
        rows = []
        for t in self.econ.tasks:
            rec = self.econ.res["tasks"][t]
            for who, runs in (("ours, fine-tuned", rec["runs"]["pretrained"]), ("scratch", rec["runs"]["scratch"])):
                acc = float(np.mean([r["final_acc"] for r in runs]))
                rows.append([t, who, sci(float(np.mean([r["flops"] for r in runs]))),
                             f"{np.mean([r['wall_s'] for r in runs]):.1f}", f"{acc:.3f}",
                             "yes" if acc >= rec["target"] else "no"])
            m = self.mini["tasks"].get(t)
            for n, lab in (() if m is None else self.ENCODERS.items()):
                runs, iv = m["encoders"][n]["runs"], self.acc[t][n]
                lab = f"{lab} ({self.mode}{', control' if n == 'random' else ''}), lr {m['encoders'][n]['lr']:g}"
                rows.append([t, lab, sci(float(np.mean([r["adapt_flops"] for r in runs]))),
                             f"{np.mean([r['adapt_s'] for r in runs]):.1f}", _acc_fmt(iv),
                             "yes" if iv.value >= m["target"] else "no"])
        return ["task", "model", "FLOPs", "seconds", "accuracy [95% CI over seeds]", "target?"], rows

    def beats_random(self) -> Check:
        """On every task MiniLM's paired accuracy advantage over the random-weight control has a 95% t interval
        over seeds above 0 (`verdicts.on_every`)."""
        d = verdicts.on_every(self.diff, 0.0, ">")
        worst = min(self.diff, key=lambda t: self.diff[t].lo if not math.isnan(self.diff[t].lo) else -math.inf)
        return Check("pretrained-beats-random-features", passed=d.verdict == "holds", value=self.diff[worst].value,
                     interval=self.diff[worst],
                     statement="on every task MiniLM's features beat those of a random-weight BERT of its config adapted "
                               "the same way (95% t CI over seeds of the paired accuracy difference above 0; value: the "
                               f"smallest advantage, {worst}; adapted by {self.mode}, "
                               f"{len(next(iter(self.mini['tasks'].values()))['encoders']['minilm']['runs'])} seeds)",
                     detail="; ".join(f"{t}: {fmt_interval(iv)}, MiniLM {self.acc[t]['minilm'].value:.3f}"
                                      for t, iv in self.diff.items()))


# ================================================================================== one platform vs specialists
def specialist_parts(spec: dict, level: float = LEVEL) -> dict[str, Interval]:
    """Per task the paired accuracy difference platform − specialist with the record's percentile bootstrap
    interval over test examples, at the level the record computed it (`computers.SPECIALIST_LEVEL`). The book
    decides every finding on a 95% interval, so a non-inferiority lower end is a one-sided 2.5% test (the
    usual convention for non-inferiority); a record at another level is refused, not rescaled."""
    if not math.isclose(spec["level"], level):
        raise ValueError(f"the specialist record's intervals are {spec['level']:.0%} ones, not {level:.0%}: "
                         "recompute it (computers.platform_vs_specialist)")
    return {t: Interval(v["diff"], *v["diff_ci"], level=level, n=v["n_test"], method="bootstrap")
            for t, v in spec["tasks"].items()}


def serves_tasks(spec: dict) -> Finding:
    """platform-serves-tasks: one frozen MiniLM with a linear head per task is not worse than each task's
    TF-IDF + logistic specialist by more than MARGIN accuracy, on every task (non-inferiority)."""
    parts = specialist_parts(spec)
    return Finding(
        "platform-serves-tasks",
        essay="one general-purpose platform, adapted per task, serves many different tasks about as well as a "
              "specialist built for each",
        criterion=f"per task, accuracy(one frozen MiniLM + a linear head per task) − accuracy(that task's TF-IDF + "
                  f"logistic specialist), same training rows, whole test split, 95% paired bootstrap CI over test "
                  f"examples; margin {MARGIN}: holds when on every task the CI's lower end lies above −{MARGIN} (not "
                  f"worse by more than the margin); does not hold when on some task its upper end lies below "
                  f"−{MARGIN}; inconclusive otherwise",
        decision=verdicts.on_every(parts, -MARGIN, ">"),
        detail="per task: " + "; ".join(f"{t}: {fmt_interval(iv)}, {v['n_train']} training rows, {v['n_test']} test "
                                        "rows" for (t, iv), v in zip(parts.items(), spec["tasks"].values())))


def specialist_table(spec: dict) -> tuple[list, list]:
    parts = specialist_parts(spec)
    rows = [[t, v["n_train"], v["n_test"],
             f"{v['platform']['acc']:.3f} (" + ", ".join(f"{a:.3f}" for a in v["platform"]["acc_per_seed"])
             + f"), {v['platform']['lr']:g}", f"{v['specialist']['acc']:.3f}, {v['specialist']['C']:g}",
             fmt_interval(parts[t])] for t, v in spec["tasks"].items()]
    return (["task", "train rows", "test rows", "platform: accuracy (per seed), lr", "specialist: accuracy, C",
             "platform − specialist [95% CI]"], rows)


# ================================================================================== the chapter's claims
def found(econ: Economics, platform: Platform, spec: dict) -> dict:
    """Every finding and check the chapter's summary section reads, by name (the same objects the sections
    above record; pure functions of the records, so building them again decides nothing new)."""
    claims = [econ.friction(), econ.matches_specialist(), serves_tasks(spec), platform.beats_random()]
    return {c.name: c for c in claims}
