"""What runs cost (pipeline/cost.py): counting with the loops replaced by recorders gives known step, token
and example counts; tallies are cached by the run's results key; minutes are units over each shape's rate,
measured here (pipeline/rates.py)."""
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from decoupling import paths
from decoupling.core import batched, models, train
from decoupling.pipeline import cost, plan
from decoupling.pipeline.rates import measure, rates_path

CALLS: list[str] = []


@dataclass(frozen=True)
class LMCfg:
    steps: int = 6
    batch_size: int = 4


@dataclass(frozen=True)
class ProbeCfg:
    steps: int = 7
    n_test: int = 50


def toy_lm(cfg: LMCfg) -> dict:
    """A test-sized GPT-2 (context 32) pretrained on random tokens, evaluated once on 40 windows."""
    CALLS.append("lm")
    mc = models.PRESETS["test"]
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, mc.vocab_size, (2_000,), generator=g)
    evals = torch.randint(0, mc.vocab_size, (40 + mc.block_size,), generator=g)
    res = train.train_lm(models.build_lm(mc), tokens, train.TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size,
                                                                         progress=False), eval_tokens=evals)
    return {"loss": res["eval_loss_nats"]}


def toy_probe(cfg: ProbeCfg) -> dict:
    """A linear probe on 100 eight-dimensional vectors, batch 10, then predictions on n_test rows; three
    same-shaped probes trained as one batched run."""
    CALLS.append("probe")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(100, 8, generator=g), torch.randint(0, 3, (100,), generator=g)
    head = nn.Linear(8, 3)
    tc = train.TrainConfig(steps=cfg.steps, batch_size=10, progress=False)
    train.train_module(head, x, y, tc)
    q = train.predict_proba(head, x[:cfg.n_test])
    batched.train_many(lambda s: models.seeded(s, lambda: nn.Linear(8, 3)), [0, 1, 2], lambda k: ((x,), y), tc)
    return {"q": q.shape[0], "h_score": h_score_of(x, y)}


def h_score_of(x, y) -> float:
    """Host work the recorders time (measures.h_score runs for real)."""
    from decoupling.core import measures
    return float(measures.h_score(x.numpy().astype(np.float64), y.numpy()))


@pytest.fixture
def store(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "STORE_DIR", tmp_path / "store")
    monkeypatch.setenv("DECOUPLING_PROGRESS", "0")
    CALLS.clear()
    return tmp_path


def _runs(lm=LMCfg(), probe=ProbeCfg()):
    return [plan.Run("lm", toy_lm, lm, "smoke"), plan.Run("probe", toy_probe, probe, "smoke")]


def test_counting_gives_known_steps_tokens_and_examples(store, one_thread):
    before = (train._loop, batched._loop_many, train.predict_log_proba, models.build_lm)
    lm, probe = cost.count(_runs(), probe=False, child=False).tallies
    # 6 steps of 4 windows of 32 tokens; one evaluation reads 40 windows of 32 tokens
    assert (lm.steps, lm.member_steps, lm.tokens, lm.examples) == (6, 6, 6 * 4 * 32, 0)
    assert (lm.fwd_tokens, lm.fwd_examples) == (40 * 32, 0)
    assert lm.flops == 6 * 4 * models.flops_per_example(models.build_lm(models.PRESETS["test"]), 32)
    # one probe: 7 steps of 10; three batched: 7 vmapped steps of 3 x 10 (member steps 21); 50 rows predicted
    assert (probe.steps, probe.member_steps, probe.examples, probe.tokens) == (14, 7 + 21, 70 + 210, 0)
    assert (probe.fwd_examples, probe.fwd_tokens) == (50, 0)
    kinds = sorted((s["kind"], s["model"], s["inputs"], s["members"], s["unit"]) for s in probe.shapes.values())
    assert kinds == [("forward", "Linear 8->3", "50x8", 1, "example"),
                     ("train", "Linear 8->3", "10x8,10", 1, "example"),
                     ("train", "Linear 8->3", "3x10,3x10,3x10x8", 3, "example")]
    assert sorted(u for _, u in probe.work.values()) == [50, 70, 210]
    assert probe.host["measures.h_score"][0] == 1  # host work: run for real and timed, once
    # the recorders are gone afterwards
    assert (train._loop, batched._loop_many, train.predict_log_proba, models.build_lm) == before


def test_a_second_count_reads_the_cache_and_a_changed_config_recounts_only_its_run(store, one_thread):
    first = cost.count(_runs(), probe=False, child=False)
    assert first.counted == 2 and CALLS == ["lm", "probe"]
    again = cost.count(_runs(), probe=False, child=False)
    assert again.counted == 0 and CALLS == ["lm", "probe"]
    assert [t.work for t in again.tallies] == [t.work for t in first.tallies]
    changed = cost.count(_runs(probe=ProbeCfg(steps=9)), probe=False, child=False)
    assert changed.counted == 1 and CALLS == ["lm", "probe", "probe"]
    assert changed.tallies[1].steps == 18 and changed.tallies[0].steps == 6


def test_the_estimate_divides_each_shapes_units_by_its_rate(store, one_thread):
    t = cost.count(_runs(), probe=False, child=False).tallies[1]
    rate_of = {("train", 1): 7.0, ("train", 3): 21.0, ("forward", 1): 25.0}  # units per second
    rates = {k: {"rate": rate_of[s["kind"], s["members"]]} for k, s in t.shapes.items()}
    t.host = {"measures.h_score": [1, 3.0]}  # three seconds of host work timed while counting
    e = cost.estimate(t, rates)
    assert e.seconds == pytest.approx(70 / 7 + 210 / 21 + 50 / 25 + 3.0) and e.host_s == 3.0 and e.unmeasured == []
    del rates[next(k for k, s in t.shapes.items() if s["kind"] == "forward")]
    e = cost.estimate(t, rates)
    assert e.seconds == pytest.approx(23.0) and len(e.unmeasured) == 1


def test_measuring_fills_every_shape_once_and_a_missing_rate_recounts(store, one_thread):
    res = cost.count(_runs(), probe=True, child=False, seconds=0.01)
    shapes = {k for t in res.tallies for k in t.work}
    assert set(res.measured) == shapes and all(res.rates[k]["rate"] > 0 for k in shapes)
    assert cost.count(_runs(), probe=True, child=False, seconds=0.01).counted == 0
    rates_path().unlink()  # another dtype or CPU: no rates there yet
    again = cost.count(_runs(), probe=True, child=False, seconds=0.01)
    assert again.counted == 2 and set(again.measured) == shapes


def test_measure_times_calls_after_a_warm_up():
    calls = []

    def run(n):  # a clock that says every call takes 0.1 s, the first one 1 s
        calls.append(n)
        return 1.0 if len(calls) == 1 else 0.1 * n
    assert measure(run, units_per_call=32, seconds=0.5) == pytest.approx(320)
    assert calls[0] == 1 and sum(calls[1:]) >= 5  # half a second of 0.1 s calls, the warm-up not among them
