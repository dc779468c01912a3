"""What the zoo's records say: the findings over (model, target) cells, the like-with-like leaderboard, and
every number, table and figure series the pages show of them.

Kept apart from `experiments.zoo` so that the statistics can change without changing the records' keys (and
`zoo` must never import this module). Everything here reads the records `zoo.zoo_cell` and
`zoo.zoo_reference` return; nothing trains. Used by book/leaderboard.md and book/generality.md (its section
on real platforms); each page cell makes one call here and shows what comes back.

Conventions. A *paired difference* of rows a and b on a target is, per run r that both coded,
(L_b(r) − L_a(r)) / n bits per label: positive when a codes the labels in fewer bits. Both rows coded the
same examples in the same order (the run fixes them), so the difference is paired on identical blocks.
Intervals are over runs within a target (Student-t, `core.intervals.mean_ci`). Averages over targets (the
leaderboard's score, a group's mean) are shown with a clustered interval (targets first), but no finding is
decided by one: the targets are a fixed suite of six, not a sample of tasks, so a claim about a group of them
is decided target by target (`core.verdicts.on_every`: it holds when it holds on every target, does not hold
when some target's interval lies wholly on the other side). Sentiment targets are decided apart from the code
and prose ones, because a lab model's training data may hold text like theirs (all-MiniLM-L6-v2's and
all-mpnet-base-v2's cards list code-search and question-answering corpora; SmolLM2 was trained on code and
web text): a gain there may be memory of similar text rather than transfer.
"""
from __future__ import annotations

import math

import numpy as np

from decoupling.core import intervals, verdicts
from decoupling.core.grids import GridUse, grid_use
from decoupling.core.intervals import Interval
from decoupling.core.prequential import CONTROL, SCRATCH
from decoupling.core.verdicts import Finding
from decoupling.experiments import zoo
from decoupling.experiments.zoo import BODIES, LAB, PRETRAINED, SENTIMENT, TARGETS
from decoupling.pipeline.page import fmt_grid_use, fmt_interval

REFERENCE = "tfidf"
LABEL = {"minilm": "all-MiniLM-L6-v2", "mpnet": "all-mpnet-base-v2", "smollm2": "SmolLM2-135M-Instruct (Q4_1)",
         "body:code": "code LM (ours, smoke size)", "body:prose": "prose LM (ours, smoke size)",
         REFERENCE: "TF-IDF + logistic regression"}
CODE_PROSE = tuple(t for t in TARGETS if t not in SENTIMENT)
# Computed at full beside TARGETS, never pooled with them: code/module's question on code no lab model can
# have read (decoupling.data.unexposed); the findings' suites stay the exposed targets.
EXPOSED = "code/module"  # CPython's standard library: text every lab model of the zoo has most likely read
UNEXPOSED = ("code/agents",)
GROUPS = {"sentiment": SENTIMENT, "code & prose": CODE_PROSE}
KEY = {"sentiment": "sentiment", "code & prose": "code-prose"}  # a group's name inside a finding's name
MARGIN = 0.05  # bits per label (or per held-out example): the book's equivalence bound, measures.DELTA_BITS
RHO = 0.5  # a rank correlation above this: "ranks the way the bits do"
FULL = ("full",)  # the zoo's findings are decided at `full` (a smoke zoo has a few dozen labels per target)


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

    def first(self, model: str) -> dict:
        """The model's cell on the first target it has (what every cell of a model shares: size, runs)."""
        return next(c for (m, _), c in self.cells.items() if m == model)


def label(row: str) -> str:
    """A row's name on the pages: "all-mpnet-base-v2", "all-mpnet-base-v2 — random init"."""
    model, _, init = row.partition("@")
    return LABEL.get(model, model) + (" — random init" if init == SCRATCH else "")


# ================================================================================== one comparison
def compare(z: Zoo, a: str, b: str, targets=None) -> dict:
    """a against b: per target an `Interval` (mean over runs, t interval), and the mean over a group's
    targets and over all of them with a clustered interval (shown, never decided on)."""
    targets = [t for t in (targets or TARGETS) if t in z.common_targets(a, b)]
    per = {t: z.paired(a, b, t) for t in targets}
    out = {"a": a, "b": b, "per_target": {t: intervals.mean_ci(v) for t, v in per.items()}}
    out["groups"] = {g: intervals.clustered_ci({t: per[t] for t in ts if t in per}) for g, ts in GROUPS.items()
                     if any(t in per for t in ts)}
    out["all"] = intervals.clustered_ci(per) if per else None
    return out


def group_parts(cmp: dict, group: str) -> dict[str, Interval]:
    """The per-target intervals of a comparison on one group's targets: what `on_every` decides on."""
    return {t: iv for t, iv in cmp["per_target"].items() if t in GROUPS[group]}


def vs_reference(z: Zoo, model: str) -> dict:
    """Is the platform worth using? Its probes against TF-IDF + logistic regression on the same blocks."""
    return compare(z, model, REFERENCE)


def vs_twin(z: Zoo, model: str) -> dict:
    """ΔL = L(θ0) − L(θP) per label, against the model's own random twin."""
    return compare(z, model, f"{model}@{SCRATCH}")


def control(z: Zoo, model: str) -> dict:
    """θ0′ against θ0 (two random inits of the model's architecture): per target the paired difference and
    its equivalence decision (two one-sided tests at 5%: the 90% t interval inside ±MARGIN holds)."""
    a, b = f"{model}@{CONTROL}", f"{model}@{SCRATCH}"
    out = compare(z, a, b)
    out["equivalence"] = {t: verdicts.equivalent(z.paired(a, b, t), MARGIN) for t in out["per_target"]}
    out["equivalent"] = sum(d.verdict == verdicts.HOLDS for d in out["equivalence"].values())
    return out


def larger_vs_smaller(z: Zoo, larger: str = "mpnet", smaller: str = "minilm") -> dict:
    """Does the bigger, better-pretrained platform give more bits? Paired on identical blocks."""
    return compare(z, larger, smaller)


def scale_of_pretraining(z: Zoo, big: str = "smollm2", bodies=BODIES) -> dict:
    """SmolLM2 (trained on trillions of tokens of code and prose) against the book's code and prose bodies
    on the code and prose targets: what far larger pretraining buys under the same probe."""
    return {b: compare(z, big, b, CODE_PROSE) for b in bodies if b.split("@")[0] in z.models}


def platform_serves_tasks(z: Zoo, model: str = "mpnet") -> dict[str, Interval]:
    """One frozen platform with a linear head per task against each task's specialist (TF-IDF + logistic
    regression fitted on that task), on the held-out rows: per target, the platform's minus the specialist's
    bits per held-out example of the fits on all n coded labels, paired by run (t interval)."""
    per = {}
    for t in z.common_targets(model, REFERENCE):
        c, r = z.cells[(model, t)], z.refs[t]
        mine = dict(zip(c["runs_seeds"], (b[-1] for b in c["runs"][PRETRAINED]["test_bits"])))
        spec = dict(zip(r["runs_seeds"], (b[-1] for b in r["test_bits"])))
        per[t] = intervals.mean_ci([mine[k] - spec[k] for k in sorted(set(mine) & set(spec))])
    return per


# ================================================================================== rank correlations
def spearman(x, y) -> float:
    """Spearman's rho; NaN where a side is constant (no ranking to compare)."""
    from scipy.stats import spearmanr
    if len(set(map(float, x))) < 2 or len(set(map(float, y))) < 2:
        return math.nan
    return float(spearmanr(x, y).statistic)


def rank_interval(x, y) -> Interval:
    """Spearman's rho over n pairs with its 95% interval by Fisher's z, with the standard error
    1.03/sqrt(n − 3) that Fieller, Hartley & Pearson (1957) give for Spearman's rho, and `p` against rho = 0.
    It treats the n pairs as independent. Fewer than 5 pairs (or a constant side): no interval, (−1, 1).
    (`core.verdicts` tests another threshold by reading the interval's two sides as a normal interval's,
    which decides exactly as the interval does.)"""
    n = len(x)
    rho = spearman(x, y) if n > 2 else math.nan
    if n < 5 or not np.isfinite(rho):
        return Interval(rho, -1.0, 1.0, 0.95, n, math.nan, "fisher-z")
    from scipy.stats import norm
    zr, se = float(np.arctanh(np.clip(rho, -0.9999, 0.9999))), 1.03 / math.sqrt(n - 3)
    p0 = float(2 * norm.sf(abs(zr) / se))  # against no correlation, on the z scale the interval is built on
    return Interval(rho, float(np.tanh(zr - 1.96 * se)), float(np.tanh(zr + 1.96 * se)), 0.95, n, p0, "fisher-z")


def _mean(v) -> float:
    return float(np.mean(v))


def kl_vs_bits(z: Zoo) -> dict:
    """The essay's KL(q0 ‖ qP) against ΔL over every (model, target) cell (Spearman's rho with its interval),
    with what explains it: the seed-vs-seed floor (the same KL between θ0 and θ0′, which share no
    pretraining), how much the random twin's probe learned (log2 K minus its held-out bits per example: near
    0 when θ0 stays near an uninformed guess) and how much the pretrained probe learned (the same for θP)."""
    rows = []
    for (m, t), c in z.cells.items():
        log_k = math.log2(c["K"])
        rows.append({"model": m, "target": t,
                     "kl": _mean([k[-1] for k in c["pairs"][PRETRAINED]["essay_kl"]]),
                     "floor": _mean([k[-1] for k in c["pairs"][CONTROL]["essay_kl"]]),
                     "dL": _mean(z.paired(m, f"{m}@{SCRATCH}", t)),
                     "twin_learned": log_k - _mean([b[-1] for b in c["runs"][SCRATCH]["test_bits"]]),
                     "pretrained_learned": log_k - _mean([b[-1] for b in c["runs"][PRETRAINED]["test_bits"]])})
    col = {k: [r[k] for r in rows] for k in ("kl", "floor", "dL", "twin_learned", "pretrained_learned")}
    neg = [r for r in rows if r["dL"] < 0]
    most = max(rows, key=lambda r: r["twin_learned"]) if rows else None
    return {"cells": rows, "rho": rank_interval(col["kl"], col["dL"]), "n": len(rows),
            "models": len({r["model"] for r in rows}), "targets": len({r["target"] for r in rows}),
            "above_floor": sum(r["kl"] > r["floor"] for r in rows),
            "rho_learned": spearman(col["kl"], col["pretrained_learned"]) if len(rows) > 2 else math.nan,
            "twin_learned_median": float(np.median(col["twin_learned"])) if rows else math.nan,
            "pretrained_learned_median": float(np.median(col["pretrained_learned"])) if rows else math.nan,
            "twin_learned_most": most,
            "negative_dL": len(neg), "negative_dL_models": sorted({r["model"] for r in neg}),
            "negative_dL_kl": (min((r["kl"] for r in neg), default=math.nan),
                               max((r["kl"] for r in neg), default=math.nan)),
            "negative_dL_kl_above_floor": sum(r["kl"] > r["floor"] for r in neg)}


def later_bits(c: dict, init: str) -> list[float]:
    """Per run, the bits per label of the labels a cell's proxies never read: the blocks sent after the
    run's first `proxy_labels` labels (`zoo.proxy_labels`), under the init's chosen probes."""
    seen, ends = c["proxy_labels"], c["ends"]
    later = [i + 1 for i, e in enumerate(ends[:-1]) if e >= seen]  # block i+1 holds labels ends[i]..ends[i+1]
    return [sum(bb[i] for i in later) / (c["n"] - seen) for bb in c["runs"][init]["block_bits"]]


def _proxy_mean(c: dict, field: str, init: str, proxy: str) -> float | None:
    """A proxy of one init averaged over the cell's runs (runs where it failed left out; None if all did)."""
    v = [c[field][str(r)][init].get(proxy) for r in c["runs_seeds"]]
    v = [x for x in v if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def proxies_vs_bits(z: Zoo, proxy: str = "logme", first: bool = True) -> dict[str, Interval]:
    """Do LogME / the H-score rank candidate features the way the code length does? Per target, every
    row's pretrained features and its random twin's are candidates (LogME is comparable only within a
    target); Spearman's rho between the proxy and minus the bits per label, each averaged over the cell's
    runs, with its Fisher interval over the candidates.

    first=True (what the finding decides on): the proxy read only each run's first labels
    (`zoo.proxy_labels`) and is set against the bits of the labels sent after them (`later_bits`), which it
    never saw: a score from labels in hand against the code length of the labels to come. first=False: the
    proxy read all n coded labels and is set against the code length of those same labels (in-sample, shown
    beside it). Cells without the first-labels proxies (records made before them) are left out."""
    field = "proxies_first" if first else "proxies"
    per = {}
    for t in TARGETS:
        xs, ys = [], []
        for m in z.models:
            c = z.cells.get((m, t))
            if c is None or field not in c:
                continue
            for init, row in ((PRETRAINED, m), (SCRATCH, f"{m}@{SCRATCH}")):
                p = _proxy_mean(c, field, init, proxy)
                if p is not None:
                    xs.append(p)
                    ys.append(-_mean(later_bits(c, init)) if first else -_mean(list(z.L(row, t).values())) / z.n(t))
        if len(xs) >= 4:
            per[t] = rank_interval(xs, ys)
    return per


# ================================================================================== the leaderboard
def leaderboard(z: Zoo, rows: list[str] | None = None) -> dict:
    """Rows ranked by their advantage over TF-IDF + logistic regression (the one reference every row is
    coded against on identical blocks), averaged over targets. Only rows measured on every target are
    ranked; the others are listed apart. Between ranked neighbours: their paired difference with its
    interval (does the order between them mean anything?)."""
    rows = rows or [*z.models, *(f"{m}@{SCRATCH}" for m in z.models)]
    full, partial = [], []
    for r in rows:
        (full if len(z.targets_of(r)) == len(TARGETS) else partial).append(r)
    score = {r: compare(z, r, REFERENCE) for r in rows}
    ranked = sorted(full, key=lambda r: -score[r]["all"].value)
    gaps = [compare(z, a, b) for a, b in zip(ranked, ranked[1:])]
    return {"ranked": ranked, "apart": partial, "score": score, "gaps": gaps}


def board_table(z: Zoo, board: dict) -> tuple[list[str], list[list]]:
    """The leaderboard as (header, rows): rank, row, score vs TF-IDF, ΔL vs its twin, size, gap below."""
    rows = []
    for i, r in enumerate(board["ranked"]):
        model, _, init = r.partition("@")
        gap = board["gaps"][i]["all"] if i < len(board["gaps"]) else None
        rows.append([i + 1, label(r), fmt_interval(board["score"][r]["all"]),
                     "0 (itself)" if init else fmt_interval(vs_twin(z, model)["all"]),
                     f"{z.first(model)['platform']['n_params'] / 1e6:.1f}M", fmt_interval(gap)])
    return (["rank", "row", "score vs TF-IDF (bits/label)", "ΔL vs its random twin", "parameters",
             "minus the row below (paired)"], rows)


def per_target_table(board: dict) -> tuple[list[str], list[list]]:
    """Each row's bits per label against TF-IDF on each target (mean over runs)."""
    def cell(r, t):
        iv = board["score"][r]["per_target"].get(t)
        return f"{iv.value:+.3f}" if iv is not None else "–"
    return (["row"] + [f"`{t}`" for t in TARGETS],
            [[label(r)] + [cell(r, t) for t in TARGETS] for r in [*board["ranked"], *board["apart"]]])


def inputs_table(z: Zoo) -> tuple[list[str], list[list]]:
    """What each target gave every row: labels coded, classes, texts read, how many the budget cut."""
    refs = [z.refs[t] for t in TARGETS if t in z.refs]
    return (["target", "labels coded", "classes", "texts read (train + test)", "texts cut", "tokens at most"],
            [[f"`{r['target']}`", r["n"], r["K"], f"{r['rows']} + {r['n_test']}", r["cut_train"] + r["cut_test"],
              r["max_tokens"]] for r in refs])


def per_target_figure(board: dict) -> dict[str, dict]:
    """The bars of the per-target figure: for each ranked row, its mean and error bars on every target."""
    out = {}
    for r in board["ranked"]:
        per = [board["score"][r]["per_target"][t] for t in TARGETS]
        out[label(r)] = {"value": [iv.value for iv in per], "below": [iv.value - iv.lo for iv in per],
                         "above": [iv.hi - iv.value for iv in per]}
    return out


def about(z: Zoo) -> dict:
    """The numbers the pages state about the zoo they show: models, targets, labels, runs, test rows, the
    common token budget and the size of our bodies."""
    t0 = TARGETS[0]
    bodies = [z.first(m) for m in z.models if zoo.is_body(m)]
    return {"models": len(z.models), "targets": len(TARGETS), "labels": z.n(t0),
            "runs": {label(m): len(z.first(m)["runs_seeds"]) for m in z.models},
            "n_test": z.refs[t0]["n_test"] if t0 in z.refs else z.first(z.models[0])["n_test"],
            "max_tokens": z.first(z.models[0])["max_tokens"],
            "body_profile": bodies[0]["platform"]["body_profile"] if bodies else None}


def apart(z: Zoo, board: dict) -> list[str]:
    """The rows measured on fewer than all targets, each with its count of targets."""
    return [f"{label(r)} ({len(z.targets_of(r))} targets)" for r in board["apart"]]


PROXY_NAME = {"logme": "LogME", "h_score": "H-score"}


def proxy_table(z: Zoo, proxies=("logme", "h_score")) -> tuple[list[str], list[list]]:
    """Per target, each proxy's rank correlation with minus the bits per label and its interval: read on the
    first labels against the bits of the later ones (what the finding decides on), then LogME in-sample
    (on all the coded labels, against their own code length)."""
    cols = [(p, True) for p in proxies] + [("logme", False)]
    per = {(p, f): proxies_vs_bits(z, p, f) for p, f in cols}
    head = [f"ρ ({PROXY_NAME.get(p, p)}, first labels → later bits)" if f else
            f"ρ ({PROXY_NAME.get(p, p)}, all labels → their bits)" for p, f in cols]
    return (["target"] + head, [[f"`{t}`"] + [fmt_interval(per[c].get(t), 2) for c in cols] for t in TARGETS])


# ================================================================================== exposed and unexposed code


def exposure(z: Zoo, exposed: str = EXPOSED, unexposed: str = UNEXPOSED[0]) -> dict | None:
    """The leaderboard's per-target quantity, bits per label saved against TF-IDF + logistic regression on
    identical blocks ((L_ref − L_row) / n, paired by run), on the code target the lab models have most likely
    read (`exposed`) and on the one none of them can have read (`unexposed`, decoupling.data.unexposed), side
    by side for every leaderboard row that has both: each model and its random twin.

    Per row: "exposed" and "unexposed", a t interval over the runs of each target (`intervals.mean_ci`), and
    "difference", exposed minus unexposed with Welch's interval (`intervals.diff_ci`): the two targets code
    different examples, so their runs are not paired. Positive: the row gains more over TF-IDF on the code it
    may have read. A random twin read nothing, so its difference is what the two targets alone make of the
    comparison. A description: it decides nothing, and the unexposed target stays outside every finding's
    suite. Also "K" and "n" per target (classes and labels coded per run; the bits per label of the two
    targets are on scales of log2 K each). None where the records hold no row measured on both (every
    profile but `full`)."""
    targets = (exposed, unexposed)

    def has(row: str) -> bool:
        model = row.split("@")[0]
        return all((model, t) in z.cells and t in z.refs for t in targets)

    rows = [r for r in [*z.models, *(f"{m}@{SCRATCH}" for m in z.models)] if has(r)]
    if not rows:
        return None
    out = {}
    for r in rows:
        a, b = z.paired(r, REFERENCE, exposed), z.paired(r, REFERENCE, unexposed)
        out[r] = {"exposed": intervals.mean_ci(a), "unexposed": intervals.mean_ci(b),
                  "difference": intervals.diff_ci(a, b)}
    return {"exposed": exposed, "unexposed": unexposed, "rows": out,
            "K": {t: z.refs[t]["K"] for t in targets}, "n": {t: z.n(t) for t in targets}}


def exposure_table(ex: dict) -> tuple[list[str], list[list]]:
    """`exposure` as (header, rows): per row its saving against TF-IDF on each code target and the
    difference, each with its 95% interval."""
    e, u = ex["exposed"], ex["unexposed"]
    return (["row", f"`{e}` (read): bits/label vs TF-IDF", f"`{u}` (unread): bits/label vs TF-IDF",
             f"`{e}` − `{u}` (Welch)"],
            [[label(r), fmt_interval(v["exposed"]), fmt_interval(v["unexposed"]), fmt_interval(v["difference"])]
             for r, v in ex["rows"].items()])


# ================================================================================== the grids
def grid_value(name: str) -> float:
    """The number a candidate's name stands for: a probe's learning rate ("probe-lr5e-2": `zoo.PROBE_GRID`)
    or the reference's C ("C=10": `baselines`' names)."""
    lrs = {h.name: h.lr for h in zoo.PROBE_GRID}
    if name in lrs:
        return lrs[name]
    return float(name.split("=", 1)[1] if name.startswith("C=") else name.rsplit("lr", 1)[1])


def grid_report(z: Zoo, by: str = "blocks") -> dict[str, GridUse]:
    """How often each value of its grid each row chose (`core.grids.grid_use`), pooled over runs and
    targets: every model's pretrained init, its random twin ("model@scratch") and its second random init
    ("model@scratch-seed"), and the reference ("tfidf").

    by="blocks": the value each block was coded with; only blocks that had a choice count (the first coded
    block, with nothing seen to choose on, always takes candidate 0). by="runs": per run, the value whose code
    length as if it had coded every block (`L_config`) is the shortest — the best single value, less noisy
    than a block's choice, which is made on one block and paid on the next. Records without `L_config` (a
    reference made before it was kept) are left out of "runs"."""
    if by not in ("blocks", "runs"):
        raise ValueError(f"by is 'blocks' or 'runs', not {by!r}")
    chosen: dict[str, list] = {}
    grids: dict[str, set] = {}

    def add(row: str, names: list, rec: dict, picks) -> None:
        if by == "runs":
            picks = [names[int(np.argmin(lc))] for lc in rec.get("L_config", [])]
        chosen.setdefault(row, []).extend(map(grid_value, picks))
        grids.setdefault(row, set()).update(map(grid_value, names))
    for (m, _), c in z.cells.items():
        for init, rec in c["runs"].items():
            row = m if init == PRETRAINED else f"{m}@{init}"
            add(row, c["hps"], rec, [h for run in rec["choices"] for h in run[1:]])
    for r in z.refs.values():
        add(REFERENCE, r["hps"], r, [r["hps"][h] for run in r["choices"] for h in run[1:]])
    return {row: grid_use({row: v}, sorted(grids[row]))[row] for row, v in chosen.items()}


def grid_label(row: str) -> str:
    """A row of the grid report on the pages: `label`, and the second random init named as such."""
    return label(row) + (" — second random init" if row.endswith(f"@{CONTROL}") else "")


def grid_table(z: Zoo) -> tuple[list[str], list[list]]:
    """The grid report as (header, rows): per row, the blocks that chose each value and the runs whose best
    single value it was, each marked "(edge)" where an edge of the grid won."""
    blocks, runs = grid_report(z, "blocks"), grid_report(z, "runs")
    rows = [[grid_label(r), fmt_grid_use(u), fmt_grid_use(runs[r]) if runs[r].blocks else "–"]
            for r, u in blocks.items()]
    return ["row", "blocks coded with each value (most in bold)", "runs whose best single value it was"], rows


# ================================================================================== the platforms' table
def platforms_table(z: Zoo) -> tuple[list[str], list[list]]:
    """Per model: ΔL vs its twin over all targets, vs TF-IDF per group (means with clustered intervals,
    shown), and on how many targets the θ0′ control was shown equivalent."""
    rows = []
    for m in z.models:
        ref, ctl = vs_reference(z, m), control(z, m)
        groups = [fmt_interval(ref["groups"].get(g)) for g in GROUPS]
        rows.append([LABEL[m], fmt_interval(vs_twin(z, m)["all"]), *groups,
                     f"{ctl['equivalent']} of {len(ctl['per_target'])}"])
    return (["row", "ΔL vs random twin (6 targets)", "vs TF-IDF: sentiment (4)", "vs TF-IDF: code & prose (2)",
             "θ0′ control equivalent (±0.05)"], rows)


def controls_all_equivalent(z: Zoo) -> bool:
    """Was the θ0′ control shown equivalent on every target of every model?"""
    return all(c["equivalent"] == len(c["per_target"]) for c in (control(z, m) for m in z.models))


def larger_table(z: Zoo) -> tuple[list[str], list[list]]:
    big = larger_vs_smaller(z)
    return (["target", "mpnet − MiniLM: bits/label saved (paired runs)"],
            [[f"`{t}`", fmt_interval(iv)] for t, iv in big["per_target"].items()])


def scale_table(z: Zoo) -> tuple[list[str], list[list]]:
    sm = scale_of_pretraining(z)
    return (["SmolLM2 − …", *[f"`{t}`" for t in CODE_PROSE]],
            [[LABEL[b]] + [fmt_interval(c["per_target"].get(t)) for t in CODE_PROSE] for b, c in sm.items()])


def serves_table(z: Zoo) -> tuple[list[str], list[list]]:
    return (["target", "mpnet probe − TF-IDF specialist: held-out bits/example"],
            [[f"`{t}`", fmt_interval(iv)] for t, iv in platform_serves_tasks(z).items()])


def kl_figure(z: Zoo) -> dict:
    """The points of the KL-vs-ΔL figure: per model (its label) the cells' KL and ΔL; the floors."""
    kv = kl_vs_bits(z)
    per = {LABEL[m]: {"kl": [r["kl"] for r in kv["cells"] if r["model"] == m],
                      "dL": [r["dL"] for r in kv["cells"] if r["model"] == m]} for m in z.models}
    return {"models": per, "floor": [r["floor"] for r in kv["cells"]]}


# ================================================================================== the findings
ESSAY_BEATS = ("a pretrained platform gives a new task information a model trained from scratch lacks; for a "
               "practitioner it is worth using only if it beats a competent model with no pretraining")


def beats_reference(z: Zoo, model: str, group: str) -> Finding:
    """`<model>-beats-reference-<group>`: on every target of the group, the platform's probes code the
    labels in fewer bits than TF-IDF + logistic regression on the same blocks."""
    parts = group_parts(vs_reference(z, model), group)
    return Finding(
        f"{model}-beats-reference-{KEY[group]}", essay=ESSAY_BEATS,
        criterion=f"on each of the {len(GROUPS[group])} {group} targets, the 95% t interval over runs of "
                  f"L(TF-IDF) − L({model}) per label, paired on identical blocks, lies above 0 (holds when it "
                  "does on every target; does not hold when on some target it lies below 0; otherwise "
                  "inconclusive)",
        decision=verdicts.on_every(parts, 0.0), applies_to=FULL,
        detail=f"{LABEL[model]}, linear probes on frozen features, {len(parts)} targets")


def larger_platform(z: Zoo, group: str, larger: str = "mpnet", smaller: str = "minilm") -> Finding:
    """`larger-platform-more-bits-<group>`: mpnet codes every target of the group in fewer bits than MiniLM."""
    parts = group_parts(larger_vs_smaller(z, larger, smaller), group)
    return Finding(
        f"larger-platform-more-bits-{KEY[group]}",
        essay="scale helps: a larger, better-pretrained platform gives a new task more information",
        criterion=f"on each of the {len(GROUPS[group])} {group} targets, the 95% t interval over runs of "
                  f"L(MiniLM) − L(mpnet) per label, paired on identical blocks, lies above 0 (holds when it does "
                  "on every target; does not hold when on some target it lies below 0)",
        decision=verdicts.on_every(parts, 0.0), applies_to=FULL,
        detail=f"{LABEL[larger]} ({z.first(larger)['platform']['params']}) against {LABEL[smaller]} "
               f"({z.first(smaller)['platform']['params']})")


def far_larger_pretraining(z: Zoo) -> Finding:
    """`far-larger-pretraining-more-bits`: SmolLM2 beats each of our bodies on both code and prose targets."""
    parts = {f"{b} on {t}": iv for b, c in scale_of_pretraining(z).items() for t, iv in c["per_target"].items()}
    return Finding(
        "far-larger-pretraining-more-bits",
        essay="memorisation at scale is not generalisation, but a platform pretrained on far more code and prose "
              "should still give the code and prose targets more bits than a small one",
        criterion="SmolLM2's probes beat each of our code and prose bodies' on both the code and the prose target: "
                  "every per-target 95% interval (t over runs, paired blocks) above 0 holds; any below 0 does not "
                  "hold; otherwise inconclusive",
        decision=verdicts.on_every(parts, 0.0), applies_to=FULL,
        detail="four (body, target) pairs; our bodies are the CPU-size ones")


def serves_tasks(z: Zoo, model: str = "mpnet") -> Finding:
    """`one-platform-serves-tasks`: non-inferiority of one platform to a specialist per task, on every task."""
    return Finding(
        "one-platform-serves-tasks",
        essay="one platform, adapted per task, serves many tasks about as well as a specialist built for each",
        criterion=f"on every one of the six targets, all-mpnet-base-v2's frozen features with that task's linear "
                  f"head are not worse than TF-IDF + logistic regression fitted on the task by more than {MARGIN} "
                  f"bits per held-out example (the 95% interval of platform − specialist lies below {MARGIN}); "
                  f"does not hold if on some target it lies above the margin",
        decision=verdicts.on_every(platform_serves_tasks(z, model), MARGIN, "<"), applies_to=FULL,
        detail="platform − specialist, held-out bits per example; negative: the platform is better")


def kl_tracks_bits(z: Zoo) -> Finding:
    """`essay-kl-tracks-bits`: over every cell, the essay's KL ranks cells the way ΔL does."""
    kv = kl_vs_bits(z)
    return Finding(
        "essay-kl-tracks-bits",
        essay="the information a platform gives a task is the KL divergence between the predictions of the model "
              "trained from random weights and of the pretrained one",
        criterion=f"over every (model, target) cell of the zoo, Spearman's ρ between the essay's KL and ΔL has a 95% "
                  f"interval (Fisher z) above {RHO} (holds: KL ranks cells the way the bits do); below {RHO} does "
                  "not hold; otherwise inconclusive",
        decision=verdicts.above(kv["rho"], RHO), applies_to=FULL,
        detail=f"{kv['n']} cells ({kv['models']} models × {kv['targets']} targets, not independent draws: the "
               f"interval treats them as if they were); KL above its seed-vs-seed floor in {kv['above_floor']}; "
               f"cells with ΔL < 0: {kv['negative_dL']}, of which KL above the floor: "
               f"{kv['negative_dL_kl_above_floor']}")


def proxies_rank_like_bits(z: Zoo, proxy: str = "logme") -> Finding:
    """`proxies-rank-like-bits`: on every target, LogME read on each run's first labels ranks the candidate
    features the way the code length of the labels sent after them does (labels LogME never read)."""
    parts = proxies_vs_bits(z, proxy)
    seen = {c["proxy_labels"] for c in z.cells.values() if "proxy_labels" in c}
    return Finding(
        "proxies-rank-like-bits",
        essay="a model's generality is the information it gives new tasks; a cheap score of frozen features that "
              "ranks models the way the bits do would let one choose a platform from one closed-form fit on the "
              "labels in hand, before coding the ones to come (it still needs labelled examples: the first ones "
              "a run sends)",
        criterion=f"on each of the six targets, Spearman's ρ between LogME computed on each run's first labels "
                  f"(the largest block end at most half the coded labels) and minus the bits per label of the "
                  f"labels sent after them (both averaged over runs), over the candidates (every row's pretrained "
                  f"and random-init features), has a 95% interval (Fisher z) above {RHO} (holds when it does on "
                  f"every target); does not hold if on some target it lies below {RHO}; inconclusive otherwise",
        decision=verdicts.on_every(parts, RHO), applies_to=FULL,
        detail=f"{len(parts)} targets, {max((iv.n for iv in parts.values()), default=0)} candidates per target; "
               f"LogME read the first {', '.join(map(str, sorted(seen))) or '–'} labels of each run; "
               f"the H-score by the same rule: {verdicts.on_every(proxies_vs_bits(z, 'h_score'), RHO).verdict}")


def platform_findings(z: Zoo) -> dict[str, list[Finding]]:
    """The generality chapter's zoo findings that the models in these records can decide, by the table they
    sit under: "reference" (each lab platform against TF-IDF), "larger" (mpnet against MiniLM), "scale"
    (SmolLM2 against our bodies), "serves" (one platform against a specialist per task)."""
    has = set(z.models)
    return {"reference": [beats_reference(z, m, g) for m in LAB if m in has for g in GROUPS],
            "larger": [larger_platform(z, g) for g in GROUPS] if {"mpnet", "minilm"} <= has else [],
            "scale": [far_larger_pretraining(z)] if "smollm2" in has else [],
            "serves": [serves_tasks(z)] if "mpnet" in has else []}


# ================================================================================== one call per page cell
def board_page(z: Zoo) -> dict:
    """Everything book/leaderboard.md shows of the ranking: the board, its tables, the figure's bars, the
    rows listed apart and the numbers its sentences quote."""
    board = leaderboard(z)
    return {"board": board, "table": board_table(z, board), "apart": apart(z, board), "about": about(z),
            "per_target": per_target_table(board), "inputs": inputs_table(z), "figure": per_target_figure(board)}


def proxies_page(z: Zoo) -> dict:
    """The leaderboard's section on cheap proxies: the per-target table and its finding."""
    return {"table": proxy_table(z), "finding": proxies_rank_like_bits(z)}


def platforms_page(z: Zoo) -> dict:
    """The generality chapter's section on real platforms: its tables, the numbers its sentences quote, and
    the findings the models present can decide (`platform_findings`)."""
    has = set(z.models)
    return {"table": platforms_table(z), "about": about(z), "controls_equivalent": controls_all_equivalent(z),
            "larger": larger_table(z) if {"mpnet", "minilm"} <= has else None,
            "scale": scale_table(z) if "smollm2" in has else None,
            "serves": serves_table(z) if "mpnet" in has else None,
            "findings": platform_findings(z)}


def exposure_page(z: Zoo) -> dict | None:
    """The leaderboard's section on code the lab models cannot have read: `exposure`'s numbers, its table,
    and each lab model's difference beside its random twin's (label → (model's, twin's)), as the sentence
    under the table quotes them. None where no row was measured on both code targets (every profile but
    `full`)."""
    ex = exposure(z)
    if ex is None:
        return None
    rows = ex["rows"]
    return {"numbers": ex, "table": exposure_table(ex),
            "lab": {label(m): (rows[m]["difference"], rows.get(f"{m}@{SCRATCH}", {}).get("difference"))
                    for m in LAB if m in rows}}


def grid_page(z: Zoo) -> dict:
    """The leaderboard's section on the grids: `grid_table`, the rows (their page names) where an edge of
    the grid won the most blocks, and how many rows there are."""
    blocks = grid_report(z, "blocks")
    return {"table": grid_table(z), "rows": len(blocks),
            "edge": [grid_label(r) for r, u in blocks.items() if u.edge_wins]}


def kl_page(z: Zoo) -> dict:
    """The KL-against-bits figure's points, the numbers its reading quotes, and its finding."""
    return {"figure": kl_figure(z), "numbers": kl_vs_bits(z), "finding": kl_tracks_bits(z)}


# ================================================================================== what a chapter asks for
# The rows each profile computes: every row at `full` (computed on a CPU); at `smoke` the rows whose passes
# fit the smoke budget (mpnet and SmolLM2 cost 5–6× MiniLM per token).
ROWS = {"smoke": ("minilm", *BODIES), "full": (*LAB, *BODIES)}


def configs(profile: str, seed: int = 0, rows=None) -> tuple[list, list]:
    """(reference configs, cell configs) of the zoo at `profile`, every run shifted by the book's seed."""
    shift = {k: tuple(seed + r for r in v) for k, v in zoo.SIZES[profile].items() if k.startswith("runs")}
    targets = TARGETS + (UNEXPOSED if profile == "full" else ())
    refs = [zoo.reference_config(t, profile, **shift) for t in targets]
    cells = [zoo.config(m, t, profile, **shift) for m in (rows or ROWS[profile]) for t in targets]
    return refs, cells
