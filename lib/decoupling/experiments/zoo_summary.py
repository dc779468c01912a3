"""What the zoo's records say: the findings over (model, target) cells, and the like-with-like leaderboard.

Kept apart from `experiments.zoo` so that the statistics can change without changing the records' keys.
Everything here reads the records `zoo.zoo_cell` and `zoo.zoo_reference` return; nothing trains.

Conventions. A *paired difference* of rows a and b on a target is, per run r that both coded,
(L_b(r) − L_a(r)) / n bits per label: positive when a codes the labels in fewer bits. Both rows coded the
same examples in the same order (the run fixes them), so the difference is paired on identical blocks.
Intervals are over runs within a target (Student-t, `core.intervals.mean_ci`) and, over several targets,
clustered (targets first: `core.intervals.clustered_ci`). Sentiment targets are decided apart from the
code and prose ones, because a lab model's training data may hold text like theirs (all-MiniLM-L6-v2's
and all-mpnet-base-v2's cards list code-search and question-answering corpora; SmolLM2 was trained on
code and web text): a gain there may be memory of similar text rather than transfer.
Used by book/leaderboard.md and book/generality.md.
"""
from __future__ import annotations

import math

import numpy as np

from decoupling.core import intervals
from decoupling.core.prequential import CONTROL, SCRATCH
from decoupling.experiments import zoo
from decoupling.experiments.zoo import BODIES, LAB, PRETRAINED, SENTIMENT, TARGETS

REFERENCE = "tfidf"
LABEL = {"minilm": "all-MiniLM-L6-v2", "mpnet": "all-mpnet-base-v2", "smollm2": "SmolLM2-135M-Instruct (Q4_1)",
         "body:code": "code LM (ours, smoke size)", "body:prose": "prose LM (ours, smoke size)",
         REFERENCE: "TF-IDF + logistic regression"}
CODE_PROSE = tuple(t for t in TARGETS if t not in SENTIMENT)
GROUPS = {"sentiment": SENTIMENT, "code & prose": CODE_PROSE}
MARGIN = 0.05  # bits per label (or per held-out example): the book's equivalence bound, measures.DELTA_BITS


class Zoo:
    """The zoo's records, indexed: `cells[(model, target)]`, `refs[target]`."""

    def __init__(self, cells: list[dict], refs: list[dict]):
        self.cells = {(c["model"], c["target"]): c for c in cells}
        self.refs = {r["target"]: r for r in refs}

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(m for m, _ in self.cells))

    def targets_of(self, row: str) -> list[str]:
        model = row.split("@")[0]
        if model == REFERENCE:
            return [t for t in TARGETS if t in self.refs]
        return [t for t in TARGETS if (model, t) in self.cells]

    def L(self, row: str, target: str) -> dict[int, float]:
        """Code length per run of a row: a model ("mpnet"), its random twin ("mpnet@scratch"), its second
        random init ("mpnet@scratch-seed"), or the reference ("tfidf")."""
        if row == REFERENCE:
            r = self.refs[target]
            return dict(zip(r["runs_seeds"], r["L"]))
        model, _, init = row.partition("@")
        c = self.cells[(model, target)]
        return dict(zip(c["runs_seeds"], c["runs"][init or PRETRAINED]["L"]))

    def n(self, target: str) -> int:
        return self.refs[target]["n"] if target in self.refs else next(c["n"] for (m, t), c in self.cells.items()
                                                                      if t == target)

    def paired(self, a: str, b: str, target: str) -> list[float]:
        """(L_b − L_a)/n per run both coded: positive when a needs fewer bits than b."""
        La, Lb = self.L(a, target), self.L(b, target)
        return [(Lb[r] - La[r]) / self.n(target) for r in sorted(set(La) & set(Lb))]

    def common_targets(self, *rows: str) -> list[str]:
        return [t for t in TARGETS if all(t in self.targets_of(r) for r in rows)]


# ================================================================================== one comparison
def compare(z: Zoo, a: str, b: str, targets=None) -> dict:
    """a against b: per target (mean over runs, t interval), per group and over all targets (clustered)."""
    targets = [t for t in (targets or TARGETS) if t in z.common_targets(a, b)]
    per = {t: z.paired(a, b, t) for t in targets}
    out = {"a": a, "b": b, "per_target": {t: _ci(v) for t, v in per.items()}}
    out["groups"] = {g: _clustered({t: per[t] for t in ts if t in per}) for g, ts in GROUPS.items()
                     if any(t in per for t in ts)}
    out["all"] = _clustered(per) if per else None
    return out


def _ci(values) -> dict:
    c = intervals.mean_ci(values)
    return {"value": float(c.value), "lo": float(c.lo), "hi": float(c.hi), "runs": len(values)}


def _clustered(per: dict) -> dict:
    c = intervals.clustered_ci(per)
    return {"value": float(c["value"]), "lo": float(c["lo"]), "hi": float(c["hi"]), "targets": len(per)}


def verdict(ci: dict | None) -> str:
    """holds when the interval lies above 0, does not hold when below, otherwise inconclusive."""
    if not ci:
        return "inconclusive"
    return "holds" if ci["lo"] > 0 else "does not hold" if ci["hi"] < 0 else "inconclusive"


# ================================================================================== the findings
def vs_reference(z: Zoo, model: str) -> dict:
    """Is the platform worth using? Its probes against TF-IDF + logistic regression on the same blocks."""
    return compare(z, model, REFERENCE)


def vs_twin(z: Zoo, model: str) -> dict:
    """ΔL = L(θ0) − L(θP) per label, against the model's own random twin."""
    return compare(z, model, f"{model}@{SCRATCH}")


def control(z: Zoo, model: str) -> dict:
    """θ0 against θ0' (two random inits of the model's architecture), with its equivalence verdict per
    target: a two one-sided test at 5%, i.e. the 90% t interval inside ±MARGIN."""
    out = compare(z, f"{model}@{CONTROL}", f"{model}@{SCRATCH}")
    for t, c in out["per_target"].items():
        v = z.paired(f"{model}@{CONTROL}", f"{model}@{SCRATCH}", t)
        c90 = intervals.mean_ci(v, level=0.90)
        c["equivalence"] = intervals.tost(c90.lo, c90.hi, MARGIN)
    return out


def larger_vs_smaller(z: Zoo, larger: str = "mpnet", smaller: str = "minilm") -> dict:
    """Does the bigger, better-pretrained platform give more bits? Paired on identical blocks."""
    return compare(z, larger, smaller)


def scale_of_pretraining(z: Zoo, big: str = "smollm2", bodies=BODIES) -> dict:
    """SmolLM2 (trained on trillions of tokens of code and prose) against the book's code and prose bodies
    on the code and prose targets: what far larger pretraining buys under the same probe."""
    return {b: compare(z, big, b, CODE_PROSE) for b in bodies if b.split("@")[0] in z.models}


def platform_serves_tasks(z: Zoo, model: str = "mpnet") -> dict:
    """One frozen platform with a linear head per task against each task's specialist (TF-IDF + logistic
    regression fitted on that task), on the held-out rows: bits per held-out example of the fits on all n
    coded labels, paired by run. Non-inferiority: on every task the platform may be worse by at most MARGIN
    (the upper end of the 95% interval of platform − specialist below MARGIN)."""
    per = {}
    for t in z.common_targets(model, REFERENCE):
        c, r = z.cells[(model, t)], z.refs[t]
        mine = dict(zip(c["runs_seeds"], (b[-1] for b in c["runs"][PRETRAINED]["test_bits"])))
        spec = dict(zip(r["runs_seeds"], (b[-1] for b in r["test_bits"])))
        per[t] = _ci([mine[k] - spec[k] for k in sorted(set(mine) & set(spec))])
    worst = max((v["hi"] for v in per.values()), default=math.inf)
    best_lo = max((v["lo"] for v in per.values()), default=-math.inf)
    v = "holds" if worst < MARGIN else "does not hold" if best_lo > MARGIN else "inconclusive"
    return {"model": model, "per_target": per, "verdict": v, "worst_hi": worst, "margin": MARGIN}


def spearman(x, y) -> float:
    from scipy.stats import spearmanr
    return float(spearmanr(x, y).statistic)


def _fisher(rho: float, n: int) -> tuple[float, float]:
    """95% interval of a Spearman correlation over n pairs: Fisher's z with the standard error
    1.03/sqrt(n − 3) that Fieller, Hartley & Pearson (1957) give for Spearman's rho."""
    if n < 5 or not np.isfinite(rho):
        return (-1.0, 1.0)
    z, se = np.arctanh(np.clip(rho, -0.9999, 0.9999)), 1.03 / math.sqrt(n - 3)
    return float(np.tanh(z - 1.96 * se)), float(np.tanh(z + 1.96 * se))


def kl_vs_bits(z: Zoo) -> dict:
    """The essay's KL(q0 ‖ qP) against ΔL over every (model, target) cell: Spearman's rho with its interval,
    and the seed-vs-seed floor (the same KL between θ0 and θ0', which share no pretraining at all)."""
    rows = []
    for (m, t), c in z.cells.items():
        kl = float(np.mean([k[-1] for k in c["pairs"][PRETRAINED]["essay_kl"]]))
        floor = float(np.mean([k[-1] for k in c["pairs"][CONTROL]["essay_kl"]]))
        dl = float(np.mean(z.paired(m, f"{m}@{SCRATCH}", t)))
        rows.append({"model": m, "target": t, "kl": kl, "floor": floor, "dL": dl})
    rho = spearman([r["kl"] for r in rows], [r["dL"] for r in rows]) if len(rows) > 2 else float("nan")
    lo, hi = _fisher(rho, len(rows))
    return {"cells": rows, "rho": rho, "lo": lo, "hi": hi, "n": len(rows),
            "above_floor": sum(r["kl"] > r["floor"] for r in rows),
            "negative_dL_kl_above_floor": sum(r["dL"] < 0 and r["kl"] > r["floor"] for r in rows)}


def proxies_vs_bits(z: Zoo, proxy: str = "logme") -> dict:
    """Do LogME / the H-score rank candidate features the way the code length does? Per target, every
    row's pretrained features and its random twin's are candidates (LogME is comparable only within a
    target); rho between the proxy (first run's rows) and −L (mean over runs). Mean rho over targets with a
    t interval over targets."""
    per = {}
    for t in TARGETS:
        xs, ys = [], []
        for m in z.models:
            if (m, t) not in z.cells:
                continue
            c = z.cells[(m, t)]
            first = c["proxies"][str(c["runs_seeds"][0])]
            for init, row in ((PRETRAINED, m), (SCRATCH, f"{m}@{SCRATCH}")):
                p = first[init].get(proxy)
                if p is not None and np.isfinite(p):
                    xs.append(p)
                    ys.append(-float(np.mean(list(z.L(row, t).values()))) / z.n(t))
        if len(xs) >= 4:
            per[t] = spearman(xs, ys)
    c = intervals.mean_ci(list(per.values())) if len(per) >= 2 else None
    return {"proxy": proxy, "per_target": per, "value": float(c.value) if c else float("nan"),
            "lo": float(c.lo) if c else -1.0, "hi": float(c.hi) if c else 1.0, "targets": len(per)}


# ================================================================================== the leaderboard
def leaderboard(z: Zoo, rows: list[str] | None = None) -> dict:
    """Rows ranked by their advantage over TF-IDF + logistic regression (the one reference every row is
    coded against on identical blocks), clustered over targets. Only rows measured on every target are
    ranked; the others are listed apart. Between ranked neighbours: their paired difference with its
    interval (does the order between them mean anything?)."""
    rows = rows or [*z.models, *(f"{m}@{SCRATCH}" for m in z.models)]
    full, partial = [], []
    for r in rows:
        (full if len(z.targets_of(r)) == len(TARGETS) else partial).append(r)
    score = {r: compare(z, r, REFERENCE) for r in rows}
    ranked = sorted(full, key=lambda r: -score[r]["all"]["value"])
    gaps = [compare(z, a, b) for a, b in zip(ranked, ranked[1:])]
    return {"ranked": ranked, "apart": partial, "score": score, "gaps": gaps}


# ================================================================================== what a chapter asks for
# The rows each profile computes: every row at `full` (computed on a CPU, about an hour); at `smoke` the
# rows whose passes fit the smoke budget (mpnet and SmolLM2 cost 5–6× MiniLM per token).
ROWS = {"smoke": ("minilm", *BODIES), "full": (*LAB, *BODIES)}


def configs(profile: str, seed: int = 0, rows=None) -> tuple[list, list]:
    """(reference configs, cell configs) of the zoo at `profile`, every run shifted by the book's seed."""
    shift = {k: tuple(seed + r for r in v) for k, v in zoo.SIZES[profile].items() if k.startswith("runs")}
    refs = [zoo.reference_config(t, profile, **shift) for t in TARGETS]
    cells = [zoo.config(m, t, profile, **shift) for m in (rows or ROWS[profile]) for t in TARGETS]
    return refs, cells
