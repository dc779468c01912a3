"""Chapter 4's summary (experiments.generality_summary) against known answers, on small synthetic records
(no training): a planted effect decides "holds", a null "inconclusive" or "does not hold" as it should, and
a claim about a fixed suite of targets is decided target by target."""
import numpy as np
import pytest
from scipy import stats

from decoupling.core import intervals, verdicts
from decoupling.core.prequential import CONTROL, SCRATCH
from decoupling.experiments import generality_summary as S

HOLDS, FAILS, OPEN = verdicts.HOLDS, verdicts.FAILS, verdicts.OPEN
TEXT = ("sentiment/movies", "sentiment/tweets", "sentiment/amazon", "sentiment/nyt", "code/module", "prose/topic")
N = 100  # labels per run


def _rows(values: dict, key="dL_per_label"):
    """Rows as `cells` makes them, from {(init, target): per-run values}."""
    return [{"init": i, "target": t, key: list(v)} for (i, t), v in values.items()]


def _transfer(target, dl: dict, ref_L=None, n=N, seeds=3, kl=0.1):
    """A transfer record with ΔL per label `dl[init]` (one value per run) against θ0; θ0 codes n bits a run."""
    L0 = [float(n)] * seeds
    runs = {SCRATCH: {"L": L0, "test_bits": [[1.0, 0.8]] * seeds, "block_bits": [[n / 2, n / 2]] * seeds}}
    pairs = {}
    for i, v in dl.items():
        runs[i] = {"L": [a - x * n for a, x in zip(L0, v)], "test_bits": [[0.9, 0.7]] * seeds,
                   "block_bits": [[n / 2, n / 2 - x * n] for x in v]}
        pairs[i] = {"dL": [x * n for x in v], "essay_kl": [[kl, kl]] * seeds, "reverse_kl": [[kl, kl]] * seeds,
                    "gain": [[0.0, x] for x in v]}
    bodies = {i: {"eval_bits_per_token": 7.0, "unigram_entropy_bits": 9.0, "heldout_still_falling": True}
              for i in dl if i not in (CONTROL, "minilm")}
    return {"target": target, "n": n, "ends": [10, 50, n], "pairs": pairs, "runs": runs, "logme": {},
            "bodies": bodies, "reference": None if ref_L is None else {"L": ref_L}}


# ------------------------------------------------------------------------------- the generality score
def test_generality_score_is_the_mean_over_targets_described_by_a_clustered_interval():
    """Six targets whose runs sit tightly around their own target's value: the score is the uniform mean over
    the (task, dataset) pairs, and its interval is the t interval over the six target means (5 df), much
    wider than one over the 30 runs as if independent; each target keeps its own interval over its runs."""
    means = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    offsets = [0.0, 0.01, -0.01, 0.005, -0.005]
    rows = _rows({("a", f"t{k}"): [m + o for o in offsets] for k, m in enumerate(means)})
    s = S.generality_score(rows, "a")
    half = stats.t.ppf(0.975, 5) * np.std(means, ddof=1) / np.sqrt(6)  # the textbook interval, by hand
    assert s["score"] == pytest.approx(0.5) and s["interval"].ci == pytest.approx((0.5 - half, 0.5 + half))
    assert s["interval"].method == "clustered" and s["n_runs"] == 30 and s["n_cells"] == 6
    flat = intervals.mean_ci(np.concatenate([r["dL_per_label"] for r in rows]))
    assert flat.hi - flat.lo < 0.5 * (s["interval"].hi - s["interval"].lo)
    assert s["parts"]["t3"].value == pytest.approx(0.6) and s["parts"]["t3"].n == 5
    fam = S.generality_score(_rows({("a", t): [v, v] for t, v in [("sentiment/x", 0.1), ("sentiment/y", 0.3),
                                                                   ("code/module", 0.5), ("prose/topic", 0.0)]}), "a")
    assert fam["families"] == pytest.approx({"sentiment": 0.2, "code": 0.5, "prose": 0.0})
    assert S.generality_score([], "a")["n_cells"] == 0


def _minilm(per_target: dict, ref_per_target=None, ctrl=0.0):
    targets = {}
    for t, v in per_target.items():
        ref = None if ref_per_target is None else [N - x * N for x in ref_per_target[t]]
        targets[t] = _transfer(t, {"minilm": v, CONTROL: [ctrl + e for e in (0.001, -0.001, 0.0)]}, ref_L=ref)
    return {"mode": "probe", "targets": targets}


def test_an_effect_on_every_target_holds_though_a_mean_over_targets_hides_it():
    """The issue's case: MiniLM gains on 6 of 6 targets, each tightly, but by very different amounts; the t
    interval over the six target means reaches below 0, yet the finding (on every target) holds."""
    gains = [0.01, 0.02, 0.01, 0.015, 0.9, 0.6]
    mini = _minilm({t: [g - 0.002, g, g + 0.002] for t, g in zip(TEXT, gains)})
    out = S.summarize([], mini)
    s = out["scores"]["minilm"]
    assert s["interval"].lo < 0 < s["score"]  # the clustered interval would have called it inconclusive
    f = out["findings"]["score-minilm"]
    assert f.decision.verdict == HOLDS and f.decision.p < 0.05 and set(f.decision.parts) == set(TEXT)
    # it shows the target that decides (the weakest), and the score beside it
    assert f.value == pytest.approx(0.01) and f.detail.startswith("shown: sentiment/movies")


def test_one_target_against_decides_does_not_hold_and_noise_is_inconclusive():
    gains = {t: [0.2, 0.21, 0.19] for t in TEXT}
    against = _minilm({**gains, "code/module": [-0.3, -0.31, -0.29]})
    f = S.summarize([], against)["findings"]["score-minilm"]
    assert f.decision.verdict == FAILS and f.decision.p < 0.05
    assert f.decision.interval.value == pytest.approx(-0.3)  # the target that decides is shown
    noisy = _minilm({**gains, "code/module": [-0.2, 0.3, 0.05]})
    f = S.summarize([], noisy)["findings"]["score-minilm"]
    assert f.decision.verdict == OPEN and f.decision.p >= 0.05


def test_minilm_against_the_reference_is_decided_target_by_target():
    """(L_ref − L_MiniLM)/n per run: MiniLM codes every target 0.1 bits/label better than θ0, the reference
    is 0.3 better than θ0 on one target and 0.05 worse on the others: against the reference MiniLM loses
    that target, so the finding does not hold, whatever the mean over targets says."""
    mini = {t: [0.1, 0.11, 0.09] for t in TEXT}
    ref = {t: [-0.05, -0.05, -0.05] for t in TEXT}
    ref["sentiment/nyt"] = [0.3, 0.31, 0.29]
    out = S.summarize([], _minilm(mini, ref))
    r = out["scores_ref"]["minilm"]
    assert r["parts"]["sentiment/nyt"].value == pytest.approx(-0.2)
    assert r["parts"]["code/module"].value == pytest.approx(0.15)
    assert r["score"] > 0
    assert out["findings"]["minilm-vs-reference"].decision.verdict == FAILS


def test_the_seed_vs_seed_control_is_an_equivalence_test():
    """A control whose 95% interval lies within ±δ passes; a noisy one centred on 0 is undecided (it would
    pass a "CI contains 0" test); a shifted one is biased. Every one carries its per-target intervals."""
    rng = np.random.default_rng(0)

    def check(values):
        rows = _rows({(CONTROL, f"t{k}"): v for k, v in enumerate(values)})
        s = S.generality_score(rows, CONTROL)
        return S._control_equivalence(s["interval"])

    assert S.control_word(check(rng.normal(0, 0.005, (6, 5)))) == "equivalent"
    noisy = check(rng.normal(0, 0.3, (6, 5)))
    assert S.control_word(noisy) == "undecided" and noisy.interval.lo < 0 < noisy.interval.hi
    assert S.control_word(check(rng.normal(0.3, 0.005, (6, 5)))) == "biased"
    # the rule is the 95% interval inside ±δ: one at ±0.04 passes, at 95% but not at a 90% TOST's ±0.06
    iv = intervals.Interval(0.0, -0.04, 0.04, n=10, se=0.04 / stats.t.ppf(0.975, 9), df=9)
    assert S._control_equivalence(iv).verdict == HOLDS
    one_run = intervals.mean_ci([0.01])
    assert S._control_equivalence(one_run).verdict == OPEN
    out = S.summarize([], _minilm({t: [0.1, 0.1, 0.1] for t in TEXT}, ctrl=0.0))
    assert out["checks"]["seed-vs-seed-equivalent-minilm"].passed
    out = S.summarize([], _minilm({t: [0.1, 0.1, 0.1] for t in TEXT}, ctrl=0.2))
    c = out["checks"]["seed-vs-seed-equivalent-minilm"]
    assert not c.passed and c.value == pytest.approx(0.2) and "biased" in c.detail


# ------------------------------------------------------------------------------- our bodies
def _grid(code, prose, shuffled, ctrl=(0.0, 0.0, 0.0), targets=TEXT):
    """Our bodies' transfers: each init's per-run ΔL per label, the same on every target unless a dict."""
    def on(v, t):
        return v[t] if isinstance(v, dict) else v
    return [_transfer(t, {CONTROL: on(ctrl, t), "code": on(code, t), "prose": on(prose, t),
                          "shuffled": on(shuffled, t)}) for t in targets]


def test_our_bodies_findings_known_answers():
    ts = _grid(code=[0.1, 0.12, 0.11], prose={t: [0.05, 0.06, 0.04] if t != "prose/topic" else [0.3, 0.31, 0.29]
                                              for t in TEXT},
               shuffled=[0.001, -0.002, 0.0])
    out = S.summarize(ts)
    F = out["findings"]
    assert F["score-code"].decision.verdict == HOLDS and F["score-prose"].decision.verdict == HOLDS
    assert all(f.applies_to == ("full",) for k, f in F.items() if k not in ("score-minilm", "minilm-vs-reference"))
    # a shuffled-token source within ±0.05 on every target: no side information, by equivalence
    assert F["unrelated-source"].decision.verdict == HOLDS and F["unrelated-source"].decision.p < 0.05
    # the code LM beats the prose LM on code/module (+0.06) and loses prose/topic to it (by 0.19): against
    h = F["text-asymmetry"].decision
    assert h.verdict == HOLDS and set(h.parts) == {"code/module", "prose/topic"}
    assert out["home"]["directions"]["prose/topic"]["interval"].value == pytest.approx(0.3 - 0.11)
    assert out["checks"]["bodies-learned"].passed
    assert out["checks"]["seed-vs-seed-equivalent-ours"].passed
    # against the shuffled-token body run by run, the code LM is above on every target
    assert out["vs_shuffled"]["code"]["decision"].verdict == HOLDS


def test_the_unexposed_target_stays_outside_the_suite():
    """code/agents beside the six targets: a shuffled-token body that costs 0.2 bits/label there alone leaves
    unrelated-source holding, since the findings and scores average over the exposed suite only."""
    ts = _grid([0.1] * 3, [0.1] * 3, [0.001, -0.001, 0.0], targets=(*TEXT, "code/agents"))
    ts[-1]["pairs"]["shuffled"]["dL"] = [-0.2 * N] * 3
    for t in ts:
        t["K"] = 4
    out = S.summarize(ts)
    assert out["targets"] == list(TEXT) and set(out["matrix"]["code"]) == set(TEXT)
    assert out["findings"]["unrelated-source"].decision.verdict == HOLDS
    assert S.exposure(ts)["inits"]["shuffled"]["unexposed"].value == pytest.approx(-0.2)  # shown beside it


def test_unrelated_source_is_equivalence_on_every_target():
    """One target where the shuffled source costs 0.2 bits/label: it does not hold, though the mean over six
    targets (−0.033) sits inside the margin; a noisy target leaves it inconclusive."""
    zero = [0.001, -0.001, 0.0]
    out = S.summarize(_grid([0.1] * 3, [0.1] * 3, {t: zero if t != "sentiment/nyt" else [-0.2, -0.21, -0.19]
                                                    for t in TEXT}))
    f = out["findings"]["unrelated-source"]
    assert abs(out["scores"]["shuffled"]["score"]) < S.DELTA
    assert f.decision.verdict == FAILS and f.decision.p < 0.05 and f.value == pytest.approx(-0.2)
    out = S.summarize(_grid([0.1] * 3, [0.1] * 3, {t: zero if t != "sentiment/nyt" else [-0.2, 0.2, 0.0]
                                                    for t in TEXT}))
    assert out["findings"]["unrelated-source"].decision.verdict == OPEN


def test_home_advantage_is_the_text_square_paired_by_seed_known_answers():
    """Each body against the other on its own domain's target, seed by seed: a seed-level shift both bodies
    share (same θ0, examples, order) cancels, so a constant 0.1-bit edge under seeds that spread by a whole bit
    is decided; one direction alone decides nothing; a foreign body winning a home target counts against."""
    square = {("code", "code/module"): [1.0, 2.0, 3.0], ("prose", "code/module"): [0.9, 1.9, 2.9],
              ("prose", "prose/topic"): [0.2, 0.2, 0.2], ("code", "prose/topic"): [0.1, 0.15, 0.1],
              ("shuffled", "code/module"): [5.0, 5.0, 5.0]}  # other bodies play no part
    h = S.home_advantage(_rows(square))
    code, prose = h["directions"]["code/module"], h["directions"]["prose/topic"]
    assert (code["home"], code["other"], prose["home"], prose["other"]) == ("code", "prose", "prose", "code")
    assert code["interval"].value == pytest.approx(0.1) and code["interval"].ci == pytest.approx((0.1, 0.1))
    assert prose["interval"].value == pytest.approx(0.25 / 3) and 0 < prose["interval"].lo
    assert S.diff_ci(square[("code", "code/module")], square[("prose", "code/module")]).lo < 0  # unpaired
    assert h["complete"] and h["decision"].verdict == HOLDS and h["decision"].p < 0.05
    # the prose body better on code than the code body is: against, whatever the other direction says
    against = {**square, ("prose", "code/module"): [1.3, 2.4, 3.3]}
    h = S.home_advantage(_rows(against))
    assert h["directions"]["code/module"]["interval"].value == pytest.approx(-1 / 3)
    assert h["decision"].verdict == FAILS and h["decision"].interval.value == pytest.approx(-1 / 3)
    # one way only (smoke runs code → package alone): shown, never decided
    one = {k: v for k, v in square.items() if k[1] != "prose/topic"}
    h = S.home_advantage(_rows(one))
    assert list(h["directions"]) == ["code/module"] and not h["complete"] and h["decision"].verdict == OPEN
    # a seed-vs-seed spread around 0 decides nothing either
    noisy = {**square, ("code", "prose/topic"): [0.1, 0.3, 0.2]}
    assert S.home_advantage(_rows(noisy))["decision"].verdict == OPEN
    assert S.home_advantage([])["decision"].verdict == OPEN


def test_dt_exponent_known_answers():
    n = [10, 20, 40, 80]
    curves = [{"n": n, "dt": [3 * v ** 0.25 for v in n]}, {"n": n, "dt": [50 * v ** 0.25 for v in n]},
              {"n": n, "dt": [7 * v ** 0.3 for v in n]}]
    fit = S.fit_dt_pooled(curves, n_boot=200)
    assert 0.25 <= fit["alpha"] <= 0.3 and fit["interval"].method == "bootstrap" and fit["pairs"] == 3
    assert verdicts.above(fit["interval"], 0.0).verdict == HOLDS  # every pair grows: α > 0 everywhere
    two = S.fit_dt_pooled(curves[:2], n_boot=100)
    assert two["alpha"] == pytest.approx(0.25)  # one exponent, a different k per pair
    assert S.fit_dt_pooled([{"n": n, "dt": [None, -3, None, 5]}])["pairs"] == 0
    assert S.fit_dt_pooled([{"n": n, "dt": [None, 4, None, 5]}])["pairs"] == 0  # two points test nothing
    one = S.fit_dt_pooled(curves[:1])  # one pair: a slope, no interval, nothing decided
    assert np.isnan(one["interval"].lo) and verdicts.above(one["interval"], 0.0).verdict == OPEN


# ------------------------------------------------------------------------------- digits
def _digits(source, target, dl: dict, ref=0.0, n=N):
    seeds = len(next(iter(dl.values())))
    L0 = [float(n)] * seeds
    runs = {SCRATCH: {"L": L0, "L_config": [[n, n]] * seeds}}
    for i, v in dl.items():
        runs[i] = {"L": [a - x * n for a, x in zip(L0, v)], "L_config": [[n - x * n, n] for x in v]}
    return {"source_task": source, "target": target, "n": n, "hps": ["finetune", "probe"],
            "pairs": {i: {"dL": [x * n for x in v]} for i, v in dl.items()}, "runs": runs,
            "reference": {"L": [n - ref * n] * seeds}, "source_steps": {"early": 40, "steps-200": 200, "pretrained": 1500}}


def _both(fwd: dict, rev: dict):
    return [_digits("digits/0-4", "digits/5-9", fwd), _digits("digits/5-9", "digits/0-4", rev)]


def test_digits_findings_known_answers():
    ctrl = [0.001, -0.001, 0.0, 0.002, -0.002]
    fwd = {CONTROL: ctrl, "pretrained": [-0.3, -0.31, -0.29, -0.3, -0.3], "early": [0.1, 0.1, 0.11, 0.09, 0.1],
           "steps-200": [0.0] * 5}
    rev = {CONTROL: ctrl, "pretrained": [0.2, 0.21, 0.19, 0.2, 0.2], "early": [0.3, 0.31, 0.29, 0.3, 0.3],
           "steps-200": [0.0] * 5}
    D = S.digits_summary(_both(fwd, rev))
    F = D["findings"]
    assert F["digits-transfer"].decision.verdict == FAILS  # the converged 0–4 source costs bits
    assert F["digits-transfer-reverse"].decision.verdict == HOLDS
    a = F["digits-asymmetry"].decision
    assert a.verdict == HOLDS and a.interval.method == "welch" and a.interval.value == pytest.approx(-0.5)
    # longer source training: −0.4 and −0.1 per run, both directions below 0
    lw = F["digits-longer-source-worse"].decision
    assert lw.verdict == HOLDS and set(lw.parts) == set(D["directions"])
    assert F["digits-longer-source-worse"].value == pytest.approx(-0.25)
    assert [p["steps"] for p in D["directions"]["digits/0-4 -> digits/5-9"]["steps"]] == [40, 200, 1500]
    assert D["checks"]["seed-vs-seed-equivalent-digits"].passed and S.digits_control_word(D) == "equivalent"
    assert all(f.decision.p == f.decision.p for f in F.values())  # every finding carries a p
    ag = S.agreement({"bodies": {}, "findings": {}, "vs_shuffled": {}, "scores": {}}, D)
    assert ag["digits_cost"] == ["digits/0-4 -> digits/5-9"]


def test_digits_symmetry_and_noise_decide_nothing():
    ctrl = [0.001, -0.001, 0.0, 0.002, -0.002]
    same = {CONTROL: ctrl, "pretrained": [0.2, 0.21, 0.19, 0.2, 0.2], "early": [0.1, 0.3, 0.2, 0.0, 0.4],
            "steps-200": [0.0] * 5}
    D = S.digits_summary(_both(same, same))
    F = D["findings"]
    assert F["digits-asymmetry"].decision.verdict == OPEN  # equal directions: never "does not hold"
    assert F["digits-longer-source-worse"].decision.verdict == OPEN
    # one direction where the longer source is clearly better: against
    better = {**same, "early": [0.0, 0.01, -0.01, 0.0, 0.0]}
    D = S.digits_summary(_both(better, same))
    assert D["findings"]["digits-longer-source-worse"].decision.verdict == FAILS
    # a biased control in one direction fails the check, whatever the other
    biased = {**same, CONTROL: [0.3, 0.31, 0.29, 0.3, 0.3]}
    D = S.digits_summary(_both(same, biased))
    assert not D["checks"]["seed-vs-seed-equivalent-digits"].passed and S.digits_control_word(D) == "biased"


def test_seed_control_summary_and_digits_details():
    t = _transfer("code/module", {CONTROL: [0.02, -0.01]})
    sc = S.seed_control_summary({"target": "code/module", "dL_per_label": [0.02, -0.01, 0.05, -0.04],
                                 "swapped_dL_per_label": [-0.02, 0.01]}, t)
    assert sc["reproduces_own"] and sc["swap_flips_sign"] and sc["above_zero"] == 2
    sd = np.std([0.02, -0.01, 0.05, -0.04], ddof=1)
    assert sc["seeds_needed"] == int(np.ceil((2.2 * sd / 0.05) ** 2))
    sc = S.seed_control_summary({"target": "code/module", "dL_per_label": [0.02, -0.01, 0.05],
                                 "swapped_dL_per_label": [0.02, 0.01]}, t)
    assert not sc["swap_flips_sign"]
    fwd = {CONTROL: [0.0] * 3, "pretrained": [-0.1] * 3, "early": [0.0] * 3, "steps-200": [0.0] * 3}
    D = S.digits_summary(_both(fwd, {**fwd, "pretrained": [0.1] * 3}))
    dig = _digits("digits/0-4", "digits/5-9", fwd)
    d = S.digits_details(dig, D)
    assert d["bits"] == pytest.approx(-10) and d["fixed"] == "finetune" and d["dL_fixed"] == pytest.approx(-0.1)
    assert d["best_remedy"] == "finetune" and d["probe_pretrained"] == d["probe_scratch"] == N
    rows = S.digits_table({**dig, "diagnostics": {}, "logme": {}, "runs": {i: {**r, "ece": [0.1] * 3}
                                                                          for i, r in dig["runs"].items()}},
                          D["directions"]["digits/0-4 -> digits/5-9"], [SCRATCH, "pretrained", "absent"])
    assert [r["init"] for r in rows] == [SCRATCH, "pretrained", "reference"]
    assert rows[1]["L"] == pytest.approx(N + 10) and rows[1]["dL"].value == pytest.approx(-0.1) and rows[0]["dL"] is None
    bits = S.candidate_bits(dig, [SCRATCH, "pretrained"])
    assert bits == {"finetune": [N, N + 10], "probe": [N, N], "tuned": [N, N + 10]}


# ------------------------------------------------------------------------------- exposed and unexposed code
def test_exposure_sets_our_bodies_on_read_and_unread_code_side_by_side():
    """ΔL per label against θ0 on code/module and on code/agents per init (t intervals over runs), and the
    difference with Welch's interval (different examples: not paired); the bodies first, θ0′ last; other
    targets play no part."""
    code = {"code/module": [0.1, 0.12, 0.11], "code/agents": [0.05, 0.06, 0.04], "sentiment/movies": [9.0] * 3}
    prose = {"code/module": [0.02, 0.03, 0.01], "code/agents": [0.02, 0.04, 0.0], "sentiment/movies": [9.0] * 3}
    ctrl = {t: [0.001, -0.001, 0.0] for t in code}
    K = {"code/module": 8, "code/agents": 4, "sentiment/movies": 2}
    ts = [dict(_transfer(t, {CONTROL: ctrl[t], "code": code[t], "prose": prose[t]}), K=K[t]) for t in code]
    ex = S.exposure(ts)
    assert (ex["exposed"], ex["unexposed"]) == ("code/module", "code/agents")
    assert list(ex["inits"]) == ["code", "prose", CONTROL]
    assert ex["K"] == {"code/module": 8, "code/agents": 4} and ex["n"] == {"code/module": N, "code/agents": N}
    c = ex["inits"]["code"]
    assert c["exposed"].value == pytest.approx(0.11) and c["unexposed"].value == pytest.approx(0.05)
    assert c["exposed"].ci == pytest.approx(intervals.mean_ci([0.1, 0.12, 0.11]).ci)
    assert c["difference"].value == pytest.approx(0.06) and c["difference"].method == "welch"
    assert c["difference"] == intervals.diff_ci([0.1, 0.12, 0.11], [0.05, 0.06, 0.04])
    assert c["difference"].lo > 0  # 0.06 apart with a spread of 0.01 per run
    p = ex["inits"]["prose"]["difference"]
    assert p.value == pytest.approx(0.0) and p.lo < 0 < p.hi
    header, rows = S.exposure_table(ex)
    assert [r[0] for r in rows] == ["code LM", "prose LM", "θ0′ (2nd random init)"]
    assert all(len(r) == len(header) for r in rows) and rows[0][1] == "+0.110 [+0.085, +0.135]"


def test_exposure_is_none_without_both_code_targets():
    """At smoke the transfer runs code/module alone: nothing to set side by side."""
    assert S.exposure([dict(_transfer("code/module", {"code": [0.1, 0.1, 0.1]}), K=8)]) is None
    assert S.exposure([]) is None


# ------------------------------------------------------------------------------- the grids
def _chose(record, choices: dict, L_config: dict | None = None, hps=("finetune", "head-fast-body-slow")):
    """A record whose inits coded their blocks with `choices[init]` (names, one list per run) and, alone,
    would have coded them in `L_config[init]` bits (one list per run, a value per candidate)."""
    record = {**record, "hps": list(hps), "runs": {i: dict(r) for i, r in record["runs"].items()}}
    for i, ch in choices.items():
        record["runs"][i]["choices"] = ch
        if L_config and i in L_config:
            record["runs"][i]["L_config"] = L_config[i]
    return record


def test_grid_choices_count_the_blocks_that_had_a_choice_per_init():
    """Our transfer's two candidates, pooled over runs and targets, the first block (always candidate 0)
    left out; with two candidates both are edges, so every init that chose flags. The reference (its
    choices stored as indices) is its own row. by="runs": each run's best single candidate."""
    two = ("finetune", "head-fast-body-slow")
    ts = []
    for t in ("code/module", "code/agents"):
        rec = _transfer(t, {CONTROL: [0.0] * 3, "code": [0.1] * 3})
        ts.append(_chose(rec, {SCRATCH: [["finetune"] * 3] * 3,
                               CONTROL: [["finetune", "finetune", "head-fast-body-slow"]] * 3,
                               "code": [["finetune", "head-fast-body-slow", "head-fast-body-slow"]] * 3},
                         {SCRATCH: [[90.0, 95.0]] * 3, "code": [[95.0, 90.0]] * 2 + [[90.0, 95.0]]}))
    refs = [{"hps": ["C=1", "C=10"], "choices": [[0, 1, 1]] * 3, "L_config": [[50.0, 40.0]] * 3}, None]
    use = S.grid_choices(ts, refs)
    assert list(use) == [SCRATCH, CONTROL, "code", "reference"]
    assert use[SCRATCH].grid == two and use[SCRATCH].counts == (12, 0) and use[SCRATCH].blocks == 12
    assert use[CONTROL].counts == (6, 6) and use[CONTROL].top == "finetune"  # a tie: the first
    assert use["code"].counts == (0, 12) and use["code"].top == "head-fast-body-slow"
    assert all(u.edge_wins for u in use.values())  # two candidates: no interior
    assert use["reference"].grid == ("C=1", "C=10") and use["reference"].counts == (0, 6)  # one target's
    runs = S.grid_choices(ts, refs, by="runs")
    assert runs[SCRATCH].counts == (6, 0) and runs["code"].counts == (2, 4) and runs[CONTROL].blocks == 0
    assert runs["reference"].counts == (0, 3)
    header, rows = S.grid_table(ts, refs)
    assert all(len(r) == len(header) for r in rows)
    assert rows[0] == ["θ0 (random)", "**finetune: 12** · head-fast-body-slow: 0 (edge)",
                       "**finetune: 6** · head-fast-body-slow: 0 (edge)"]
    assert rows[1][2] == "–" and rows[3][0] == "TF-IDF + logistic regression"
    with pytest.raises(ValueError):
        S.grid_choices(ts, refs, by="targets")
    with pytest.raises(ValueError):  # one reference per record
        S.grid_choices(ts, refs[:1])
    with pytest.raises(ValueError):  # records that chose among different candidates are not pooled
        S.grid_choices([ts[0], _chose(ts[1], {}, hps=("finetune", "probe"))])


def test_grid_page_for_the_transfer_and_minilm():
    """MiniLM's fine-tune chooses among three learning rates, so an interior rate can win (no flag) while an
    init that keeps the smallest rate flags; each MiniLM target carries its own reference."""
    grid = ("finetune-lr3e-5", "finetune-lr1e-4", "finetune-lr3e-4")
    targets = {}
    for t in ("sentiment/tweets", "sentiment/movies"):
        rec = _transfer(t, {CONTROL: [0.0] * 3, "minilm": [0.1] * 3})
        rec = _chose(rec, {SCRATCH: [[grid[0], grid[0], grid[0]]] * 3, CONTROL: [[grid[0], grid[0], grid[1]]] * 3,
                           "minilm": [[grid[0], grid[1], grid[1]]] * 3}, hps=grid)
        rec["reference"] = {"hps": ["C=1", "C=10"], "choices": [[0, 1, 0]] * 3}
        targets[t] = rec
    mini = {"mode": "finetune", "targets": targets}
    tr = [_chose(_transfer("code/module", {"code": [0.1] * 3}),
                 {SCRATCH: [["finetune", "finetune"]] * 3, "code": [["finetune", "head-fast-body-slow"]] * 3})]
    g = S.grid_page(tr, mini)
    assert g["minilm_mode"] == "finetune" and g["minilm"]["grid"] == list(grid)
    assert g["minilm"]["edge"] == ["θ0 (random)", "θ0′ (2nd random init)", "TF-IDF + logistic regression"]
    assert "(edge)" not in g["minilm"]["table"][1][2][1]  # MiniLM: 1e-4 won, inside the grid
    assert g["transfer"]["grid"] == ["finetune", "head-fast-body-slow"]
    assert g["transfer"]["edge"] == ["θ0 (random)", "code LM"]
    assert g["transfer"]["table"] == S.grid_table(tr)
    assert S.grid_page(tr)["minilm"] is None
