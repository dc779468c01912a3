"""Chapter 3 (book/tyranny.md): the chapter's numbers, the rows of its tables and its checks and findings,
from the records of `experiments.tyranny` and `experiments.tyranny_data` (pure functions: nothing trains).

Kept apart from the experiment modules so that the statistics can change without changing the records'
keys (no experiment module imports this one). Where a record already holds a statistic of its own (an
interval, a fit), the decisions here are made again from the per-seed numbers it also holds; every verdict
comes from `core.verdicts`. One function per section: `scaling`, `pretraining_data` (+ `ladder_body`),
`memorization`, `compression`, `double_descent`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from decoupling.core import verdicts
from decoupling.core.intervals import Interval, mean_ci
from decoupling.core.verdicts import Check, Finding

LN2 = math.log(2)
R2_MIN = 0.98  # a pure power law "fits" when R² in log space reaches this
BEND = 0.02  # the equivalence margin on the bend of the scaling curve, fixed before the run
BAND = (2.0, 3.6)  # published bits per parameter at capacity (Allen-Zhu & Li 2024; Morris et al. 2025)
KAPLAN_ALPHA = 0.076


@dataclass  # not frozen: tests/test_presets.py reads a frozen dataclass here as an experiment's config
class Section:
    """What one section of the chapter shows: `numbers` (what the figure and the prose read), `tables`
    ({name: (header, rows)} for `pipeline.page.table`), and the claims it records with `Chapter.add`."""
    numbers: dict
    tables: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)
    findings: dict = field(default_factory=dict)

    @property
    def claims(self) -> list:
        return [*self.checks.values(), *self.findings.values()]


def _ci(iv: Interval, fmt: str = "{:.3g}") -> str:
    return "[" + ", ".join(fmt.format(v) for v in iv.ci) + "]"


def _fixed(value: float, n: int = 0) -> Interval:
    """A number with no sampling error (a fit's R² over the sizes), as an interval of zero width."""
    return Interval(float(value), float(value), float(value), n=n, method="fixed")


# ---------------------------------------------------------------------------------------------- decisions
def one_sided(d: verdicts.Decision, rule: str) -> verdicts.Decision:
    """A decision of `verdicts.above`/`below` taken at alpha = 0.10 read as the one-sided test at 5 % in the
    direction of its value (a non-inferiority test, the lower half of a TOST): the verdict is the 90%
    interval's and p is half the two-sided p, so p < 0.05 exactly when it decides."""
    return dataclasses.replace(d, p=d.p / 2, rule=rule)


def lower_bound_in_band(iv: Interval, band: tuple[float, float]) -> verdicts.Decision:
    """A *lower bound* on a quantity against a published band: holds if its 95% CI lies inside the band, does
    not hold if it lies wholly above it; an interval below the band (or across an edge) is inconclusive,
    since a lower bound under the band does not refute it. `all_of` the two edges, with the lower edge's
    refutation read as open (p: the one-sided p of "above the edge", ≥ 0.5 there)."""
    lower, upper = verdicts.above(iv, band[0]), verdicts.below(iv, band[1])
    if lower.verdict == verdicts.FAILS:
        lower = dataclasses.replace(lower, verdict=verdicts.OPEN, p=1 - lower.p / 2,
                                    rule=f"a lower bound below {band[0]:g} does not refute the band")
    return verdicts.all_of({f"≥ {band[0]:g}": lower, f"≤ {band[1]:g}": upper},
                           f"the 95% CI lies inside [{band[0]:g}, {band[1]:g}]")


# ---------------------------------------------------------------------------------------------- 1. scaling
def scaling_power_law(sc: dict) -> Finding:
    """A pure power law fits the seed means (R² ≥ 0.98, a fixed number) and the seeds' own exponents have a
    95% t-CI above 0; both must hold (`all_of`)."""
    alpha = mean_ci(sc["alpha_seeds"])
    r2 = sc["pure"]["r2"]
    d = verdicts.all_of({"R²": verdicts.above(_fixed(r2, len(sc["N"])), R2_MIN), "α": verdicts.above(alpha, 0.0)})
    floor = sc["floor"]
    return Finding(
        "scaling-power-law",
        essay="loss falls as a power law in non-embedding parameters over our range (Kaplan et al. 2020)",
        criterion=f"holds if a pure power law fits the seed means with R² ≥ {R2_MIN} in log space and the 95% "
                  "t-CI (over seeds) of the seeds' own exponents lies above 0; does not hold if R² < "
                  f"{R2_MIN} or that CI lies below 0; else inconclusive",
        decision=d, value={"R²": r2, "α": alpha.value}, applies_to=("full",),
        anchor=f"Kaplan et al. 2020: α_N = {KAPLAN_ALPHA}, pure form",
        detail=f"pure α = {alpha.value:.4f} (95% t-CI {alpha.lo:.4f}–{alpha.hi:.4f}); with floor α = "
               f"{floor['alpha']:.4f}, E = {floor['E']:.3f}; {sc['decades']:.2f} decades of N; "
               f"{sc['tokens_per_param']:g} bytes per parameter; {len(sc['seeds'])} seeds")


def returns_not_diminishing(sc: dict, margin: float = BEND) -> Finding:
    """The bend, larger-half minus smaller-half exponent per seed: its 90% t-interval over seeds above
    −margin (no bend downward of `margin` or more, one-sided at 5 %), wholly below −margin refutes."""
    bend = mean_ci(sc["alpha_delta_seeds"])
    d = one_sided(verdicts.above(bend, -margin, alpha=0.10),
                  f"the 90% CI lies above −{margin:g} (one-sided test at 5%)")
    return Finding(
        "returns-not-diminishing", essay="bigger models have not yet hit diminishing returns",
        criterion=f"the local exponent over the larger half of our sizes minus that over the smaller half, per "
                  f"seed, with an equivalence margin of {margin}: holds if its 90% t-interval over seeds lies "
                  f"above −{margin} (no bend downward of {margin} or more, one-sided test at 5%, the lower test "
                  f"of a TOST), does not hold if it lies wholly below −{margin}, else inconclusive",
        decision=d, applies_to=("full",),
        detail=f"α smaller half {sc['alpha_bottom']:.4f}, larger half {sc['alpha_top']:.4f} (seed means); "
               f"95% t-interval of the bend {bend.lo:+.4f} … {bend.hi:+.4f} over {len(sc['seeds'])} seeds")


def scaling(sc: dict) -> Section:
    """The ladder's table, the fits' table (each exponent beside the published one of the same form), what
    the figure plots, and the two scaling findings."""
    pure, floor = sc["pure"], sc["floor"]
    alpha, bend = mean_ci(sc["alpha_seeds"]), mean_ci(sc["alpha_delta_seeds"])
    bend90 = mean_ci(sc["alpha_delta_seeds"], level=0.90)
    S = np.array(sc["seed_loss_nats"])
    ladder = (["size (layers × width)", "N (non-emb.)", "P (all)", "lr", "steps", "bytes seen (per param)",
               f"held-out loss, nats/byte (95% t-CI over {len(S)} seeds)", "bits/byte"],
              [(f"{r['n_layer']} × {r['d_model']}", f"{r['N']:,}", f"{r['params_total']:,}", f"{r['lr']:.3g}",
                f"{r['steps']:,}", f"{r['units']:,} ({r['units_per_param']:.1f})",
                f"{iv.value:.4f} {_ci(iv, '{:.4f}')}", f"{iv.value / LN2:.4f}")
               for r, iv in zip(sc["runs"], (mean_ci(col) for col in S.T))])
    f4 = lambda x: f"{x:.4f}"  # noqa: E731
    fits = (["fit", "α (95% CI)", "R² (log space)", "published α, same form"],
            [("pure power law $(N_c/N)^\\alpha$, mean of the seeds' own fits (t-CI over seeds)",
              f"{alpha.value:.4f} {_ci(alpha, '{:.4f}')}", f"{pure['r2']:.3f}", f"{KAPLAN_ALPHA} (Kaplan et al. 2020)"),
             ("pure power law, fit to the seed means (1,000 resamples of the seeds)",
              f"{pure['alpha']:.4f} [{pure['alpha_ci'][0]:.4f}, {pure['alpha_ci'][1]:.4f}]", f"{pure['r2']:.3f}", ""),
             ("with irreducible term $E + A N^{-\\alpha}$ (1,000 resamples of the seeds)",
              f"{floor['alpha']:.4f} [{floor['alpha_ci'][0]:.4f}, {floor['alpha_ci'][1]:.4f}]", f"{floor['r2']:.3f}",
              "0.34 (Hoffmann et al. 2022); 0.35 (Besiroglu et al. 2024)"),
             ("smaller half only (pure)", f4(sc["alpha_bottom"]), "", ""),
             ("larger half only (pure)", f4(sc["alpha_top"]), "", ""),
             ("larger − smaller, mean of the seeds' own (95% t-CI; 90% for the test)",
              f"{bend.value:+.4f} {_ci(bend, '{:+.4f}')}; {_ci(bend90, '{:+.4f}')}", "", "")])
    N = np.array(sc["N"], float)
    numbers = {"N": N, "loss": np.array(sc["loss_nats"]), "seed_loss": S, "pure": pure, "floor": floor,
               "floor_fitted": bool(np.isfinite(floor["alpha"])), "kaplan_alpha": KAPLAN_ALPHA,
               "grid": np.geomspace(N.min() / 1.5, N.max() * 1.5, 200),
               "local_slope_at": sc["local_slope_at"], "local_slopes": sc["local_slopes"],
               "alpha_bottom": sc["alpha_bottom"], "alpha_top": sc["alpha_top"],
               "bottom_span": (N[0], N[(len(N) - 1) // 2]), "top_span": (N[len(N) // 2], N[-1]),
               "tokens_per_param": sc["tokens_per_param"], "alpha": alpha, "bend": bend, "margin": BEND}
    findings = {f.name: f for f in (scaling_power_law(sc), returns_not_diminishing(sc))}
    return Section(numbers, {"ladder": ladder, "fits": fits}, findings=findings)


# ---------------------------------------------------------------------------------------------- 2. more data
def slopes_per_target(pdata: dict) -> dict[str, Interval]:
    """Each target's slope of ΔL (bits per label) per doubling of the body's tokens: the mean over seeds
    (a seed is a whole run) with its t interval."""
    return {t: mean_ci(v["slopes"]) for t, v in pdata["per_target"].items()}


def more_data_helps(pdata: dict) -> Finding:
    """ΔL rises with the body's pretraining tokens on every target of the fixed suite (`on_every`)."""
    parts = slopes_per_target(pdata)
    tokens = pdata["tokens"]
    return Finding(
        "more-data-helps", essay="a body pretrained on more data gives a new task more information",
        criterion="slope of ΔL (bits per label) against log2 of the body's pretraining tokens, fitted per target "
                  "and seed: holds if on every target the 95% t-CI over seeds of its slope lies above 0, does not "
                  "hold if on some target it lies below 0, else inconclusive",
        decision=verdicts.on_every(parts, 0.0, ">"), applies_to=("full",),
        detail=f"{len(tokens)} bodies, {tokens[0]:,} → {tokens[-1]:,} tokens; per target: "
               + "; ".join(f"{t} {iv.value:+.4f} [{iv.lo:+.4f}, {iv.hi:+.4f}]" for t, iv in parts.items())
               + f"; {len(pdata['seeds'])} runs, each with its own pretraining seed for every body, fine-tuning "
               "seed and test rows")


def pretraining_data(pdata: dict) -> Section:
    """ΔL per target and body (the figure's lines, the table) and the data finding."""
    tokens = np.array(pdata["tokens"])
    parts = slopes_per_target(pdata)
    dl = {t: np.array(v["dL_per_label"]) for t, v in pdata["per_target"].items()}  # (seeds, points)
    table = (["target", *[f"{t:,} tokens" for t in tokens], "slope per doubling (95% t-CI over seeds)"],
             [(t, *[f"{x:+.3f}" for x in dl[t].mean(0)], f"{parts[t].value:+.4f} {_ci(parts[t], '{:+.4f}')}")
              for t in dl])
    numbers = {"tokens": tokens, "dL": dl, "slopes": parts,
               "body_bits": [b["eval_bits_per_token"] for b in pdata["bodies"]], "n_seeds": len(pdata["seeds"]),
               "targets": list(pdata["targets"]), "examples": pdata["ends"][-1]}
    f = more_data_helps(pdata)
    return Section(numbers, {"slopes": table}, findings={f.name: f})


def ladder_body(dcfg) -> dict:
    """The ladder's bodies against chapter 4's body at this profile: shape, tokens a step, step counts, and
    whether chapter 4's body is a point of the ladder."""
    from decoupling.experiments import pretrain, tyranny_data
    book = pretrain.config(dcfg.body_profile, dcfg.domain)
    per_step = book.batch_size * book.model.block_size
    return {"n_layer": book.model.n_layer, "d_model": book.model.d_model, "per_step": per_step,
            "steps": list(dcfg.body_steps), "book_steps": book.steps, "book_tokens": book.steps * per_step,
            "on_ladder": any(tyranny_data.body_config(dcfg, s) == book for s in dcfg.body_steps)}


# ---------------------------------------------------------------------------------------------- 3. memorization
METRICS = ("train_acc", "test_acc", "stored_bits", "bits_per_param")


def width_intervals(mem: dict) -> list[dict]:
    """Per width: {labels: {metric: Interval over seeds}} from every run's own rows."""
    runs = mem["runs"]
    out = []
    for i, row in enumerate(runs[0]["rows"]):
        w = {"width": row["width"], "params": row["params"]}
        for labels in ("random", "true"):
            if labels in row:
                w[labels] = {m: mean_ci([r["rows"][i][labels][m] for r in runs]) for m in METRICS}
        out.append(w)
    return out


def capacity(mem: dict) -> Interval:
    """Bits per parameter at capacity: each run's plateau (its best width), mean over runs, t interval."""
    return mean_ci(mem["capacity_seeds"])


def bits_per_param_in_band(mem: dict, band=BAND) -> Finding:
    iv = capacity(mem)
    return Finding(
        "bits-per-param-in-band", essay="a network stores about 2 to 3.6 bits per parameter at capacity",
        criterion="decided at `full` only, where each fit trains ten times longer: our best bits/parameter (the "
                  f"plateau over widths) is a lower bound on the capacity; holds if its 95% t-CI over seeds lies "
                  f"inside [{band[0]:g}, {band[1]:g}], does not hold if it lies wholly above {band[1]:g}; an interval "
                  f"below {band[0]:g} or across an edge is inconclusive (a lower bound below the band does not "
                  "refute it)",
        decision=lower_bound_in_band(iv, band), value=iv.value, applies_to=("full",),
        anchor="≈ 2 bits/param (Allen-Zhu & Li 2024), 3.6 (Morris et al. 2025)",
        detail=f"each seed's plateau (its best bits/parameter over widths, at hidden widths "
               f"{', '.join(map(str, mem['capacity_widths']))}): "
               f"{', '.join(f'{c:.2f}' for c in mem['capacity_seeds'])}; the value is their mean and the CI a "
               f"Student-t interval over the {len(mem['runs'])} seeds, each with its own random labels and "
               "initialization")


def memorization_checks(mem: dict) -> dict[str, Check]:
    """The widest network fits random labels, tests at chance on them, and generalizes on the true labels,
    each in its worst seed."""
    w, worst, n = mem["widest"], mem["worst"], len(mem["runs"])
    checks = [
        Check("random-labels-fit", f"the widest MLP ({w['width']} hidden units) fits random labels in every seed: "
              f"train accuracy ≥ 0.99 (the worst of {n} seeds)",
              passed=worst["random_train_acc"] >= 0.99, value=worst["random_train_acc"]),
        Check("random-labels-test-at-chance",
              f"trained on random labels, its test accuracy is chance in every seed, {mem['chance']:.2f} ± "
              f"{mem['chance_margin']:.3f} (4 binomial standard errors on {mem['n_test']} test images; the seed "
              "farthest from chance)",
              passed=abs(worst["random_test_acc"] - mem["chance"]) <= mem["chance_margin"],
              value=worst["random_test_acc"]),
        Check("true-labels-control-generalizes",
              f"the same network on the true labels reaches test accuracy ≥ 0.9 in every seed (the worst of {n})",
              passed=worst["true_test_acc"] >= 0.9, value=worst["true_test_acc"]),
    ]
    return {c.name: c for c in checks}


def memorization(mem: dict) -> Section:
    """Per width (intervals over seeds, each seed's bits/parameter), the capacity, the checks and the band
    finding."""
    runs, widths = mem["runs"], width_intervals(mem)

    def cell(w, labels, metric, fmt):
        if labels not in w:
            return "–"
        iv = w[labels][metric]
        return f"{fmt.format(iv.value)} {_ci(iv, fmt)}"

    table = (["hidden width", "parameters", "train acc (random)", "test acc (random)", "memorized bits",
              "bits / parameter", "bits / parameter, per seed", "train acc (true)", "test acc (true)"],
             [(w["width"], f"{w['params']:,}", cell(w, "random", "train_acc", "{:.3f}"),
               cell(w, "random", "test_acc", "{:.3f}"), cell(w, "random", "stored_bits", "{:,.0f}"),
               cell(w, "random", "bits_per_param", "{:.2f}"),
               ", ".join(f"{run['rows'][i]['random']['bits_per_param']:.2f}" for run in runs),
               cell(w, "true", "train_acc", "{:.3f}"), cell(w, "true", "test_acc", "{:.3f}"))
              for i, w in enumerate(widths)])
    cap = capacity(mem)
    stored = [[r["random"]["stored_bits"] for r in run["rows"]] for run in runs]
    numbers = {"widths": widths, "params": np.array([w["params"] for w in widths]), "capacity": cap,
               "below_band": bool(cap.hi < BAND[0]), "band": BAND, "n_seeds": len(runs), "seeds": mem["seeds"],
               "stored_per_seed": stored, "label_bits_total": mem["label_bits_total"],
               "lowest_stored": min(b for row in stored for b in row if b > 0),
               "chance": mem["chance"], "chance_margin": mem["chance_margin"],
               "widest_fit": mem["worst"]["random_train_acc"]}
    f = bits_per_param_in_band(mem)
    return Section(numbers, {"widths": table}, memorization_checks(mem), {f.name: f})


# ---------------------------------------------------------------------------------------------- 4. compression
ORDINAL = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}


def model_name(r: dict) -> str:
    return "the linear model" if r["width"] == 0 else f"width {r['width']}"


def compression(cp: dict) -> Section:
    """One seed and one order of the labels: no interval, an illustration. The rank correlation of code
    length with test loss, where the shortest code ranks on test loss, and how much longer than no model
    the memorizer's code is."""
    true = [r for r in cp["rows"] if r["labels"] == "true"]
    memo = [r for r in cp["rows"] if r["labels"] == "random"]
    best_code = min(true, key=lambda r: r["preq_bits_per_label"])
    best_test = min(true, key=lambda r: r["test_bits"])
    rank = 1 + sorted(r["test_bits"] for r in true).index(best_code["test_bits"])
    excess = memo[0]["preq_bits_per_label"] - cp["uniform_bits_per_label"]
    table = (["model", "parameters", "prequential bits/label", "train loss (bits)", "test loss (bits)", "test acc"],
             [("linear" if r["width"] == 0 else f"MLP width {r['width']}"
               + (" (random labels)" if r["labels"] == "random" else ""),
               f"{r['params']:,}", f"{r['preq_bits_per_label']:.3f}", f"{r['train_bits']:.3f}",
               f"{r['test_bits']:.3f}", f"{r['test_acc']:.3f}") for r in cp["rows"]])
    numbers = {"true": true, "memo": memo, "uniform": cp["uniform_bits_per_label"], "n_true": len(true),
               "spearman": cp["spearman_preq_vs_test"],
               "labels": ["linear" if r["width"] == 0 else f"width {r['width']}" for r in true],
               "best_code": model_name(best_code), "best_code_bits": best_code["preq_bits_per_label"],
               "best_code_rank": ORDINAL.get(rank, f"{rank}th"), "same_best": best_code is best_test,
               "best_test": model_name(best_test), "best_test_bits": best_test["test_bits"],
               "memo_excess": abs(excess), "memo_longer": excess > 0}
    return Section(numbers, {"models": table})


# ---------------------------------------------------------------------------------------------- 5. double descent
def double_descent_check(dd: dict) -> Check:
    """Min-norm regression behaves as the theory says it must; each part is one a ridge penalty, a
    truncated pseudo-inverse or mismatched test features would break."""
    lo, hi = dd["peak_ratio_ci"]
    peak = Interval(dd["peak_ratio"], lo, hi, n=len(dd["test_mse"]), method="bootstrap")
    return Check(
        "double-descent-peak",
        "min-norm regression behaves as the theory says it must: the peak of the median test loss lies within a "
        "factor 1.5 of p = n (95% CI over feature draws, 1,000 resamples), stands ≥ 10× above the loss at the "
        "smallest p, every fit from p = 1.5 n on interpolates (train loss < 1e-8), and test error at the largest p "
        "is below that at p = n. A ridge penalty, a pseudo-inverse that drops small singular values or test "
        "features drawn apart from the training ones would each flatten the spike or move it",
        passed=(1 / 1.5 <= lo and hi <= 1.5 and dd["spike_factor"] >= 10 and dd["train_mse_past_threshold"] < 1e-8
                and dd["err_at_widest"] < dd["err_at_threshold"]),
        value=dd["peak_ratio"], interval=peak,
        detail=f"spike ×{dd['spike_factor']:.0f}; train loss past 1.5 n ≤ {dd['train_mse_past_threshold']:.1e}; "
               f"test error {dd['err_at_threshold']:.3f} at p = n, {dd['err_at_widest']:.3f} at the largest p")


def double_descent(dd: dict) -> Section:
    """The curves over feature draws (mean error, median loss and norm), the table and the check."""
    mse, err, norm = (np.array(dd[k]) for k in ("test_mse", "test_err", "beta_norm"))
    curves = [(err, "test error (0–1)", "mean", err.mean(0)), (mse, "test squared loss", "median", np.median(mse, 0)),
              (norm, "‖β‖ (min-norm solution)", "median", np.median(norm, 0))]
    lo, hi = dd["peak_ratio_ci"]
    table = (["quantity", "value"],
             [("samples n", dd["n_train"]),
              ("peak of median test loss at p/n", f"{dd['peak_ratio']:.2f} [{lo:.3g}, {hi:.3g}]"),
              ("peak of mean test error at p/n", f"{dd['peak_ratio_err']:.2f}"),
              ("best test error (mean over draws)", f"{dd['best_test_err']:.3f} at p = {dd['best_p']:,}")])
    c = double_descent_check(dd)
    return Section({"ratio": np.array(dd["ratio"]), "curves": curves, "n_train": dd["n_train"]},
                   {"quantities": table}, {c.name: c})
