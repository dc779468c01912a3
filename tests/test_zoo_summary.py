"""The zoo's summary (experiments.zoo_summary) on small synthetic records with known answers: every finding
it decides holds on a planted effect, does not hold on a planted opposite, and stays inconclusive (or does not
hold, where the claim is a size the null lacks) on noise; the leaderboard pairs runs and ranks like with like.
No training."""
from __future__ import annotations

import math

import numpy as np
import pytest

from decoupling.core import verdicts
from decoupling.experiments import zoo as Z
from decoupling.experiments import zoo_summary as S

RUNS = [0, 1, 2]
N = 100  # labels coded per run
SPREAD = np.array([-1.0, 0.0, 1.0])  # bits per run around a mean: a t interval over 3 runs of ±5.4 bits


ENDS = [16, 32, 64, N]  # block ends; the proxies read the first 32 labels, the later blocks hold 68
SHARE = [0.16, 0.16, 0.32, 0.36]  # each block's share of a run's bits: the later blocks' L·0.68 / 68 = L/N per label


def cell(model, target, L, scratch=None, control=None, runs=RUNS, n=N, K=2, kl=0.3, floor=0.05, test_bits=0.5,
         twin_test_bits=None, logme=(1.0, 0.0), logme_first=None):
    """A zoo_cell record: L per run of the pretrained init (its twin's and θ0′'s default to 99 bits per run),
    spread over blocks by SHARE, the essay's KL of θP and of θ0′ against θ0, held-out bits per example of θP
    and θ0, LogME of θP and θ0 on all labels and on the first 32 (`logme_first`, default the same)."""
    k = len(runs)
    twin = [99.0] * k if scratch is None else list(scratch)
    first = logme if logme_first is None else logme_first

    def blocks(Ls):
        return [[x * s for s in SHARE] for x in Ls]
    return {"model": model, "target": target, "runs_seeds": list(runs), "n": n, "K": K, "n_test": 16,
            "max_tokens": 32, "ends": ENDS, "proxy_labels": 32,
            "runs": {Z.PRETRAINED: {"L": list(L), "block_bits": blocks(L), "test_bits": [[1.0, test_bits]] * k},
                     Z.SCRATCH: {"L": twin, "block_bits": blocks(twin),
                                 "test_bits": [[1.0, math.log2(K) if twin_test_bits is None else twin_test_bits]] * k},
                     Z.CONTROL: {"L": twin if control is None else list(control)}},
            "pairs": {Z.PRETRAINED: {"essay_kl": [[0.1, kl]] * k}, Z.CONTROL: {"essay_kl": [[0.1, floor]] * k}},
            "proxies": {str(r): {Z.PRETRAINED: {"logme": logme[0]}, Z.SCRATCH: {"logme": logme[1]}} for r in runs},
            "proxies_first": {str(r): {Z.PRETRAINED: {"logme": first[0]}, Z.SCRATCH: {"logme": first[1]}}
                              for r in runs},
            "platform": {"n_params": 1_000_000, "params": "1.0M", "body_profile": "smoke"}}


def ref(target, L=None, runs=RUNS, n=N, test_bits=0.6):
    return {"target": target, "runs_seeds": list(runs), "L": list(L if L is not None else 100.0 + SPREAD),
            "n": n, "K": 2, "rows": 200, "n_test": 16, "cut_train": 0, "cut_test": 0, "max_tokens": 32,
            "test_bits": [[1.0, test_bits]] * len(runs)}


def refs():
    return [ref(t) for t in Z.TARGETS]


def saving(bits_per_label, target=None):
    """L per run of a row that saves `bits_per_label` against the reference (100 bits per run ± SPREAD)."""
    return list(100.0 + SPREAD - bits_per_label * N)


# ---------------------------------------------------------------------------------- the leaderboard
def test_summary_pairs_runs_and_ranks_like_with_like():
    runs_ref = [ref(t, [100.0, 102.0, 98.0]) for t in Z.TARGETS]
    # "a" saves exactly 10 bits of 100 labels against the reference on every run and target; "b" saves 5
    cells = [cell("a", t, [90.0, 92.0, 88.0]) for t in Z.TARGETS]
    cells += [cell("b", t, [95.0, 97.0, 93.0]) for t in Z.TARGETS]
    cells += [cell("c", t, [50.0, 50.0, 50.0]) for t in Z.TARGETS[:2]]
    z = S.Zoo(cells, runs_ref)
    vs = S.vs_reference(z, "a")
    assert math.isclose(vs["all"].value, 0.10) and math.isclose(vs["per_target"][Z.TARGETS[0]].value, 0.10)
    board = S.leaderboard(z, ["a", "b", "c"])
    assert board["ranked"] == ["a", "b"] and board["apart"] == ["c"]  # c misses four targets: not ranked
    assert math.isclose(board["gaps"][0]["all"].value, 0.05)  # a − b, paired on the same runs
    assert verdicts.above(board["gaps"][0]["all"], 0).verdict == "holds"
    fig = S.per_target_figure(board)
    assert list(fig) == ["a", "b"] and np.allclose(fig["a"]["value"], 0.10) and np.allclose(fig["a"]["below"], 0)
    assert S.apart(z, board) == ["c (2 targets)"]
    header, rows = S.per_target_table(board)
    assert len(header) == 1 + len(Z.TARGETS) and rows[2][1:3] == ["+0.500", "+0.500"] and rows[2][3] == "–"
    assert S.about(z)["runs"] == {"a": 3, "b": 3, "c": 3}


def test_control_equivalence_per_target():
    """Identical twins are shown equivalent on every target; a second init 0.3 bits per label away is not."""
    same = [cell("a", t, saving(0.1)) for t in Z.TARGETS]
    z = S.Zoo(same, refs())
    ctl = S.control(z, "a")
    assert ctl["all"].value == 0 and ctl["equivalent"] == len(Z.TARGETS) and S.controls_all_equivalent(z)
    off = [cell("a", t, saving(0.1), scratch=[99.0, 99.0, 99.0], control=[69.0, 69.5, 68.5]) for t in Z.TARGETS]
    ctl = S.control(S.Zoo(off, refs()), "a")
    assert {d.verdict for d in ctl["equivalence"].values()} == {"does not hold"} and ctl["equivalent"] == 0


# ---------------------------------------------------------------------------------- findings over groups
def _zoo(per_target_saving: dict, model="mpnet", **kw) -> S.Zoo:
    return S.Zoo([cell(model, t, saving(per_target_saving[t]), **kw) for t in Z.TARGETS], refs())


def test_beats_reference_is_decided_on_every_target_of_its_group():
    everywhere = _zoo({t: 0.3 for t in Z.TARGETS})
    f = S.beats_reference(everywhere, "mpnet", "sentiment")
    assert f.name == "mpnet-beats-reference-sentiment" and f.decision.verdict == "holds"
    assert set(f.decision.parts) == set(Z.SENTIMENT) and f.decision.p < 0.05 and f.applies_to == ("full",)
    # one sentiment target where TF-IDF clearly wins: does not hold, though the mean over the group is positive
    one_loses = _zoo({t: (-0.3 if t == Z.SENTIMENT[0] else 0.6) for t in Z.TARGETS})
    assert S.beats_reference(one_loses, "mpnet", "sentiment").decision.verdict == "does not hold"
    assert S.compare(one_loses, "mpnet", S.REFERENCE)["groups"]["sentiment"].value > 0
    # no difference on one target (its interval straddles 0): inconclusive
    null = _zoo({t: (0.0 if t == S.CODE_PROSE[0] else 0.3) for t in Z.TARGETS})
    d = S.beats_reference(null, "mpnet", "code & prose").decision
    assert d.verdict == "inconclusive" and d.p >= 0.05
    assert S.beats_reference(null, "mpnet", "code & prose").name == "mpnet-beats-reference-code-prose"


def test_two_targets_each_clearly_above_zero_hold_where_an_interval_over_two_means_could_not():
    """The reason for deciding target by target: a t interval over two target means has 1 df (t = 12.7), so
    two clear per-target wins of different sizes left the group inconclusive."""
    from decoupling.core import intervals
    z = _zoo({S.CODE_PROSE[0]: 0.1, S.CODE_PROSE[1]: 0.5, **{t: 0.2 for t in Z.SENTIMENT}})
    assert S.beats_reference(z, "mpnet", "code & prose").decision.verdict == "holds"
    per = {t: z.paired("mpnet", S.REFERENCE, t) for t in S.CODE_PROSE}
    assert intervals.clustered_ci(per).lo < 0  # the old rule: inconclusive


def test_larger_platform_more_bits_pairs_the_two_platforms():
    cells = [cell("mpnet", t, saving(0.4)) for t in Z.TARGETS] + [cell("minilm", t, saving(0.2)) for t in Z.TARGETS]
    z = S.Zoo(cells, refs())
    f = S.larger_platform(z, "code & prose")
    assert f.name == "larger-platform-more-bits-code-prose" and f.decision.verdict == "holds"
    assert math.isclose(f.decision.interval.value, 0.2)
    swapped = S.Zoo([cell("mpnet", t, saving(0.2)) for t in Z.TARGETS]
                    + [cell("minilm", t, saving(0.4)) for t in Z.TARGETS], refs())
    assert S.larger_platform(swapped, "sentiment").decision.verdict == "does not hold"


def test_far_larger_pretraining_needs_every_body_and_target():
    def zoo_of(body_saving):
        cells = [cell("smollm2", t, saving(0.5)) for t in Z.TARGETS]
        cells += [cell(b, t, saving(body_saving.get((b, t), 0.1))) for b in Z.BODIES for t in Z.TARGETS]
        return S.Zoo(cells, refs())
    f = S.far_larger_pretraining(zoo_of({}))
    assert f.decision.verdict == "holds" and len(f.decision.parts) == 4
    beaten = zoo_of({("body:prose", S.CODE_PROSE[1]): 0.9})  # one body beats SmolLM2 on one target
    assert S.far_larger_pretraining(beaten).decision.verdict == "does not hold"
    tied = zoo_of({("body:prose", S.CODE_PROSE[1]): 0.5})
    assert S.far_larger_pretraining(tied).decision.verdict == "inconclusive"


def test_one_platform_serves_tasks_is_non_inferiority_on_every_target():
    def zoo_of(platform_bits, spread=0.0):
        cells = []
        for t in Z.TARGETS:
            c = cell("mpnet", t, saving(0.1), test_bits=platform_bits.get(t, 0.55))
            c["runs"][Z.PRETRAINED]["test_bits"] = [[1.0, c["runs"][Z.PRETRAINED]["test_bits"][0][1] + spread * s]
                                                    for s in SPREAD]
            cells.append(c)
        return S.Zoo(cells, refs())  # the specialist: 0.6 bits per held-out example on every run
    assert S.serves_tasks(zoo_of({})).decision.verdict == "holds"  # 0.05 better everywhere, no spread
    worse = zoo_of({Z.TARGETS[2]: 0.9})  # 0.3 bits worse than the specialist on one task
    assert S.serves_tasks(worse).decision.verdict == "does not hold"
    noisy = zoo_of({}, spread=0.1)  # better on average, but three runs cannot bound it below the margin
    d = S.serves_tasks(noisy).decision
    assert d.verdict == "inconclusive" and d.p >= 0.05


# ---------------------------------------------------------------------------------- rank correlations
def test_rank_interval_is_fishers_z_with_the_spearman_standard_error():
    x = np.arange(28.0)
    y = x.copy()
    y[::2] = y[::2][::-1]  # a partial scramble: rho well inside (0, 1)
    iv = S.rank_interval(x, y)
    se = 1.03 / 5.0
    assert math.isclose(iv.lo, math.tanh(math.atanh(iv.value) - 1.96 * se), rel_tol=1e-9)
    assert math.isclose(iv.hi, math.tanh(math.atanh(iv.value) + 1.96 * se), rel_tol=1e-9)
    assert iv.n == 28 and iv.method == "fisher-z"
    assert math.isclose(iv.p, 2 * (1 - 0.5 * (1 + math.erf(math.atanh(iv.value) / se / math.sqrt(2)))), rel_tol=1e-6)
    few = S.rank_interval([1, 2, 3, 4], [1, 2, 3, 4])
    assert (few.lo, few.hi) == (-1.0, 1.0)


def _kl_zoo(kl_of_dl) -> S.Zoo:
    """5 models × 6 targets with ΔL spread over cells and the essay's KL a function of it."""
    cells = []
    for i, m in enumerate(["m1", "m2", "m3", "m4", "m5"]):
        for j, t in enumerate(Z.TARGETS):
            dl = 0.05 * (i * 6 + j) - 0.4  # −0.40 … +1.05 bits per label
            cells.append(cell(m, t, list(99.0 - dl * N + SPREAD * 0.1), kl=kl_of_dl(dl, i, j)))
    return S.Zoo(cells, refs())


def test_essay_kl_tracks_bits_on_known_rankings():
    up = S.kl_tracks_bits(_kl_zoo(lambda dl, i, j: math.exp(dl)))
    assert up.decision.verdict == "holds" and math.isclose(up.decision.interval.value, 1.0)
    assert up.decision.p < 0.05
    down = S.kl_tracks_bits(_kl_zoo(lambda dl, i, j: math.exp(-dl)))
    assert down.decision.verdict == "does not hold"
    rng = np.random.default_rng(0)
    noise = rng.permutation(30)
    null = S.kl_tracks_bits(_kl_zoo(lambda dl, i, j: float(noise[i * 6 + j]) + 1.0))
    assert null.decision.verdict != "holds"
    kv = S.kl_vs_bits(_kl_zoo(lambda dl, i, j: math.exp(dl)))
    assert kv["negative_dL"] == 8 and kv["n"] == 30 and kv["models"] == 5 and kv["targets"] == 6
    assert kv["twin_learned_median"] == 0  # the twin's held-out bits are log2 K: it learned nothing
    assert kv["negative_dL_kl_above_floor"] == 8  # KL 0.67 … 0.95 against a floor of 0.05


def test_proxies_rank_like_bits_on_every_target():
    unrelated = [3, 7, 0, 9, 4, 1, 8, 2, 6, 5]  # LogME in an order that has nothing to do with the bits

    def zoo_of(sign, noise=False):
        cells = []
        for i, m in enumerate(["m1", "m2", "m3", "m4", "m5"]):
            for t in Z.TARGETS:
                L = 90.0 - 10 * i  # a better model codes in fewer bits; its twin in 99 + i
                logme = (unrelated[2 * i], unrelated[2 * i + 1]) if noise else (sign * -L, sign * -(99.0 + i))
                cells.append(cell(m, t, [L] * 3, scratch=[99.0 + i] * 3, logme=logme))
        return S.Zoo(cells, refs())
    null = S.proxies_rank_like_bits(zoo_of(+1, noise=True)).decision
    assert null.verdict == "inconclusive" and abs(null.interval.value) < 0.5  # 10 candidates cannot rule out 0.5
    good = S.proxies_rank_like_bits(zoo_of(+1))
    assert good.decision.verdict == "holds" and len(good.decision.parts) == len(Z.TARGETS)
    assert all(iv.n == 10 for iv in good.decision.parts.values())
    assert S.proxies_rank_like_bits(zoo_of(-1)).decision.verdict == "does not hold"
    header, rows = S.proxy_table(zoo_of(+1))
    assert rows[0][1].startswith("+1.00") and len(header) == 4 and "first labels" in header[1]


def test_the_proxy_finding_reads_the_first_labels_against_the_bits_of_the_later_ones():
    """LogME on the first labels is set against the code length of the blocks after them (which it never
    read), not against L: a zoo where the two rank the candidates in opposite orders tells them apart."""
    c = cell("m", Z.TARGETS[0], [100.0] * 3)
    c["runs"][Z.PRETRAINED]["block_bits"] = [[10.0, 20.0, 30.0, 40.0]] * 3
    assert S.later_bits(c, Z.PRETRAINED) == [70.0 / 68] * 3  # blocks 32–64 and 64–100: 68 labels

    def zoo_of(first_tracks_later: bool, in_sample_tracks_L: bool):
        cells = []
        for i, m in enumerate(["m1", "m2", "m3", "m4", "m5"]):
            for t in Z.TARGETS:
                L, twin = 90.0 - 10 * i, 99.0 + i  # L falls with i; the later blocks' bits rise with it
                c = cell(m, t, [L] * 3, scratch=[twin] * 3,
                         logme=(-L, -twin) if in_sample_tracks_L else (L, twin),
                         logme_first=(-i, -10.0 + i) if first_tracks_later else (i, 10.0 - i))
                # the later blocks: 10 + i bits per label for θP (worse as i grows), 20 − i for the twin
                for init, per in ((Z.PRETRAINED, 10.0 + i), (Z.SCRATCH, 20.0 - i)):
                    c["runs"][init]["block_bits"] = [[1.0, 1.0, per * 32, per * 36]] * 3
                cells.append(c)
        return S.Zoo(cells, refs())
    assert S.proxies_rank_like_bits(zoo_of(True, False)).decision.verdict == "holds"
    assert S.proxies_rank_like_bits(zoo_of(False, True)).decision.verdict == "does not hold"
    in_sample = S.proxies_vs_bits(zoo_of(False, True), first=False)
    assert all(math.isclose(iv.value, 1.0) for iv in in_sample.values())  # shown beside it, never decided on
    # records made before the first-labels proxies: left out of the finding, still in the in-sample column
    old = zoo_of(True, True)
    for c in old.cells.values():
        del c["proxies_first"], c["proxy_labels"]
    assert S.proxies_vs_bits(old) == {} and len(S.proxies_vs_bits(old, first=False)) == len(Z.TARGETS)


def test_every_platform_finding_carries_a_p_value_and_only_decidable_ones_appear():
    cells = [cell(m, t, saving(0.2 + 0.1 * k)) for k, m in enumerate(Z.MODELS) for t in Z.TARGETS]
    z = S.Zoo(cells, refs())
    found = [f for fs in S.platform_findings(z).values() for f in fs]
    assert len(found) == 6 + 2 + 1 + 1 == len({f.name for f in found})
    assert all(np.isfinite(f.decision.p) and f.criterion and f.essay for f in found)
    only_minilm = S.Zoo([c for c in cells if c["model"] in ("minilm", *Z.BODIES)], refs())
    assert [f.name for fs in S.platform_findings(only_minilm).values() for f in fs] == [
        "minilm-beats-reference-sentiment", "minilm-beats-reference-code-prose"]
    assert S.platforms_page(only_minilm)["larger"] is None and S.kl_page(only_minilm)["finding"].decision.p >= 0
    assert S.board_page(z)["board"]["ranked"][0] == "body:prose"  # the largest planted saving
    assert S.proxies_page(z)["finding"].name == "proxies-rank-like-bits"


@pytest.mark.parametrize("fn", ["board_table", "platforms_table", "larger_table", "scale_table", "serves_table",
                                "inputs_table"])
def test_tables_are_rectangular(fn):
    cells = [cell(m, t, saving(0.2 + 0.1 * k)) for k, m in enumerate(Z.MODELS) for t in Z.TARGETS]
    z = S.Zoo(cells, refs())
    args = (z, S.leaderboard(z)) if fn == "board_table" else (z,)
    header, rows = getattr(S, fn)(*args)
    assert rows and all(len(r) == len(header) for r in rows)


def test_the_zoo_module_never_imports_its_summary():
    """The summary is outside the records' keys: experiments.zoo must not import it."""
    from decoupling.pipeline import provenance
    assert not any("zoo_summary" in str(d) for d in provenance.dependencies("decoupling.experiments.zoo"))


# ---------------------------------------------------------------------------------- the grids
def test_grid_report_counts_the_blocks_that_had_a_choice_per_row():
    """Choices pooled over runs and targets per row (pretrained, twin, second init, reference), the first
    coded block (always candidate 0, nothing seen) left out; an edge that wins is flagged. by="runs": each
    run's best single value, from the code lengths each candidate would have had alone (L_config)."""
    hps = ["probe-lr1e-2", "probe-lr2e-3", "probe-lr5e-2", "probe-lr2.5e-1"]  # candidate order, not ascending
    cells = []
    for t in Z.TARGETS[:2]:
        c = cell("mpnet", t, [90.0] * 3)
        c["hps"] = hps
        c["runs"][Z.PRETRAINED]["choices"] = [["probe-lr1e-2", "probe-lr5e-2", "probe-lr5e-2", "probe-lr1e-2"]] * 3
        c["runs"][Z.SCRATCH]["choices"] = [["probe-lr1e-2", "probe-lr2e-3", "probe-lr2e-3", "probe-lr1e-2"]] * 3
        c["runs"][Z.CONTROL]["choices"] = [["probe-lr1e-2", "probe-lr2.5e-1", "probe-lr1e-2", "probe-lr1e-2"]] * 3
        # alone, 5e-2 (the third candidate) codes θP shortest in every run; 0.25 the twin's; the second init has none
        c["runs"][Z.PRETRAINED]["L_config"] = [[95.0, 99.0, 90.0, 93.0]] * 3
        c["runs"][Z.SCRATCH]["L_config"] = [[99.0, 98.0, 97.0, 96.0]] * 3
        cells.append(c)
    rs = [dict(ref(t), hps=["C=1", "C=10", "C=100"], choices=[[0, 1, 1, 2]] * 3,
               L_config=[[50.0, 40.0, 45.0]] * 3) for t in Z.TARGETS[:2]]
    z = S.Zoo(cells, rs)
    rep = S.grid_report(z)
    assert set(rep) == {"mpnet", "mpnet@scratch", "mpnet@scratch-seed", "tfidf"}
    p, twin, second, tfidf = rep["mpnet"], rep["mpnet@scratch"], rep["mpnet@scratch-seed"], rep["tfidf"]
    assert p.grid == (2e-3, 1e-2, 5e-2, 2.5e-1) and p.counts == (0, 6, 12, 0) and p.blocks == 18
    assert p.top == 5e-2 and not p.edge_wins
    assert twin.counts == (12, 6, 0, 0) and twin.top == 2e-3 and twin.edge_wins  # the low edge wins
    assert second.counts == (0, 12, 0, 6) and not second.edge_wins
    assert tfidf.grid == (1.0, 10.0, 100.0) and tfidf.counts == (0, 12, 6) and not tfidf.edge_wins
    runs = S.grid_report(z, "runs")
    assert runs["mpnet"].counts == (0, 0, 6, 0) and not runs["mpnet"].edge_wins
    assert runs["mpnet@scratch"].counts == (0, 0, 0, 6) and runs["mpnet@scratch"].edge_wins  # the top edge
    assert runs["mpnet@scratch-seed"].blocks == 0 and runs["tfidf"].counts == (0, 6, 0)
    with pytest.raises(ValueError):
        S.grid_report(z, "targets")
    header, rows = S.grid_table(z)
    assert all(len(r) == len(header) for r in rows)
    assert rows[0][1] == "0.002: 0 · 0.01: 6 · **0.05: 12** · 0.25: 0"
    assert rows[0][2] == "0.002: 0 · 0.01: 0 · **0.05: 6** · 0.25: 0"
    assert rows[1][1].endswith("(edge)") and rows[2][0].endswith("second random init") and rows[2][2] == "–"
    assert S.grid_value("probe-lr2.5e-1") == 0.25 and S.grid_value("C=1000") == 1000.0


def test_grid_page_names_the_rows_whose_edge_won():
    hps = ["probe-lr1e-2", "probe-lr2e-3", "probe-lr5e-2"]
    c = cell("mpnet", Z.TARGETS[0], [90.0] * 3)
    c["hps"] = hps
    c["runs"][Z.PRETRAINED]["choices"] = [["probe-lr1e-2", "probe-lr1e-2", "probe-lr1e-2"]] * 3  # interior: 1e-2
    c["runs"][Z.SCRATCH]["choices"] = [["probe-lr1e-2", "probe-lr2e-3", "probe-lr2e-3"]] * 3  # the low edge
    c["runs"][Z.CONTROL]["choices"] = [["probe-lr1e-2", "probe-lr5e-2", "probe-lr5e-2"]] * 3  # the high edge
    r = dict(ref(Z.TARGETS[0]), hps=["C=1", "C=10", "C=100"], choices=[[0, 1, 1]] * 3)
    g = S.grid_page(S.Zoo([c], [r]))
    assert g["rows"] == 4 and g["table"] == S.grid_table(S.Zoo([c], [r]))
    assert g["edge"] == ["all-mpnet-base-v2 — random init", "all-mpnet-base-v2 — second random init"]


# ---------------------------------------------------------------------------------- exposed and unexposed code
AGENTS = S.UNEXPOSED[0]


def test_exposure_sets_each_row_on_read_and_unread_code_side_by_side():
    """Per leaderboard row, bits per label saved against TF-IDF on code/module and on code/agents (t intervals
    over runs) and their difference (Welch: the two targets code different examples). mpnet saves 0.3 on the
    code it may have read and 0.1 on the code it cannot have; its twin (99 bits a run against the reference's
    100 ± 1) saves 0.01 on both; a model without code/agents is left out."""
    ref_agents = [100.0, 101.5, 98.5]  # a spread of its own, so the two targets' runs differ
    cells = [cell("mpnet", t, saving(0.3 if t == "code/module" else 0.2)) for t in Z.TARGETS]
    cells.append(cell("mpnet", AGENTS, [90.0, 90.0, 90.0]))  # saves 0.1, 0.115, 0.085
    cells += [cell("minilm", t, saving(0.2)) for t in Z.TARGETS]  # measured on the exposed targets only
    z = S.Zoo(cells, [*refs(), dict(ref(AGENTS, ref_agents), K=4)])
    ex = S.exposure(z)
    assert ex["exposed"] == "code/module" and ex["unexposed"] == AGENTS
    assert list(ex["rows"]) == ["mpnet", "mpnet@scratch"]
    assert ex["K"] == {"code/module": 2, AGENTS: 4} and ex["n"] == {"code/module": N, AGENTS: N}
    m, twin = ex["rows"]["mpnet"], ex["rows"]["mpnet@scratch"]
    assert m["exposed"].value == pytest.approx(0.3) and m["unexposed"].value == pytest.approx(0.1)
    assert m["exposed"].method == "t" and m["exposed"].n == 3
    assert m["difference"].value == pytest.approx(0.2) and m["difference"].method == "welch"
    assert m["difference"].lo < 0.2 < m["difference"].hi  # the agents' runs spread: a real interval
    assert twin["exposed"].value == pytest.approx(0.01) and twin["unexposed"].value == pytest.approx(0.01)
    half = 4.302653 * 0.01 / math.sqrt(3)  # t(0.975, 2 df) × sd / √3 of the savings 0, 0.01, 0.02
    assert twin["exposed"].ci == pytest.approx((0.01 - half, 0.01 + half), rel=1e-5)
    # the difference is the library's Welch interval of the two targets' per-run savings
    from decoupling.core import intervals
    want = intervals.diff_ci(z.paired("mpnet", S.REFERENCE, "code/module"), z.paired("mpnet", S.REFERENCE, AGENTS))
    assert m["difference"] == want
    header, rows = S.exposure_table(ex)
    assert len(rows) == 2 and all(len(r) == len(header) for r in rows)
    assert rows[0][0] == "all-mpnet-base-v2" and rows[0][1] == "+0.300 [+0.300, +0.300]"
    assert rows[1][0] == "all-mpnet-base-v2 — random init"
    page = S.exposure_page(z)
    assert page["table"] == (header, rows) and page["numbers"] is not None
    assert page["lab"] == {"all-mpnet-base-v2": (m["difference"], twin["difference"])}
    # the findings' suites and the leaderboard stay the exposed targets
    assert S.leaderboard(z)["ranked"] == ["mpnet", "minilm", "mpnet@scratch", "minilm@scratch"]
    assert AGENTS not in S.vs_reference(z, "mpnet")["per_target"]


def test_exposure_is_none_without_the_unexposed_target():
    """Smoke records have no code/agents: nothing to set side by side, and the page says where it is made."""
    z = S.Zoo([cell("minilm", t, saving(0.2)) for t in Z.TARGETS], refs())
    assert S.exposure(z) is None and S.exposure_page(z) is None
    # a reference without any row measured on it is not a comparison either
    assert S.exposure(S.Zoo([cell("minilm", t, saving(0.2)) for t in Z.TARGETS], [*refs(), ref(AGENTS)])) is None
