"""Chapter 4's aggregations (book/generality.md): what the chapter prints about the results of
`experiments.generality` — the source → target ΔL matrix against θ0 and against the reference with no
pretraining, each body's generality score with a CI clustered by target, the seed-vs-seed control as an
equivalence test, the three estimators side by side, the effective data transferred D_T and its exponent,
the rank correlation of LogME with ΔL, the code/prose square of text bodies run both ways, and the digits
in both directions. Pure functions of those results: nothing here trains.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from decoupling.core import intervals, measures
from decoupling.core.prequential import CONTROL, SCRATCH


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
    (task, dataset) pairs of the suite, each pair's value the mean over its seeds. The 95% CI is clustered
    by target (`intervals.clustered_ci`: a Student-t interval over the target means): runs on one target
    share its difficulty, so treating runs as independent would make an integral over tasks look more
    certain than it is, and a percentile bootstrap over 2–6 values covers too rarely. key="dL_ref_per_label":
    the same against the reference with no pretraining. Per task family means are reported beside it."""
    mine = [r for r in rows if r["init"] == init and r.get(key) is not None]
    if not mine:
        return {"init": init, "score": float("nan"), "ci": [float("nan")] * 2, "n_cells": 0, "n_runs": 0,
                "families": {}}
    per_target = {r["target"]: r[key] for r in mine}
    c = intervals.clustered_ci(per_target)
    fam: dict[str, list[float]] = {}
    for r in mine:
        fam.setdefault(task_family(r["target"]), []).append(float(np.mean(r[key])))
    return {"init": init, "score": c["value"], "ci": [c["lo"], c["hi"]], "n_cells": len(mine),
            "n_runs": sum(len(v) for v in per_target.values()), "families": {k: float(np.mean(v)) for k, v in fam.items()},
            "p": c["p"], "equivalence": measures.equivalence(c["lo"], c["hi"])}


def pooled_ci(values) -> dict:
    """Mean and Student-t 95% CI of values from one target (one value per seed), with its t-test p."""
    ci = intervals.mean_ci(np.asarray(values, float))
    return {"mean": ci.value, "ci": [ci.lo, ci.hi], "n": len(values), "p": ci.p}


def clustered(per_target: dict) -> dict:
    """`pooled_ci`'s format for an average over targets: the t interval over target means."""
    c = intervals.clustered_ci({t: np.asarray(v, float) for t, v in per_target.items()})
    return {"mean": c["value"], "ci": [c["lo"], c["hi"]], "n": sum(len(v) for v in per_target.values()), "p": c["p"]}


def diff_ci(a, b) -> dict:
    """mean(a) − mean(b) for two independent samples (e.g. ΔL per label of two transfer directions over
    their seeds), with Welch's t 95% CI."""
    c = intervals.diff_ci(a, b)
    return {"mean": c.value, "ci": [c.lo, c.hi], "n": [len(np.ravel(a)), len(np.ravel(b))], "p": c.p}


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
    (a within-pair least-squares slope of log D_T on log n, the fixed-effects estimator), with a bootstrap
    CI over pairs. A pair enters with ≥ `min_points` finite, positive D_T points: through two points any
    power law fits, so two points test nothing about the form. No pair → α is NaN."""
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
        return float(sxy / sxx) if sxx > 0 else float("nan")

    if not groups:
        return {"alpha": float("nan"), "ci": [float("nan")] * 2, "pairs": 0, "points": 0}
    # the bootstrap resamples pairs: it draws indices into `groups` (each n ≥ 3 distinct sizes, so every
    # resample's slope is finite)
    ci = measures.bootstrap_ci(np.arange(len(groups)), stat=lambda ix: slope([groups[int(i)] for i in ix]),
                               n_boot=n_boot, seed=seed)
    return {"alpha": ci.value, "ci": [ci.lo, ci.hi] if len(groups) > 1 else [float("nan")] * 2,
            "pairs": len(groups), "points": int(sum(len(x) for x, _ in groups))}


def spearman(a, b) -> float:
    from scipy.stats import spearmanr
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def logme_vs_dl(rows: Sequence[dict]) -> dict:
    """Rank correlation of the cheap proxy (LogME on frozen features) with the measured ΔL: per target
    across its bodies (how LogME is used: to rank candidate models for one task), averaged, and pooled."""
    per_target = {}
    for t in sorted({r["target"] for r in rows}):
        # one family of bodies per target (ours share θ0; MiniLM's θ0 is a different network)
        rs = [r for r in rows if r["target"] == t and r["logme"] is not None and r["init"] != CONTROL
              and r["body"] == "ours"]
        # θ0 itself is a candidate too: its ΔL is 0 by definition
        xs = [r["logme"] for r in rs] + [rs[0]["logme_scratch"]] if rs else []
        ys = [float(np.mean(r["dL_per_label"])) for r in rs] + [0.0] if rs else []
        per_target[t] = spearman(xs, ys)
    pooled = [(r["logme"] - r["logme_scratch"], float(np.mean(r["dL_per_label"]))) for r in rows
              if r["logme"] is not None and r["logme_scratch"] is not None and r["init"] != CONTROL]
    vals = [v for v in per_target.values() if np.isfinite(v)]
    return {"per_target": per_target, "mean_per_target": float(np.mean(vals)) if vals else float("nan"),
            "pooled": spearman([p[0] for p in pooled], [p[1] for p in pooled]), "n_pooled": len(pooled)}


# Each text body's own domain's target: the code LM's is code → package (snippets of code), the prose LM's
# docstring → package (English about code). Run both ways, the two bodies on the two targets are the text
# square of the source → target matrix.
HOME = {"code": "code/module", "prose": "prose/topic"}


def home_advantage(rows: Sequence[dict], home: dict | None = None) -> dict:
    """The text pair run both ways: on each body's home target (`HOME`), its ΔL per label minus the other
    body's, seed by seed — the same θ0, head init, examples and order per seed, so the difference is
    (L_other − L_home) / n of that seed and the θ0 terms cancel — with a Student-t 95% CI over the
    seeds. A direction appears only where both bodies ran on that target.

    Verdict of "each body gives the larger ΔL on its own domain's target": "holds" when every direction of
    `home` ran and each CI lies above 0; "does not hold" when some direction's CI lies below 0 (a body
    pretrained elsewhere codes a domain's labels in fewer bits than the body pretrained on it); otherwise
    "inconclusive" (a missing direction included: one way alone cannot show the pattern). `deciding`
    names the direction that settles it: the one below 0 when the verdict is "does not hold", else the one
    with the lowest CI bound."""
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
                                  **pooled_ci([x - y for x, y in zip(a, b)])}
    if not directions:
        return {"directions": {}, "complete": False, "verdict": "inconclusive", "deciding": None}
    complete = len(directions) == len(home)
    against = [t for t, d in directions.items() if d["ci"][1] < 0]
    if against:
        verdict, deciding = "does not hold", min(against, key=lambda t: directions[t]["ci"][1])
    else:
        deciding = min(directions, key=lambda t: directions[t]["ci"][0])
        verdict = "holds" if complete and all(d["ci"][0] > 0 for d in directions.values()) else "inconclusive"
    return {"directions": directions, "complete": complete, "verdict": verdict, "deciding": deciding}


def summarize(transfers: Sequence[dict], minilm: dict | None = None, n_boot: int = 2000,
              references: Sequence[dict] | None = None) -> dict:
    """Everything the chapter prints about the text grid: per-cell rows, the ΔL matrix (bits per label,
    seed mean) against θ0 and against the reference, each body's generality score against both (CIs
    clustered by target), the seed-vs-seed controls, the three estimators side by side, D_T per (body,
    target) with the pooled exponent, and LogME ↔ ΔL."""
    rows = cells(transfers, minilm, references)
    ours = [r for r in rows if r["body"] == "ours"]
    mini = [r for r in rows if r["body"] != "ours"]
    inits = list(dict.fromkeys(r["init"] for r in ours))
    targets = [t["target"] for t in transfers]

    def seed_mean(rs, init, key):
        return {r["target"]: float(np.mean(r[key])) for r in rs if r["init"] == init and r.get(key) is not None}

    matrix = {i: seed_mean(ours, i, "dL_per_label") for i in inits}
    matrix_ref = {i: seed_mean(ours, i, "dL_ref_per_label") for i in inits if i not in (CONTROL,)}
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
    three = {}
    for label, rs in [(i, [r for r in ours if r["init"] == i]) for i in inits] + (
            [("minilm", [r for r in mini if r["init"] == "minilm"])] if mini else []):
        three[label] = {k: clustered({r["target"]: r[k] for r in rs})
                        for k in ("essay_kl", "reverse_kl", "gain", "dL_per_label")}
    dts = {}
    for t in transfers:
        for i in t["pairs"]:
            if i not in (CONTROL,):
                dts[(i, t["target"])] = effective_data(t, i)
    for t in (minilm or {}).get("targets", {}).values():
        dts[("minilm", t["target"])] = effective_data(t, "minilm")
    real = [v for (i, _), v in dts.items() if i not in (CONTROL, "shuffled")]
    # each body against the shuffled-token body, run by run (same θ0, seed and examples): domain knowledge
    # beyond what any pretraining run gives (token statistics, LayerNorm'd features, calibration)
    vs_shuffled = {}
    if "shuffled" in inits:
        sh = {r["target"]: r["dL_per_label"] for r in ours if r["init"] == "shuffled"}
        for i in inits:
            if i not in (CONTROL, "shuffled"):
                vs_shuffled[i] = clustered({r["target"]: [a - b for a, b in zip(r["dL_per_label"], sh[r["target"]])]
                                            for r in ours if r["init"] == i})
    return {"rows": rows, "targets": targets, "inits": inits, "matrix": matrix, "matrix_ref": matrix_ref,
            "scores": scores, "scores_ref": scores_ref, "three_ways": three, "home": home_advantage(ours),
            "dt": {f"{i} -> {t}": v for (i, t), v in dts.items()},
            "dt_fit": fit_dt_pooled(real, n_boot), "logme": logme_vs_dl(rows), "vs_shuffled": vs_shuffled}


def digits_summary(runs: Sequence[dict]) -> dict:
    """The digits in every direction run: per direction and source, ΔL per label against θ0 and against
    pixels + logistic regression (t intervals over seeds); ΔL against source-training steps; the
    seed-vs-seed control as an equivalence test; the asymmetry (converged source, one direction minus the
    other); and the paired cost of training the source longer (converged minus early-stopped, seed by seed:
    the same θ0, examples and head init, so the difference is the extra source training alone)."""
    out: dict = {"directions": {}}
    for d in runs:
        key = f"{d['source_task']} -> {d['target']}"
        n = d["n"]
        per = {i: [v / n for v in p["dL"]] for i, p in d["pairs"].items()}
        ref = {i: vs_reference(d, i, d["reference"]) for i in d["runs"]}
        ctrl = pooled_ci(per[CONTROL])
        steps = sorted(d["source_steps"].items(), key=lambda kv: kv[1])
        out["directions"][key] = {
            "source": d["source_task"], "target": d["target"], "n": n,
            "dL": {i: pooled_ci(v) for i, v in per.items()},
            "dL_ref": {i: pooled_ci(v) for i, v in ref.items()},
            "control": {**ctrl, "equivalence": measures.equivalence(*ctrl["ci"])},
            "steps": [{"init": i, "steps": k, **pooled_ci(per[i])} for i, k in steps],
            "longer_source": pooled_ci([a - b for a, b in zip(per["pretrained"], per["early"])]),
        }
    keys = list(out["directions"])
    if len(keys) == 2:
        a, b = (out["directions"][k] for k in keys)
        pa = [v / a["n"] for v in runs[0]["pairs"]["pretrained"]["dL"]]
        pb = [v / b["n"] for v in runs[1]["pairs"]["pretrained"]["dL"]]
        out["asymmetry"] = {"pair": keys, **diff_ci(pa, pb)}
    return out
