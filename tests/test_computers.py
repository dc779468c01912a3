"""Chapter 1 (book/computers.md): the break-even formula, the FLOPs-to-target extraction, the FLOP count
of a real run, and the cited timeline. Fast: no pretrained body, no data preparation."""
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
    assert s["per_task"]["a"]["t_star"] == pytest.approx(300.0 / 60.0)
    assert s["per_task"]["b"]["t_star"] is None and s["per_task"]["c"]["c_scratch"] is None
    assert s["savings"] == [60.0, 60.0] and s["dropped_pairs"] == 1 and s["censored_runs"] == 1
    assert s["t_star"] == pytest.approx(5.0) and s["ratio_geomean"] == pytest.approx(math.sqrt(0.25 * 0.4))
    res["tasks"]["a"]["runs"]["pretrained"] = [run(95.0)]
    res["tasks"]["b"]["runs"]["pretrained"] = [run(None)]
    del res["tasks"]["c"]
    s = C.summarize(res)
    assert s["saving_mean"] < 0 and s["t_star"] == "inf"


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
