"""Chapter 4's numbers, figure data and decisions (book/generality.md): what the chapter prints about the
results of `experiments.generality` — the source → target ΔL matrix against θ0 and against the reference
with no pretraining, each body's generality score, the seed-vs-seed controls as equivalence tests, the three
estimators side by side, the effective data transferred D_T and its exponent, the rank correlation of LogME
with ΔL, the code/prose square of text bodies run both ways, the bodies on exposed and unexposed code side
by side, which candidate of its grid each init chose, the digits in both directions, and every finding and
check of the chapter as `core.verdicts` objects. Pure functions of those results: nothing here trains, and
no experiment module imports this one (its source stays outside every results key).

How the findings are decided. A claim about a fixed suite of targets (a body is general, a platform beats
the reference, an unrelated source gives nothing) is decided target by target (`verdicts.on_every` /
`verdicts.all_of`, an intersection-union test): it holds when it holds on every target, does not hold when
some target's interval lies wholly on the other side. The generality score, the mean over targets with a t
interval over the target means (`intervals.clustered_ci`), describes the suite and decides nothing: with
two to six targets a mean can clear a threshold that one target misses, or hide an effect every target
shows. Every interval is a `core.intervals.Interval`.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from decoupling.core import intervals, measures, verdicts
from decoupling.core.grids import GridUse, grid_use
from decoupling.core.intervals import Interval
from decoupling.core.prequential import CONTROL, SCRATCH
from decoupling.experiments.zoo_summary import EXPOSED, UNEXPOSED
from decoupling.pipeline.page import fmt_grid_use, fmt_interval

NAN = float("nan")
DELTA = measures.DELTA_BITS  # the seed-vs-seed and no-information margin, bits per label
# the names the chapter prints for each initialisation
LABEL = {SCRATCH: "θ0 (random)", CONTROL: "θ0′ (2nd random init)", "code": "code LM", "prose": "prose LM",
         "c": "C-headers LM", "shuffled": "shuffled-code LM", "minilm": "all-MiniLM-L6-v2",
         "reference": "TF-IDF + logistic regression"}


# ============================================================================================ intervals
def pooled_ci(values) -> Interval:
    """Mean and Student-t 95% interval of one target's per-run values, with its t-test p against 0."""
    return intervals.mean_ci(np.asarray(values, float))


def suite_mean(per_target: dict) -> Interval:
    """The mean over targets of each target's run mean, with a t interval over the target means
    (`intervals.clustered_ci`): a description of an average over the suite. It decides nothing."""
    return intervals.clustered_ci({t: np.asarray(v, float) for t, v in per_target.items()})


def diff_ci(a, b) -> Interval:
    """mean(a) − mean(b) for two independent samples (e.g. ΔL per label of two transfer directions over
    their runs), with Welch's t 95% interval."""
    return intervals.diff_ci(a, b)


def differs(iv: Interval, threshold: float = 0.0) -> verdicts.Decision:
    """A two-sided claim ("differs from `threshold`"): holds when the 95% interval excludes the threshold on
    either side, otherwise inconclusive (an interval around it cannot show equality). p is the two-sided
    test against the threshold, so it is below 0.05 exactly when the claim holds."""
    d = verdicts.above(iv, threshold) if not iv.value < threshold else verdicts.below(iv, threshold)
    return dataclasses.replace(d, rule=f"the {iv.level:.0%} CI excludes {threshold:g}")


def _every_equivalent(per_target: dict, margin: float = DELTA, alpha: float = 0.05) -> verdicts.Decision:
    """Zero to within ±margin on every target of the suite: a TOST per target (the 1 − 2·alpha interval over
    its runs inside ±margin), combined by intersection-union."""
    parts = {t: verdicts.equivalent(np.asarray(v, float), margin, alpha) for t, v in per_target.items()}
    level = 1 - 2 * alpha
    return verdicts.all_of(parts, f"on every one of {len(parts)} targets the {level:.0%} CI lies inside ±{margin:g}")


def _control_equivalence(iv: Interval, margin: float = DELTA) -> verdicts.Decision:
    """A seed-vs-seed control: its 95% interval inside ±margin (two one-sided tests at 2.5% each, the
    book's control rule since its first edition). An interval with no spread (one run) decides nothing."""
    if not (np.isfinite(iv.se) and iv.df):
        return verdicts.Decision(verdicts.OPEN, 1.0, iv, {}, f"the 95% CI lies inside ±{margin:g} (no interval)")
    return verdicts.equivalent(iv, margin, alpha=0.025)


def control_word(decision: verdicts.Decision) -> str:
    """How the chapter names a control's outcome: equivalent, biased (wholly outside the band), undecided."""
    return {verdicts.HOLDS: "equivalent", verdicts.FAILS: "biased"}.get(decision.verdict, "undecided")


# ================================================================================= rows and scores
def vs_reference(result: dict, init: str, reference: dict | None) -> list[float] | None:
    """ΔL of `init` against the reference with no pretraining, per seed, in bits per label:
    (L_ref − L_init) / n, seed by seed (the reference coded the same examples in the same order)."""
    if reference is None:
        return None
    L = np.asarray(result["runs"][init]["L"], float)
    ref = np.asarray(reference["L"], float)
    if len(ref) != len(L):
        raise ValueError(f"the reference has {len(ref)} seeds, {init} {len(L)}: they must code the same runs")
    return ((ref - L) / result["n"]).tolist()


def cells(transfers: Sequence[dict], minilm: dict | None = None, references: Sequence[dict] | None = None) -> list[dict]:
    """Every (target, init) result as one row: ΔL per seed (bits, total and per label; against θ0 and,
    where a reference was coded on the same blocks, against it), essay KL, reverse KL and held-out gain per
    seed at the last fit, LogME. The input of all the summaries below."""
    rows = []
    refs = list(references) if references is not None else [None] * len(transfers)
    blocks = [(t, "ours", r) for t, r in zip(transfers, refs)] + [
        (t, "minilm-" + minilm["mode"], t.get("reference")) for t in (minilm or {}).get("targets", {}).values()]
    for t, family, ref in blocks:
        for name, p in t["pairs"].items():
            rows.append({"target": t["target"], "init": name, "body": family, "n": t["n"],
                         "dL": list(p["dL"]), "dL_per_label": [v / t["n"] for v in p["dL"]],
                         "dL_ref_per_label": vs_reference(t, name, ref),
                         "essay_kl": [v[-1] for v in p["essay_kl"]], "reverse_kl": [v[-1] for v in p["reverse_kl"]],
                         "gain": [v[-1] for v in p["gain"]], "logme": t["logme"].get(name),
                         "logme_scratch": t["logme"].get(SCRATCH)})
    return rows


def task_family(target: str) -> str:
    return target.split("/")[0]


def generality_score(rows: Sequence[dict], init: str, key: str = "dL_per_label") -> dict:
    """The essay's double integral as a Monte Carlo estimate: ΔL per label averaged uniformly over the
    (task, dataset) pairs of the suite, each pair's value the mean over its seeds. `interval` is the t
    interval over the target means (runs on one target share its difficulty, so they are not independent
    draws of an integral over tasks); it describes the score. `parts` holds each target's own t interval
    over its runs: the findings are decided on those (`verdicts.on_every`). key="dL_ref_per_label": the same
    against the reference with no pretraining. Per task family means are reported beside it."""
    mine = [r for r in rows if r["init"] == init and r.get(key) is not None]
    if not mine:
        return {"init": init, "score": NAN, "interval": Interval(NAN), "parts": {}, "n_cells": 0, "n_runs": 0,
                "families": {}}
    per = {r["target"]: r[key] for r in mine}
    iv = suite_mean(per)
    fam: dict[str, list[float]] = {}
    for r in mine:
        fam.setdefault(task_family(r["target"]), []).append(float(np.mean(r[key])))
    return {"init": init, "score": iv.value, "interval": iv, "parts": {t: pooled_ci(v) for t, v in per.items()},
            "n_cells": len(mine), "n_runs": iv.n, "families": {k: float(np.mean(v)) for k, v in fam.items()}}


def effective_data(transfer_result: dict, init: str) -> dict:
    """Effective data transferred D_T(n) (Hernandez et al. 2021) from the seed-mean test learning curves
    (bits/example at each fit size) of θ0 and of `init`: the horizontal gap between the two curves."""
    ends = np.asarray(transfer_result["ends"][:-1], float)
    l0 = np.mean(transfer_result["runs"][SCRATCH]["test_bits"], axis=0)
    lp = np.mean(transfer_result["runs"][init]["test_bits"], axis=0)
    dt = measures.effective_data_transferred(ends, lp, ends, l0)
    # where the pretrained model beats θ0's best point, the scratch curve never reaches it: D_T is then
    # only bounded below, by (largest n on the scratch curve) − n
    lower = [float(ends[-1] - e) if not np.isfinite(v) and p < l0.min() else None
             for e, v, p in zip(ends, dt, lp)]
    return {"n": ends.tolist(), "loss_scratch": l0.tolist(), "loss_init": lp.tolist(),
            "dt": [None if not np.isfinite(v) else float(v) for v in dt], "dt_lower_bound": lower}


def fit_dt_pooled(curves: Sequence[dict], n_boot: int = 2000, seed: int = 0, min_points: int = 3) -> dict:
    """One exponent α for D_T = k_pair · n^α over several (source, target) pairs, each with its own k
    (a within-pair least-squares slope of log D_T on log n, the fixed-effects estimator), with a percentile
    bootstrap 95% interval over pairs (`interval`, method "bootstrap"; NaN bounds with fewer than two
    pairs). A pair enters with ≥ `min_points` finite, positive D_T points: through two points any power law
    fits, so two points test nothing about the form. No pair → α is NaN."""
    groups = []
    for c in curves:
        n = np.asarray(c["n"], float)
        dt = np.asarray([np.nan if v is None else v for v in c["dt"]], float)
        ok = np.isfinite(dt) & (dt > 0)
        if ok.sum() >= max(2, min_points):
            groups.append((np.log(n[ok]), np.log(dt[ok])))

    def slope(gs):
        sxy = sum(((x - x.mean()) * (y - y.mean())).sum() for x, y in gs)
        sxx = sum(((x - x.mean()) ** 2).sum() for x, _ in gs)
        return float(sxy / sxx) if sxx > 0 else NAN

    if not groups:
        return {"alpha": NAN, "interval": Interval(NAN, method="bootstrap"), "pairs": 0, "points": 0}
    # the bootstrap resamples pairs: it draws indices into `groups` (each n ≥ 3 distinct sizes, so every
    # resample's slope is finite)
    ci = measures.bootstrap_ci(np.arange(len(groups)), stat=lambda ix: slope([groups[int(i)] for i in ix]),
                               n_boot=n_boot, seed=seed)
    lo, hi = (ci.lo, ci.hi) if len(groups) > 1 else (NAN, NAN)
    return {"alpha": ci.value, "interval": Interval(ci.value, lo, hi, n=len(groups), method="bootstrap"),
            "pairs": len(groups), "points": int(sum(len(x) for x, _ in groups))}


def spearman(a, b) -> float:
    from scipy.stats import spearmanr
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return NAN
    return float(spearmanr(a[ok], b[ok]).statistic)


def logme_vs_dl(rows: Sequence[dict]) -> dict:
    """Rank correlation of the cheap proxy (LogME on frozen features) with the measured ΔL: per target
    across its bodies (how LogME is used: to rank candidate models for one task), averaged, and pooled.
    `points`: the pooled scatter, (init, LogME(body) − LogME(θ0), ΔL per label seed mean)."""
    per_target = {}
    for t in sorted({r["target"] for r in rows}):
        # one family of bodies per target (ours share θ0; MiniLM's θ0 is a different network)
        rs = [r for r in rows if r["target"] == t and r["logme"] is not None and r["init"] != CONTROL
              and r["body"] == "ours"]
        # θ0 itself is a candidate too: its ΔL is 0 by definition
        xs = [r["logme"] for r in rs] + [rs[0]["logme_scratch"]] if rs else []
        ys = [float(np.mean(r["dL_per_label"])) for r in rs] + [0.0] if rs else []
        per_target[t] = spearman(xs, ys)
    pooled = [(r["init"], r["logme"] - r["logme_scratch"], float(np.mean(r["dL_per_label"]))) for r in rows
              if r["logme"] is not None and r["logme_scratch"] is not None and r["init"] != CONTROL]
    vals = [v for v in per_target.values() if np.isfinite(v)]
    return {"per_target": per_target, "mean_per_target": float(np.mean(vals)) if vals else NAN,
            "pooled": spearman([p[1] for p in pooled], [p[2] for p in pooled]), "n_pooled": len(pooled),
            "points": pooled}


# Each text body's own domain's target: the code LM's is code → package (snippets of code), the prose LM's
# docstring → package (English about code). Run both ways, the two bodies on the two targets are the text
# square of the source → target matrix.
HOME = {"code": "code/module", "prose": "prose/topic"}


def home_advantage(rows: Sequence[dict], home: dict | None = None) -> dict:
    """The text pair run both ways: on each body's home target (`HOME`), its ΔL per label minus the other
    body's, seed by seed — the same θ0, head init, examples and order per seed, so the difference is
    (L_other − L_home) / n of that seed and the θ0 terms cancel — with a Student-t 95% interval over the
    seeds. A direction appears only where both bodies ran on that target.

    `decision` of "each body gives the larger ΔL on its own domain's target", target by target
    (`verdicts.on_every` over every target of `home`, a direction that did not run entering as an interval
    with no bounds): holds when every direction ran and each interval lies above 0; does not hold when some
    direction's lies below 0 (a body pretrained elsewhere codes a domain's labels in fewer bits than the
    body pretrained on it); otherwise inconclusive (one way alone cannot show the pattern)."""
    home = HOME if home is None else home
    per = {(r["init"], r["target"]): r["dL_per_label"] for r in rows}
    directions = {}
    for body, target in home.items():
        for other in home:
            if other == body or (body, target) not in per or (other, target) not in per:
                continue
            a, b = per[(body, target)], per[(other, target)]
            if len(a) != len(b):
                raise ValueError(f"{body} and {other} on {target}: {len(a)} vs {len(b)} seeds; the difference is paired")
            directions[target] = {"home": body, "other": other, "target": target,
                                  "interval": pooled_ci([x - y for x, y in zip(a, b)])}
    parts = {t: directions[t]["interval"] if t in directions else Interval(NAN) for t in home.values()}
    return {"directions": directions, "complete": len(directions) == len(home),
            "decision": verdicts.on_every(parts, 0.0, ">")}


def _three_ways(rows: Sequence[dict], inits: Sequence[str]) -> dict:
    """The three estimators (and ΔL) per init, each the mean over targets of the seed means, described by
    a t interval over the target means (over the runs where there is one target)."""
    return {i: {k: suite_mean({r["target"]: r[k] for r in rows if r["init"] == i})
                for k in ("essay_kl", "reverse_kl", "gain", "dL_per_label")}
            for i in inits if any(r["init"] == i for r in rows)}


def _kl_floor(rows: Sequence[dict], three: dict) -> dict:
    """The essay's KL between the two random inits (its floor), its range over the pretrained inits, and its
    mean over the (target, init) cells where pretraining cost bits (seed-mean ΔL < 0)."""
    bodies = {i: v["essay_kl"].value for i, v in three.items() if i != CONTROL}
    cost = [float(np.mean(r["essay_kl"])) for r in rows if r["init"] != CONTROL and np.mean(r["dL"]) < 0]
    return {"control": three[CONTROL]["essay_kl"] if CONTROL in three else Interval(NAN),
            "bodies_min": min(bodies.values(), default=NAN), "bodies_max": max(bodies.values(), default=NAN),
            "n_cost": len(cost), "where_cost": float(np.mean(cost)) if cost else NAN}


def _vs_shuffled(ours: Sequence[dict], inits: Sequence[str]) -> dict:
    """Each real body against the shuffled-token body, run by run (same θ0, seed and examples): what a
    source gives beyond what any pretraining run gives (token statistics, LayerNorm'd features,
    calibration). Per target a paired t interval; `decision`: above 0 on every target."""
    if "shuffled" not in inits:
        return {}
    sh = {r["target"]: r["dL_per_label"] for r in ours if r["init"] == "shuffled"}
    out = {}
    for i in inits:
        if i in (CONTROL, "shuffled"):
            continue
        per = {r["target"]: [a - b for a, b in zip(r["dL_per_label"], sh[r["target"]])]
               for r in ours if r["init"] == i and r["target"] in sh}
        parts = {t: pooled_ci(v) for t, v in per.items()}
        out[i] = {"interval": suite_mean(per), "parts": parts, "decision": verdicts.on_every(parts, 0.0, ">")}
    return out


def summarize(transfers: Sequence[dict], minilm: dict | None = None, n_boot: int = 2000,
              references: Sequence[dict] | None = None) -> dict:
    """Everything the chapter prints about the text grid: per-cell rows, the ΔL matrix (bits per label,
    seed mean) against θ0 and against the reference, each body's generality score against both, the
    seed-vs-seed controls, the three estimators side by side with the essay KL's floor, D_T per (body,
    target) with the pooled exponent, LogME ↔ ΔL, each body against the shuffled-token one, the code/prose
    square, and the text findings and checks (`findings`, `checks`: name → verdicts.Finding / Check).
    The suite is the exposed targets: an unexposed one (code/agents, at `full`) is set beside code/module by
    `exposure` and enters no score or finding, as on the leaderboard, so both chapters decide on one suite."""
    if references is not None:
        references = [r for t, r in zip(transfers, references) if t["target"] not in UNEXPOSED]
    transfers = [t for t in transfers if t["target"] not in UNEXPOSED]
    rows = cells(transfers, minilm, references)
    ours = [r for r in rows if r["body"] == "ours"]
    mini = [r for r in rows if r["body"] != "ours"]
    inits = list(dict.fromkeys(r["init"] for r in ours))

    def seed_mean(rs, init, key):
        return {r["target"]: float(np.mean(r[key])) for r in rs if r["init"] == init and r.get(key) is not None}

    matrix = {i: seed_mean(ours, i, "dL_per_label") for i in inits}
    matrix_ref = {i: seed_mean(ours, i, "dL_ref_per_label") for i in inits if i != CONTROL}
    if references is not None:  # θ0 itself against the reference: what fine-tuning a random GPT-2 is worth
        matrix_ref[SCRATCH] = {t["target"]: float(np.mean(vs_reference(t, SCRATCH, r)))
                               for t, r in zip(transfers, references)}
    scores = {i: generality_score(ours, i) for i in inits}
    scores_ref = {i: generality_score(ours, i, key="dL_ref_per_label") for i in inits if i != CONTROL}
    if mini:
        matrix["minilm"] = seed_mean(mini, "minilm", "dL_per_label")
        matrix_ref["minilm"] = seed_mean(mini, "minilm", "dL_ref_per_label")
        scores["minilm"] = generality_score(mini, "minilm")
        scores["minilm-control"] = generality_score(mini, CONTROL)
        scores_ref["minilm"] = generality_score(mini, "minilm", key="dL_ref_per_label")
    three = {**_three_ways(ours, inits), **(_three_ways(mini, ["minilm"]) if mini else {})}
    dts = {}
    for t in transfers:
        for i in t["pairs"]:
            if i != CONTROL:
                dts[(i, t["target"])] = effective_data(t, i)
    for t in (minilm or {}).get("targets", {}).values():
        dts[("minilm", t["target"])] = effective_data(t, "minilm")
    real = [v for (i, _), v in dts.items() if i not in (CONTROL, "shuffled")]
    S = {"rows": rows, "targets": [t["target"] for t in transfers], "inits": inits,
         "bodies": transfers[0]["bodies"] if transfers else {}, "matrix": matrix, "matrix_ref": matrix_ref,
         "scores": scores, "scores_ref": scores_ref, "three_ways": three, "kl": _kl_floor(rows, three),
         "home": home_advantage(ours), "dt": {f"{i} -> {t}": v for (i, t), v in dts.items()},
         "dt_fit": fit_dt_pooled(real, n_boot), "logme": logme_vs_dl(rows), "vs_shuffled": _vs_shuffled(ours, inits),
         "minilm_mode": (minilm or {}).get("mode")}
    S["findings"] = text_findings(S, ours)
    S["checks"] = text_checks(S)
    return S


# ================================================================================ the text findings
EVERY_TARGET = ("on every target of the suite, the 95% t interval over runs of {what} lies above 0: holds (an "
                "intersection-union test: the claim is made of each target, so none may miss); some target's "
                "interval wholly below 0: does not hold; otherwise inconclusive. The score, the mean over targets "
                "with a t interval over the target means, describes the suite and decides nothing")


def _suite_finding(name: str, essay: str, criterion: str, decision: verdicts.Decision, s: dict,
                   applies_to=("smoke", "full")) -> verdicts.Finding:
    """A finding decided target by target: it shows the target that decides (value and interval alike), and
    names it, the score (the mean over targets, described) and every target's interval in its detail."""
    iv = decision.interval
    who = next((t for t, part in decision.parts.items() if part is iv), "–")
    detail = (f"shown: {who}, the target that decides; the score (mean over {s['n_cells']} targets) "
              f"{_fmt(s['interval'])}; per target: " + "; ".join(f"{t} {_fmt(v)}" for t, v in s["parts"].items()))
    return verdicts.Finding(name, essay=essay, criterion=criterion, decision=decision,
                            value=None if iv is None else iv.value, applies_to=applies_to, detail=detail)


def _fmt(iv: Interval, digits: int = 3) -> str:
    if not np.isfinite(iv.lo):
        return f"{iv.value:+.{digits}f}"
    return f"{iv.value:+.{digits}f} [{iv.lo:+.{digits}f}, {iv.hi:+.{digits}f}]"


def text_findings(S: dict, ours: Sequence[dict]) -> dict:
    """The findings of the text grid, name → verdicts.Finding: each body's generality (our bodies decided at
    `full`; MiniLM at every profile), MiniLM against the reference, the unrelated (shuffled-token) source,
    the code/prose square and the D_T exponent."""
    targets, sc, scr, F = S["targets"], S["scores"], S["scores_ref"], {}
    crit = EVERY_TARGET.format(what="ΔL per label against θ0")
    for d in [i for i in S["inits"] if i not in (SCRATCH, CONTROL, "shuffled")]:
        F[f"score-{d}"] = _suite_finding(
            f"score-{d}", f"a pretrained body is general: it gives side information (ΔL per label vs θ0 > 0) on the "
            f"tasks and datasets of the suite — {LABEL.get(d, d)}, over {', '.join(targets)}", crit,
            verdicts.on_every(sc[d]["parts"], 0.0, ">"), sc[d], applies_to=("full",))
    shuffled = {r["target"]: r["dL_per_label"] for r in ours if r["init"] == "shuffled"}
    if shuffled:
        F["unrelated-source"] = _suite_finding(
            "unrelated-source", "an unrelated source — an LM trained on shuffled code tokens — gives no side "
            "information: its ΔL per label vs θ0 is zero, to within a margin",
            f"equivalence on every target (two one-sided tests at 5% each per target): every target's 90% "
            f"t interval over runs inside ±{DELTA} bits/label: holds; some target's wholly outside that band (the "
            f"source gives, or costs, more than {DELTA} there): does not hold; otherwise inconclusive",
            _every_equivalent(shuffled), sc["shuffled"], applies_to=("full",))
    mode = S["minilm_mode"]
    if "minilm" in sc:
        s, r = sc["minilm"], scr["minilm"]
        F["score-minilm"] = _suite_finding(
            "score-minilm", f"a lab-pretrained body is general: all-MiniLM-L6-v2 gives side information (ΔL per "
            f"label vs a random BERT of its shape > 0, {mode}) on the {s['n_cells']} text targets",
            crit, verdicts.on_every(s["parts"], 0.0, ">"), s)
        F["minilm-vs-reference"] = _suite_finding(
            "minilm-vs-reference", "a general-purpose body is worth using on a new task: all-MiniLM-L6-v2 "
            f"({mode}) codes the labels of the {r['n_cells']} text targets in fewer bits than TF-IDF + logistic "
            "regression coded on the same blocks (ΔL vs the reference > 0)",
            EVERY_TARGET.format(what="ΔL per label against the reference, (L_ref − L_MiniLM) / n"),
            verdicts.on_every(r["parts"], 0.0, ">"), r)
    home = S["home"]
    shown = home["decision"].interval
    if shown is None or not np.isfinite(shown.value):  # the direction that did not run: show the one that did
        shown = next((d["interval"] for d in home["directions"].values()), Interval(NAN))
    F["text-asymmetry"] = verdicts.Finding(
        "text-asymmetry", essay="(the essay's domain knowledge; Zamir et al. 2018 on direction-dependent transfer) "
        "what a text body gives depends on the target: each body gives the larger ΔL per label on its own domain's "
        "target — the code LM on code → package, the prose LM on docstring → package",
        criterion="both paired differences of ΔL per label (same seeds, θ0, examples and order), code LM − prose LM "
        "on code/module and prose LM − code LM on prose/topic, with their 95% t intervals over seeds above 0: holds; "
        "either wholly below 0 (a body pretrained elsewhere wins a domain's own target): does not hold; otherwise, "
        "or with one direction run, inconclusive", decision=home["decision"], value=shown.value, applies_to=("full",),
        detail="; ".join(f"{LABEL.get(d['home'], d['home'])} − {LABEL.get(d['other'], d['other'])} on {t}: "
                         f"{_fmt(d['interval'], 5)}" for t, d in home["directions"].items()) or "neither pair ran")
    fit = S["dt_fit"]
    F["dt-exponent"] = verdicts.Finding(
        "dt-exponent", essay="(Hernandez et al. 2021, not the essay) effective data transferred grows as a power "
        "of the fine-tuning data, D_T ∝ n^α with α > 0 (pooled within-pair fit over our real sources)",
        criterion="the whole 95% interval of α (percentile bootstrap over (body, target) pairs with ≥ 3 positive "
        "D_T points) above 0: holds; wholly below 0: does not hold; otherwise, or with fewer than two such pairs, "
        "inconclusive", decision=verdicts.above(fit["interval"], 0.0), value=fit["alpha"],
        anchor="Hernandez et al. 2021: α = 0.18 (text→python), 0.096 (text+code→python)", applies_to=("full",),
        detail=f"{fit['pairs']} pairs, {fit['points']} points")
    return F


def text_checks(S: dict) -> dict:
    """The checks of the text grid, name → verdicts.Check: the bodies learned, and the seed-vs-seed controls
    (θ0 vs θ0′) of MiniLM's shape and of ours, each mean over targets with its 95% interval inside ±δ."""
    C = {}
    bodies = S["bodies"]
    learned = [d for d in bodies if d != "shuffled"]  # the shuffled control cannot beat unigram statistics
    if bodies:
        C["bodies-learned"] = verdicts.Check(
            "bodies-learned", statement="every language body predicts its held-out text in fewer bits per token "
            "than its corpus's unigram entropy (value: the smallest margin, bits/token), and every body's held-out "
            "loss still fell over its last evaluation interval: none was stopped before it learned or trained past "
            "its best point",
            passed=all(bodies[d]["eval_bits_per_token"] < bodies[d]["unigram_entropy_bits"] for d in learned)
            and all(b["heldout_still_falling"] for b in bodies.values()),
            value=min((bodies[d]["unigram_entropy_bits"] - bodies[d]["eval_bits_per_token"] for d in learned),
                      default=NAN))
    for name, key, statement, applies in [
            ("seed-vs-seed-equivalent-minilm", "minilm-control",
             "two random BERTs of MiniLM's shape, drawn afresh for every seed (θ0 vs θ0′): the 95% interval of "
             "ΔL per label over the {n} targets (the mean of the target means, t interval over them) lies within "
             f"±{DELTA} bits/label (equivalence test)", ("smoke", "full")),
            ("seed-vs-seed-equivalent-ours", CONTROL,
             "two random GPT-2 initialisations (θ0 vs θ0′): the 95% interval of ΔL per label over the suite (the "
             f"mean of the target means, t interval over them) lies within ±{DELTA} bits/label (equivalence test; "
             "at smoke one target × two seeds cannot give it the power)", ("full",))]:
        if key not in S["scores"]:
            continue
        s = S["scores"][key]
        d = _control_equivalence(s["interval"])
        C[name] = verdicts.Check(name, statement.format(n=s["n_cells"]), passed=d.verdict == verdicts.HOLDS,
                                 value=s["score"], interval=s["interval"], applies_to=applies,
                                 detail=f"{control_word(d)}; per target: "
                                 + "; ".join(f"{t} {_fmt(iv, 4)}" for t, iv in s["parts"].items()))
    return C


def control_outcomes(S: dict) -> dict:
    """The seed-vs-seed controls' outcome words (equivalent / biased / undecided), as the prose names them."""
    return {k: control_word(_control_equivalence(S["scores"][k]["interval"]))
            for k in ("minilm-control", CONTROL) if k in S["scores"]}


# ============================================================================ exposed and unexposed code
def exposure(transfers: Sequence[dict], exposed: str = EXPOSED, unexposed: str = UNEXPOSED[0]) -> dict | None:
    """Our bodies' ΔL per label against θ0 on the two code targets side by side: `exposed` (CPython's
    standard library, which every lab model of the zoo has most likely read) and `unexposed` (projects first
    released after every one of them was trained, decoupling.data.unexposed). Our bodies read neither: the
    first's packages are held out of every corpus, the second's rows found in any corpus are dropped. So
    their difference between the two targets is what the targets themselves do to ΔL, the yardstick for the
    lab models' difference on the leaderboard page.

    Per init (the bodies, then the θ0′ control): "exposed" and "unexposed", each a t interval over its runs
    (`pooled_ci`), and "difference", exposed minus unexposed with Welch's interval (`diff_ci`: the targets
    code different examples, so their runs are not paired). Also "K" and "n" per target (classes and labels
    per run: the bits per label of the two targets are on scales of log2 K each). A description; it decides
    nothing. None where either target was not run (every profile but `full`)."""
    rows = [r for r in cells(transfers) if r["target"] in (exposed, unexposed)]
    per = {(r["init"], r["target"]): r["dL_per_label"] for r in rows}
    inits = list(dict.fromkeys(r["init"] for r in rows))
    inits = [i for i in inits if i != CONTROL] + [i for i in inits if i == CONTROL]
    both = [i for i in inits if (i, exposed) in per and (i, unexposed) in per]
    if not both:
        return None
    rec = {t["target"]: t for t in transfers}
    return {"exposed": exposed, "unexposed": unexposed,
            "K": {t: rec[t]["K"] for t in (exposed, unexposed)}, "n": {t: rec[t]["n"] for t in (exposed, unexposed)},
            "inits": {i: {"exposed": pooled_ci(per[i, exposed]), "unexposed": pooled_ci(per[i, unexposed]),
                          "difference": diff_ci(per[i, exposed], per[i, unexposed])} for i in both}}


def exposure_table(ex: dict) -> tuple[list[str], list[list]]:
    """`exposure` as (header, rows): per init its ΔL per label on each code target and the difference, each
    with its 95% interval."""
    e, u = ex["exposed"], ex["unexposed"]
    return (["body (vs θ0)", f"`{e}`: ΔL, bits/label", f"`{u}`: ΔL, bits/label", f"`{e}` − `{u}` (Welch)"],
            [[LABEL.get(i, i), fmt_interval(v["exposed"]), fmt_interval(v["unexposed"]),
              fmt_interval(v["difference"])] for i, v in ex["inits"].items()])


def exposure_page(transfers: Sequence[dict]) -> dict | None:
    """The chapter's section on exposed and unexposed code: `exposure`'s numbers and its table; None where
    either code target was not run (every profile but `full`)."""
    ex = exposure(transfers)
    return None if ex is None else {"numbers": ex, "table": exposure_table(ex)}


# ======================================================================================== the grids
def grid_choices(records: Sequence[dict], references: Sequence[dict | None] | None = None,
                 by: str = "blocks") -> dict[str, GridUse]:
    """Which candidate of its grid each init chose (`core.grids.grid_use`), pooled over runs and targets.
    `records`: one experiment's per-target records, every one with the same candidates (`hps`): `transfer`'s,
    or the values of `minilm_transfer`'s "targets". `references`: the reference coded on the same blocks,
    one per record or None (`reference_transfer`'s); by default each record's own "reference" where it has one
    (MiniLM's). The reference's row is "reference". A candidate is its name, in the grid's order.

    by="blocks": the candidate each block was coded with; only blocks that had a choice count (the first,
    with nothing seen to choose on, always takes candidate 0). by="runs": per run, the candidate whose code
    length as if it had coded every block (`L_config`) is the shortest, the best single value of the run.
    Records that disagree on an init's candidates are refused (their choices cannot be pooled)."""
    if by not in ("blocks", "runs"):
        raise ValueError(f"by is 'blocks' or 'runs', not {by!r}")
    records = list(records)
    refs = [r.get("reference") for r in records] if references is None else list(references)
    if len(refs) != len(records):
        raise ValueError(f"{len(refs)} references for {len(records)} records: one each, or None")
    chosen: dict[str, list] = {}
    grids: dict[str, list] = {}

    def add(row: str, names, rec: dict) -> None:
        names = list(names)
        if grids.setdefault(row, names) != names:
            raise ValueError(f"{row}: the records chose among different candidates, {grids[row]} and {names}")
        if by == "runs":
            picks = [names[int(np.argmin(lc))] for lc in rec.get("L_config", [])]
        else:  # the reference stores candidate indices, the protocol's runs their names
            picks = [names[int(c)] if isinstance(c, (int, np.integer)) else c
                     for run in rec["choices"] for c in run[1:]]
        chosen.setdefault(row, []).extend(picks)
    for rec, ref in zip(records, refs):
        for init, run in rec["runs"].items():
            add(init, rec["hps"], run)
        if ref is not None:
            add("reference", ref["hps"], ref)
    return {row: grid_use({row: v}, grids[row])[row] for row, v in chosen.items()}


def grid_table(records: Sequence[dict],
               references: Sequence[dict | None] | None = None) -> tuple[list[str], list[list]]:
    """`grid_choices` as (header, rows): per init, the blocks coded with each candidate and the runs whose
    best single candidate it was, the most chosen in bold, "(edge)" where an edge of the grid won."""
    blocks, runs = grid_choices(records, references, "blocks"), grid_choices(records, references, "runs")
    return (["init", "blocks coded with each candidate (most in bold)", "runs whose best single candidate it was"],
            [[LABEL.get(i, i), fmt_grid_use(u), fmt_grid_use(runs[i]) if runs[i].blocks else "–"]
             for i, u in blocks.items()])


def grid_page(transfers: Sequence[dict], minilm: dict | None = None,
              references: Sequence[dict | None] | None = None) -> dict:
    """What the chapter shows of the grids: for our bodies' transfer ("transfer", its references beside it)
    and for MiniLM ("minilm", None without its record), the table (`grid_table`), the candidates in the
    grid's order, how many rows the table has, and the rows (their page names, the reference's included)
    where an edge of the grid won the most blocks. A grid of two candidates has no interior, so there every
    row that chose flags (`core.grids.GridUse`)."""
    def part(records, refs):
        if not records:
            return None
        uses = grid_choices(records, refs)
        return {"table": grid_table(records, refs), "grid": list(records[0]["hps"]), "rows": len(uses),
                "edge": [LABEL.get(i, i) for i, u in uses.items() if u.edge_wins]}
    return {"transfer": part(list(transfers), references),
            "minilm": part(list((minilm or {}).get("targets", {}).values()), None),
            "minilm_mode": (minilm or {}).get("mode")}


# ======================================================================================== the digits
def digits_summary(runs: Sequence[dict]) -> dict:
    """The digits in every direction run: per direction and source, ΔL per label against θ0 and against
    pixels + logistic regression (t intervals over runs); ΔL against source-training steps; the
    seed-vs-seed control as an equivalence test; the asymmetry (converged source, one direction minus the
    other, Welch); the paired cost of training the source longer (converged minus early-stopped, run by run:
    the same θ0, examples and head init, so the difference is the extra source training alone); and the
    digits findings and check (`findings`, `checks`)."""
    out: dict = {"directions": {}}
    for d in runs:
        key = f"{d['source_task']} -> {d['target']}"
        n = d["n"]
        per = {i: [v / n for v in p["dL"]] for i, p in d["pairs"].items()}
        ref = {i: vs_reference(d, i, d["reference"]) for i in d["runs"]}
        ctrl = pooled_ci(per[CONTROL])
        steps = sorted(d["source_steps"].items(), key=lambda kv: kv[1])
        out["directions"][key] = {
            "source": d["source_task"], "target": d["target"], "n": n, "early_steps": d["source_steps"]["early"],
            "dL": {i: pooled_ci(v) for i, v in per.items()},
            "dL_ref": {i: pooled_ci(v) for i, v in ref.items()},
            "control": {"interval": ctrl, "decision": _control_equivalence(ctrl)},
            "steps": [{"init": i, "steps": k, "interval": pooled_ci(per[i])} for i, k in steps],
            "longer_source": pooled_ci([a - b for a, b in zip(per["pretrained"], per["early"])]),
            "per_run": per["pretrained"],
        }
    keys = list(out["directions"])
    if len(keys) == 2:
        a, b = (out["directions"][k] for k in keys)
        iv = diff_ci(a["per_run"], b["per_run"])
        out["asymmetry"] = {"pair": keys, "interval": iv, "decision": differs(iv, 0.0)}
    out["findings"] = digits_findings(out)
    out["checks"] = digits_checks(out)
    return out


def digits_findings(D: dict) -> dict:
    """The digits findings, name → verdicts.Finding: transfer in each direction, the asymmetry between the
    two, and the cost of training the source longer (in every direction)."""
    F, dirs = {}, list(D["directions"].values())
    crit = "the whole 95% t interval over runs above 0: holds; wholly below 0: does not hold; otherwise inconclusive"
    for name, dd in zip(("digits-transfer", "digits-transfer-reverse"), dirs):
        F[name] = verdicts.Finding(
            name, essay=f"pretraining on digits {dd['source'].split('/')[1]} gives side information about "
            f"{dd['target'].split('/')[1]}: ΔL > 0 (bits per label over {dd['n']} labels, the body pretrained to "
            "convergence, vs θ0)", criterion=crit, decision=verdicts.above(dd["dL"]["pretrained"], 0.0),
            value=dd["dL"]["pretrained"].value)
    if "asymmetry" in D:
        a = D["asymmetry"]
        F["digits-asymmetry"] = verdicts.Finding(
            "digits-asymmetry", essay="(Zamir et al. 2018, not the essay) transfer is not symmetric: ΔL per label "
            f"of {a['pair'][0]} differs from that of {a['pair'][1]} (converged sources)",
            criterion="the 95% interval of the difference (Welch's t over each direction's runs) excludes 0: holds; "
            "otherwise inconclusive (an interval around 0 cannot show symmetry)", decision=a["decision"],
            value=a["interval"].value)
    if dirs:
        longer = {k: dd["longer_source"] for k, dd in D["directions"].items()}
        F["digits-longer-source-worse"] = verdicts.Finding(
            "digits-longer-source-worse", essay="(after Hernandez et al. 2021, not the essay) training the source "
            "longer can make transfer worse: ΔL of the source trained to convergence minus ΔL of the same run "
            f"stopped at {dirs[0]['early_steps']} steps is < 0 (bits/label, same source init, θ0, examples and head "
            "per run), in both directions",
            criterion="per direction, the 95% t interval over runs of the paired difference (each run its own source "
            "network): every direction's interval wholly below 0 holds; some direction's wholly above 0 does not "
            "hold; otherwise inconclusive", decision=verdicts.on_every(longer, 0.0, "<"),
            value=float(np.mean([v.value for v in longer.values()])),
            detail="value: the mean of the directions; " + "; ".join(f"{k}: {_fmt(v)}" for k, v in longer.items()))
    return F


def digits_checks(D: dict) -> dict:
    """The digits' seed-vs-seed control, name → verdicts.Check: in each direction the 95% interval of θ0 vs θ0′
    within ±δ."""
    ctrl = {k: dd["control"] for k, dd in D["directions"].items()}
    if not ctrl:
        return {}
    both = verdicts.all_of({k: c["decision"] for k, c in ctrl.items()})
    return {"seed-vs-seed-equivalent-digits": verdicts.Check(
        "seed-vs-seed-equivalent-digits", applies_to=("full",), passed=both.verdict == verdicts.HOLDS,
        value=float(np.mean([c["interval"].value for c in ctrl.values()])), interval=both.interval,
        statement=f"two random MLP initialisations (θ0 vs θ0′) on the digits: in each direction the 95% t interval "
        f"of ΔL per label over the runs lies within ±{DELTA} bits/label (equivalence test; value: the mean of the "
        "directions, interval: the direction that decides). Decided at full: with five learning-rate candidates "
        "chosen per block, one run's ΔL between two random inits spreads by about 0.07 bits/label, and an interval "
        "inside ±0.05 then needs ten or more runs per direction; smoke has five",
        detail="; ".join(f"{k}: {_fmt(c['interval'], 4)} ({control_word(c['decision'])})" for k, c in ctrl.items()))}


def digits_control_word(D: dict) -> str:
    """The digits control over its directions: equivalent in every direction, biased in some, else undecided."""
    words = [control_word(dd["control"]["decision"]) for dd in D["directions"].values()]
    return ("equivalent" if words and all(w == "equivalent" for w in words) else
            "biased" if "biased" in words else "undecided")


# ============================================================================ the figures' data, details
def cumulative(res: dict, init: str) -> np.ndarray:
    """Cumulative code length of `init` after each block, seed mean (bits); init="reference": the reference
    with no pretraining, coded on the same blocks."""
    blocks = res["reference"]["block_bits"] if init == "reference" else res["runs"][init]["block_bits"]
    return np.cumsum(np.mean(blocks, axis=0))


def learning_curve(res: dict, init: str) -> np.ndarray:
    """Test log-loss of `init` after each fit (bits/example), seed mean: the learning curve."""
    return np.mean(res["runs"][init]["test_bits"], axis=0)


def saved(res: dict, init: str) -> np.ndarray:
    """Bits saved so far against θ0, seed mean: the running ΔL."""
    return cumulative(res, SCRATCH) - cumulative(res, init)


def matrix_grid(S: dict, D: dict) -> dict:
    """The source → target matrix as the chapter draws it: rows (inits, digits directions, θ0), columns
    (text targets, digits targets) and two arrays of seed-mean ΔL per label, against θ0 and against the
    reference (NaN where a pair was not run; θ0 itself only against the reference)."""
    dirs = D["directions"]
    text_cols = list(dict.fromkeys([*S["targets"], *S["matrix"].get("minilm", {})]))
    cols = text_cols + [d["target"] for d in dirs.values()]
    rows = [i for i in [*S["bodies"], CONTROL, "minilm"] if i in S["matrix"]] + list(dirs) + [SCRATCH]

    def cell(i, t, ref):
        if i in dirs:
            d = dirs[i]
            return (d["dL_ref"] if ref else d["dL"])["pretrained"].value if t == d["target"] else NAN
        if i == SCRATCH:
            if not ref:
                return NAN
            dd = [d for d in dirs.values() if d["target"] == t]
            return dd[0]["dL_ref"][SCRATCH].value if dd else S["matrix_ref"].get(SCRATCH, {}).get(t, NAN)
        return (S["matrix_ref"] if ref else S["matrix"]).get(i, {}).get(t, NAN)

    labels = {**LABEL, **{k: f"digits {d['source'].split('/')[1]} (converged)" for k, d in dirs.items()}}
    return {"rows": rows, "cols": cols, "labels": [labels.get(i, i) for i in rows],
            "vs_theta0": np.array([[cell(i, t, False) for t in cols] for i in rows], float),
            "vs_reference": np.array([[cell(i, t, True) for t in cols] for i in rows], float)}


def seed_control_summary(seedc: dict, transfer: dict) -> dict:
    """Our GPT-2 seed-vs-seed control run over more seeds on one target (`experiments.generality.seed_control`):
    ΔL(θ0 − θ0′) per label per seed, its spread, whether the transfer's own control cells are reproduced,
    whether swapping the two inits' roles only flips the sign, and how many seeds an interval inside ±δ
    would need even at a zero mean (t ≈ 2.2 at ten seeds: n ≥ (2.2 · sd / δ)²)."""
    v = np.asarray(seedc["dL_per_label"], float)
    own = [float(x) / transfer["n"] for x in transfer["pairs"][CONTROL]["dL"]] if transfer["target"] == seedc["target"] else []
    swap = np.asarray(seedc["swapped_dL_per_label"], float)
    sd = float(v.std(ddof=1))
    return {"target": seedc["target"], "values": v.tolist(), "mean": float(v.mean()), "sd": sd,
            "above_zero": int((v > 0).sum()), "n_own": len(own),
            "reproduces_own": bool(own) and bool(np.allclose(v[:len(own)], own)),
            "swapped": swap.tolist(), "swap_flips_sign": bool(np.allclose(swap, -v[:len(swap)])),
            "seeds_needed": int(np.ceil((2.2 * sd / DELTA) ** 2))}


def digits_table(d: dict, direction: dict, inits: Sequence[str]) -> list[dict]:
    """One digits direction's table, init by init (those that ran, in `inits`' order), then the reference:
    the tuned code length and each candidate's alone (seed means, bits), ΔL against θ0 and against pixels +
    logistic regression (intervals), ECE, the diagnostics of the body's features and LogME."""
    rows = []
    for i in [i for i in inits if i in d["runs"]]:
        r = d["runs"][i]
        rows.append({"init": i, "L": float(np.mean(r["L"])), "dL": None if i == SCRATCH else direction["dL"][i],
                     "dL_ref": direction["dL_ref"][i], "L_config": np.mean(r["L_config"], axis=0).tolist(),
                     "ece": float(np.mean(r["ece"])), "diagnostics": d["diagnostics"].get(i, {}),
                     "logme": d["logme"].get(i)})
    rows.append({"init": "reference", "L": float(np.mean(d["reference"]["L"]))})
    return rows


def candidate_bits(d: dict, inits: Sequence[str]) -> dict:
    """Each candidate alone over every block, and the per-block choice ("tuned"): seed-mean code length of
    each init (bits), candidate name → one value per init."""
    out = {name: [float(np.mean([c[k] for c in d["runs"][i]["L_config"]])) for i in inits]
           for k, name in enumerate(d["hps"])}
    out["tuned"] = [float(np.mean(d["runs"][i]["L"])) for i in inits]
    return out


def digits_details(dig: dict, D: dict) -> dict:
    """The numbers behind the sign of the converged digits body's ΔL (first direction): each candidate alone
    (seed means), the frozen-feature probe on pretrained vs random features, the best body-training candidate
    for the pretrained init, and ΔL had both inits been held to the one candidate that suits θ0 best."""
    fwd = next(iter(D["directions"].values()))
    Lc = {i: np.mean(dig["runs"][i]["L_config"], axis=0) for i in dig["runs"]}
    hps = dig["hps"]
    probe = hps.index("probe")
    remedies = [k for k, h in enumerate(hps) if h != "probe"]
    best = min(remedies, key=lambda k: Lc["pretrained"][k])
    fixed = int(np.argmin(Lc[SCRATCH]))  # the setting θ0 codes best with, applied to both inits
    decision = verdicts.above(fwd["dL"]["pretrained"], 0.0)
    reads = {verdicts.HOLDS: "the whole CI above zero", verdicts.FAILS: "the whole CI below zero"}
    return {"n": dig["n"], "dL": fwd["dL"]["pretrained"], "decision": decision,
            "reads": reads.get(decision.verdict, "the CI contains zero"),
            "sign": "costs" if fwd["dL"]["pretrained"].value < 0 else "saves",
            "bits": fwd["dL"]["pretrained"].value * dig["n"],
            "probe_pretrained": float(Lc["pretrained"][probe]), "probe_scratch": float(Lc[SCRATCH][probe]),
            "best_remedy": hps[best], "best_remedy_bits": float(Lc["pretrained"][best]),
            "scratch_bits": float(np.mean(dig["runs"][SCRATCH]["L"])),
            "reference_bits": float(np.mean(dig["reference"]["L"])), "fixed": hps[fixed],
            "dL_fixed": float(Lc[SCRATCH][fixed] - Lc["pretrained"][fixed]) / dig["n"]}


MOVEMENT_ORDER = ("wte", "wpe")  # then the blocks h.0, h.1, ..., then ln_f and the head


def movement(transfers: Sequence[dict], dig: dict, bodies: Sequence[str]) -> dict:
    """Layer movement in the last fine-tune (‖θ_after − θ_before‖ / ‖θ_before‖): the text bodies' per
    parameter group, mean over targets and seeds (`groups` × `inits` array `text`), the body block that moved
    least per pretrained body (embeddings and blocks, not norms or the head), and the digits MLP's layers
    for θ0, the converged and the early-stopped source (with how far pretraining itself moved them)."""
    m0 = transfers[0]["runs"][SCRATCH]["movement"]
    order = [*MOVEMENT_ORDER, *sorted(g for g in m0 if g.startswith("h.")), "ln_f", "score"]
    groups = [g for g in order if g in m0]
    inits = [i for i in [SCRATCH, *bodies] if transfers[0]["runs"][i].get("movement")]
    text = np.array([[np.mean([np.mean(t["runs"][i]["movement"][g]) for t in transfers]) for g in groups]
                     for i in inits])
    layers = [k for k, g in enumerate(groups) if g in MOVEMENT_ORDER or g.startswith("h.")]
    rows = dict(zip(inits, text))
    least = {i: groups[layers[int(np.argmin(rows[i][layers]))]] for i in bodies if i in rows}
    wte = groups.index("wte")
    return {"groups": groups, "inits": inits, "text": text, "least": least,
            "wte_pretrained": float(np.mean([rows[i][wte] for i in bodies if i in rows])),
            "wte_scratch": float(rows[SCRATCH][wte]),
            "digits": {i: {g: float(np.mean(v)) for g, v in dig["runs"][i]["movement"].items()}
                       for i in (SCRATCH, "pretrained", "early")},
            "digits_pretraining": dig["pretrain_movement"]}


def agreement(S: dict, D: dict) -> dict:
    """What the closing section reads off the findings: our real bodies grouped by the verdict of their
    generality finding, the bodies that beat the shuffled-token one on every target, and the digits
    directions where the converged source cost bits (its transfer finding does not hold)."""
    real = [b for b in S["bodies"] if b != "shuffled"]
    by = {v: [b for b in real if f"score-{b}" in S["findings"] and S["findings"][f"score-{b}"].decision.verdict == v]
          for v in (verdicts.HOLDS, verdicts.OPEN, verdicts.FAILS)}
    beyond = [b for b in real if b in S["vs_shuffled"] and S["vs_shuffled"][b]["decision"].verdict == verdicts.HOLDS]
    names = dict(zip(D["directions"], ("digits-transfer", "digits-transfer-reverse")))
    cost = [k for k, f in names.items() if D["findings"][f].decision.verdict == verdicts.FAILS]
    best = max(real, key=lambda b: S["scores"][b]["score"]) if real else None
    return {"real": real, "general": by[verdicts.HOLDS], "open": by[verdicts.OPEN], "not_general": by[verdicts.FAILS],
            "beyond_shuffled": beyond, "digits_cost": cost, "best": best}


def digits_label(init: str, d: dict) -> str:
    """How the chapter names an init of a digits record `d` (its source half and training length)."""
    src = d["source_task"].split("/")[1]
    return {SCRATCH: "θ0 (random)", CONTROL: "θ0′ (2nd random init)", "pretrained": f"{src}, to convergence",
            "early": f"{src}, stopped at {d['source_steps']['early']} steps",
            "pretrained-rescaled": f"{src} converged, features rescaled", "random-labels": f"{src} with shuffled labels",
            "reference": "pixels + logistic regression"}.get(init, f"{src}, stopped at {d['source_steps'].get(init)} steps")
