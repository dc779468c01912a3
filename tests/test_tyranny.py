"""Chapter 3's experiments at tiny sizes: random labels are memorized but not generalized, the memorized-bits
estimator on known answers, the min-norm solver against numpy, the scaling helpers on an exact power law,
and bitwise determinism of every experiment on the CPU."""
import dataclasses
import math

import numpy as np
import pytest

from decoupling.core import intervals
from decoupling.experiments import tyranny as E


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("DECOUPLING_PROGRESS", "0")


# ---------------------------------------------------------------------------------------------- estimators
def test_memorized_bits_known_answers():
    n, K = 50, 10
    y = np.random.default_rng(0).integers(0, K, n)
    perfect = np.eye(K)[y]
    assert E.memorized_bits(perfect, y, K).sum() == pytest.approx(n * math.log2(K))
    uniform = np.full((n, K), 1.0 / K)
    assert np.allclose(E.memorized_bits(uniform, y, K), 0.0)
    # q(y|x) = 1/2 on the right label: log2 K − 1 bits per example
    half = np.full((n, K), 0.5 / (K - 1))
    half[np.arange(n), y] = 0.5
    assert E.memorized_bits(half, y, K).sum() == pytest.approx(n * (math.log2(K) - 1))
    # confidently wrong costs more than the uniform code: negative memorized bits
    wrong = np.eye(K)[(y + 1) % K] * 0.99 + 0.01 / K
    assert E.memorized_bits(wrong, y, K).sum() < 0


@pytest.mark.parametrize("shape", [(20, 50), (50, 20), (30, 30)])
def test_min_norm_solve_matches_numpy(shape):
    rng = np.random.default_rng(1)
    Phi, Y = rng.normal(size=shape), rng.normal(size=(shape[0], 3))
    beta = E.min_norm_solve(Phi, Y)
    assert np.allclose(beta, np.linalg.pinv(Phi) @ Y, atol=1e-8)
    assert np.allclose(beta, np.linalg.lstsq(Phi, Y, rcond=None)[0], atol=1e-8)


def test_min_norm_solve_rank_deficient():
    rng = np.random.default_rng(2)
    Phi = rng.normal(size=(40, 5)) @ rng.normal(size=(5, 60))  # rank 5 < 40 < 60
    Y = rng.normal(size=(40, 2))
    beta = E.min_norm_solve(Phi, Y)
    assert np.allclose(beta, np.linalg.lstsq(Phi, Y, rcond=None)[0], atol=1e-8)
    # minimum norm: orthogonal to the null space of Phi
    null = np.linalg.svd(Phi)[2][5:]
    assert np.abs(null @ beta).max() < 1e-8


def test_scaling_helpers_on_an_exact_power_law():
    N = np.geomspace(1e3, 1e6, 7)
    L = 3.0 * N ** -0.1
    assert np.allclose(E.local_slopes(N, L), 0.1)
    lo, hi = E.half_exponents(N, L)
    assert lo == pytest.approx(0.1) and hi == pytest.approx(0.1)
    # a curve flattening to a floor: the larger half's exponent is smaller
    lo, hi = E.half_exponents(N, 1.0 + 3.0 * N ** -0.3)
    assert hi < lo


def test_digits10_is_the_ten_class_task():
    d = E.digits10()
    (Xtr, ytr), (Xte, yte) = d["train"], d["test"]
    assert Xtr.shape[1] == Xte.shape[1] == 64 and len(Xtr) + len(Xte) == 1797
    assert set(ytr) == set(yte) == set(range(10))
    assert 0.0 <= Xtr.min() and Xtr.max() <= 1.0


# ---------------------------------------------------------------------------------------------- experiments
def test_random_labels_fit_but_do_not_generalize():
    """Zhang et al. 2017 at test size: a wide MLP fits random labels, and predicts the test set at chance,
    for every seed; each seed draws its own labels and init, and the capacity CI is a t interval over seeds."""
    cfg = E.MemorizationConfig(widths=(8, 512), control_widths=(512,), steps=400, seeds=(0, 1))
    res = E.memorization(cfg)
    assert res["seeds"] == [0, 1] and len(res["runs"]) == 2
    for run in res["runs"]:
        row = run["rows"][1]
        assert row["width"] == 512 and run["widest"] == row
        assert row["random"]["train_acc"] >= 0.99
        assert abs(row["random"]["test_acc"] - res["chance"]) <= res["chance_margin"]
        assert row["true"]["test_acc"] >= 0.9  # the control generalizes
        # it memorized nearly all of the n·log2 K bits of random labels (and cannot store more)
        assert 0.95 * res["label_bits_total"] <= row["random"]["stored_bits"] <= res["label_bits_total"]
        # the capacity of a run is its plateau: the best bits/param over widths (here the narrow one)
        assert run["capacity_bits_per_param"] == max(r["random"]["bits_per_param"] for r in run["rows"])
        assert run["capacity_width"] == 8
    # the seeds differ in their labels and their init: the runs are not copies
    a, b = (run["rows"][0]["random"]["stored_bits"] for run in res["runs"])
    assert a != b
    # the reported capacity is the mean over runs, its CI over runs, and the worst run gates the checks
    assert res["capacity_seeds"] == [run["capacity_bits_per_param"] for run in res["runs"]]
    assert res["capacity_bits_per_param"] == pytest.approx(np.mean(res["capacity_seeds"]))
    c = intervals.mean_ci(res["capacity_seeds"])  # two seeds: 1 df, an interval wider than their range
    assert res["capacity_ci"] == pytest.approx([c.lo, c.hi]) and res["capacity_df"] == 1
    assert res["capacity_ci"][0] <= min(res["capacity_seeds"]) <= max(res["capacity_seeds"]) <= res["capacity_ci"][1]
    mean_row = res["rows"][1]
    assert mean_row["random"]["train_acc"] == pytest.approx(np.mean([r["rows"][1]["random"]["train_acc"]
                                                                      for r in res["runs"]]))
    lo, hi = mean_row["random"]["stored_bits_ci"]
    assert lo <= mean_row["random"]["stored_bits"] <= hi
    assert res["worst"]["random_train_acc"] == min(r["widest"]["random"]["train_acc"] for r in res["runs"])
    assert res["worst"]["true_test_acc"] == min(r["widest"]["true"]["test_acc"] for r in res["runs"])


def test_memorization_seed_draws_its_labels_and_init():
    """The seed rule of MemorizationConfig: run s's random labels are default_rng(s)'s, its init mlp(…, s)."""
    import torch
    seen = {}

    def spy(fits, K, steps, lr, weight_decay, seed, desc="mlps", batch=True):
        seen["fits"], seen["seeds"] = fits, list(seed)
        return [E.mlp(X.shape[1], w, K, s) for (X, _, w), s in zip(fits, seed)]  # untrained: the inits
    with pytest.MonkeyPatch.context() as m:
        m.setattr(E, "_fit_mlps", spy)
        res = E.memorization(E.MemorizationConfig(widths=(4,), control_widths=(4,), steps=1, seeds=(3, 7)))
    ytr = E.digits10()["train"][1]
    assert seen["seeds"] == [3, 3, 7, 7]  # (seed, width, labels) jobs: random then true, per seed
    for (X, y, w), s, labels in zip(seen["fits"], seen["seeds"], ("random", "true") * 2):
        ref = np.random.default_rng(s).integers(0, 10, len(ytr)) if labels == "random" else ytr
        assert w == 4 and np.array_equal(y, ref)
    a, b = E.mlp(64, 4, 10, 3), E.mlp(64, 4, 10, 7)
    assert not torch.equal(a[0].weight, b[0].weight)
    assert [r["seed"] for r in res["runs"]] == [3, 7]


def test_memorization_presets_resample_runs():
    """Both profiles repeat the experiment over ≥ 3 seeds, and the widest width has its true-label control
    (the chapter's checks read it in every seed)."""
    for profile, cfg in E.MEMORIZATION.items():
        assert len(set(cfg.seeds)) >= 3, profile
        assert max(cfg.widths) in cfg.control_widths, profile
    assert len(E.MEMORIZATION["full"].seeds) >= 5


def test_double_descent_peaks_at_interpolation_and_is_deterministic():
    cfg = E.DoubleDescentConfig(n_train=60, ratios=(0.25, 0.5, 1.0, 2.0, 4.0), feature_seeds=(0, 1), n_boot=50)
    a, b = E.double_descent(cfg), E.double_descent(cfg)
    assert a == b
    assert a["peak_ratio"] == 1.0 and a["spike_factor"] >= 10 and a["train_mse_past_threshold"] < 1e-8
    assert max(np.median(a["train_mse"], 0)[a["ratio"].index(2.0):]) < 1e-12  # p > n interpolates


def test_compression_is_deterministic_and_memorizer_does_not_compress():
    cfg = E.CompressionConfig(widths=(0,), fracs=(0.05, 0.2, 1.0), steps=30, memorizer_width=32)
    a, b = E.compression(cfg), E.compression(cfg)
    assert a == b
    lin, memo = a["rows"]
    assert lin["labels"] == "true" and memo["labels"] == "random"
    assert lin["preq_bits_per_label"] < a["uniform_bits_per_label"] < memo["preq_bits_per_label"]


def test_scaling_budget_follows_the_token_rule_and_is_deterministic():
    cfg = dataclasses.replace(E.SCALING["smoke"], sizes=((1, 8), (1, 16), (1, 24)), tokens_per_param=0.5,
                              batch_size=2, block_size=32, eval_units=4000, eval_windows=8, seeds=(0, 1, 2),
                              n_boot=1000)
    a, b = E.scaling(cfg), E.scaling(cfg)
    strip = lambda res: [{k: v for k, v in r.items() if k != "wall_s"} for r in res["runs"]]  # noqa: E731
    assert strip(a) == strip(b) and {**a, "runs": None} == {**b, "runs": None}
    for r in a["runs"]:  # D = r·P rounded up to whole steps
        assert r["steps"] == math.ceil(0.5 * r["params_total"] / (2 * 32))
        assert r["units"] == r["steps"] * 2 * 32 and r["lr"] == pytest.approx(0.32 / r["d_model"])
    assert a["N"] == sorted(a["N"]) and np.array(a["seed_loss_nats"]).shape == (3, 3)
    assert a["pure"]["n_boot"] == a["floor"]["n_boot"] == 1000
    # the bend is a t interval over the seeds' own bends; its 90% interval (the equivalence test's) is inside
    d = intervals.mean_ci(a["alpha_delta_seeds"])
    assert a["alpha_delta"] == pytest.approx(d.value) and a["alpha_delta_ci"] == pytest.approx([d.lo, d.hi])
    assert a["alpha_delta_ci"][0] <= a["alpha_delta_ci90"][0] <= a["alpha_delta_ci90"][1] <= a["alpha_delta_ci"][1]
    assert a["alpha_delta_df"] == 2 and len(a["alpha_seeds"]) == 3
    # the seeds differ (init and window order): the CIs are over something
    assert len({tuple(row) for row in a["seed_loss_nats"]}) == 3


def test_full_scaling_preset_gives_every_size_20_tokens_per_parameter():
    """The full ladder spans ≥ 2 decades of non-embedding parameters in ≥ 6 sizes, its budget is proportional
    to size (Hoffmann et al. 2022's ~20 tokens per parameter), it has ≥ 3 seeds and ≥ 1000 resamples, and no
    size reads its training bytes more than 4 times."""
    from decoupling.core import models
    full = E.SCALING["full"]
    assert full.tokens_per_param >= 20 and len(full.seeds) >= 3 and len(full.sizes) >= 6 and full.n_boot >= 1000
    budgets, N = [], []
    for n_layer, d in full.sizes:
        mc = models.ModelConfig(n_layer=n_layer, n_head=max(1, d // full.head_dim), d_model=d, vocab_size=256,
                                block_size=full.block_size)
        P = E.n_params(models.build_lm(mc))
        units = E.scaling_steps(P, full) * full.batch_size * full.block_size
        assert 20 * P <= units < 20 * P + full.batch_size * full.block_size
        budgets.append((P, units))
        N.append(models.non_embedding_params(mc))
    assert N == sorted(N) and math.log10(N[-1] / N[0]) >= 2.0
    ratios = [u / p for p, u in budgets]
    assert max(ratios) / min(ratios) < 1.5  # proportional, up to whole steps
    train_bytes = len(E.stream(full.domain, full.unit)) - full.eval_units
    assert budgets[-1][1] <= 4 * train_bytes  # ≤ 4 passes over the code corpus's training bytes
    assert E.SCALING["smoke"].n_boot >= 1000 and len(E.SCALING["smoke"].seeds) >= 5


def test_fit_floor_recovers_a_known_law_and_agrees_with_measures():
    from decoupling.core import measures
    N = np.geomspace(3e3, 8e5, 6)
    exact = 1.2 + 40.0 * N ** -0.35
    f = E.fit_floor(N, exact[None, :], n_boot=1000)
    assert f["alpha"] == pytest.approx(0.35, rel=0.02) and f["E"] == pytest.approx(1.2, rel=0.02)
    assert f["n_boot"] == 1000
    rng = np.random.default_rng(0)
    noisy = exact * np.exp(rng.normal(0, 0.01, (5, 6)))
    ours, ref = E.fit_floor(N, noisy, n_boot=1000), measures.fit_power_law_floor(N, noisy, n_boot=2)
    assert ours["alpha"] == pytest.approx(ref["alpha"], rel=0.05)
    assert ours["alpha_ci"][0] <= ours["alpha"] <= ours["alpha_ci"][1]
    assert E.lr_for(64, 0.32) == pytest.approx(0.005)


# ---------------------------------------------------------------------------------------------- batched fits
def _sequential_fit_mlps(fits, K, steps, lr, weight_decay, seed, desc="mlps", batch=True):
    """The path `_fit_mlps` replaced: one `_fit_mlp` (train.train_module) per fit, in order (seed: one for
    all, or one per fit)."""
    seeds = [seed] * len(fits) if isinstance(seed, int) else list(seed)
    return [E._fit_mlp(X, y, w, K, steps, lr, weight_decay, s) for (X, y, w), s in zip(fits, seeds)]


def _close(a, b, atol):
    pa, pb = list(a.parameters()), list(b.parameters())
    assert [p.shape for p in pa] == [p.shape for p in pb]
    worst = max((p - q).abs().max().item() for p, q in zip(pa, pb))
    assert worst < atol, worst


def test_padded_mlp_is_its_width_and_its_padding_stays_zero(one_thread):
    """A width-5 MLP inside a width-12 PaddedMLP (with the linear skip present but off), trained alone with
    weight decay on: the padding is still exactly 0 and the block equals the plain model's training."""
    import torch
    from decoupling.core import train
    rng = np.random.default_rng(0)
    X, y = rng.random((80, 6)).astype(np.float32), rng.integers(0, 3, 80)
    tc = E._recipe(len(y), 40, 1e-2, 0.1, seed=3)
    ref = E._fit_mlp(X, y, 5, 3, 40, 1e-2, 0.1, seed=3)
    pad = E.PaddedMLP.embed(E.mlp(6, 5, 3, seed=3), top=12, skip=True)
    train.train_module(pad, torch.as_tensor(X), torch.as_tensor(y), tc)
    assert (pad.hidden.weight[5:] == 0).all() and (pad.hidden.bias[5:] == 0).all()
    assert (pad.out.weight[:, 5:] == 0).all() and (pad.skip.weight == 0).all()
    _close(pad.unpad(), ref, 1e-5)
    # and a linear member: everything but the skip and the output bias stays 0
    lin = E.PaddedMLP.embed(E.mlp(6, 0, 3, seed=3), top=12, skip=True)
    train.train_module(lin, torch.as_tensor(X), torch.as_tensor(y), tc)
    assert all((p == 0).all() for p in (lin.hidden.weight, lin.hidden.bias, lin.out.weight))
    _close(lin.unpad(), E._fit_mlp(X, y, 0, 3, 40, 1e-2, 0.1, seed=3), 1e-5)


def test_fit_mlps_batched_equal_sequential(one_thread):
    """Members of different widths (linear included), dataset sizes and seeds in one batched run equal their
    sequential fits, weight decay on."""
    import torch
    rng = np.random.default_rng(1)
    X, y = rng.random((120, 8)).astype(np.float32), rng.integers(0, 4, 120)
    fits = [(X[:n], y[:n], w) for w, n in ((0, 120), (3, 30), (9, 120), (9, 60), (1, 7))]
    args = (4, 50, 1e-2, 0.1, 2)
    for a, b in zip(E._fit_mlps(fits, *args, batch=True), _sequential_fit_mlps(fits, *args)):
        _close(a, b, 1e-5)
    # one seed per member (memorization's seeds): each member is its own seed's sequential fit
    args = (4, 50, 1e-2, 0.1, [5, 6, 5, 7, 8])
    batched = E._fit_mlps(fits, *args, batch=True)
    for a, b in zip(batched, _sequential_fit_mlps(fits, *args)):
        _close(a, b, 1e-5)
    assert not torch.equal(batched[2][0].weight, E._fit_mlps(fits[2:3], 4, 50, 1e-2, 0.1, 2)[0][0].weight)


def _assert_close_results(a, b, rel=1e-4, abs_=1e-5):
    """Two results of one experiment, equal up to float rounding: numbers within tolerance, the rest equal."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_close_results(a[k], b[k], rel, abs_)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_close_results(x, y, rel, abs_)
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=rel, abs=abs_)
    else:
        assert a == b


def test_memorization_and_compression_equal_the_sequential_path(one_thread, monkeypatch):
    """The chapter's two MLP experiments through the batched fits and through the old path (one
    train.train_module per fit) give the same results up to float rounding."""
    mem = E.MemorizationConfig(widths=(2, 16), control_widths=(16,), steps=40, seeds=(0, 1))
    comp = E.CompressionConfig(widths=(0, 4), fracs=(0.05, 0.2, 1.0), steps=30, memorizer_width=8)
    calls, real = [], E._fit_mlps
    with monkeypatch.context() as m:  # the batched path, whatever the device's default (the experiments
        # pass batch=prequential.batch_fits(), which would win over a functools.partial's batch=True)
        m.setattr(E.prequential, "batch_fits", lambda: True)
        m.setattr(E, "_fit_mlps", lambda *a, **k: calls.append(k["batch"]) or real(*a, **k))
        batched_mem, batched_comp = E.memorization(mem), E.compression(comp)
    assert calls == [True, True]
    monkeypatch.setattr(E, "_fit_mlps", _sequential_fit_mlps)
    _assert_close_results(batched_mem, E.memorization(mem))
    _assert_close_results(batched_comp, E.compression(comp))


# ---------------------------------------------------------------------------------------------- pretraining data
def test_pretraining_data_bodies_learn_and_fine_tunes_code_the_labels():
    """Tiny version of the chapter's ΔL-against-pretraining-tokens experiment: the bodies' held-out loss
    falls as they see more tokens (they learn something), every (seed, body) gets a ΔL on every target,
    tokens follow the steps, the CI uses 1000 resamples, and it is deterministic."""
    from decoupling.core.prequential import HP, Protocol
    from decoupling.experiments import tyranny_data as TD
    cfg = TD.DataConfig(targets=("code/module", "sentiment/tweets"), body_steps=(10, 20, 40, 80),
                        protocol=Protocol(ends=(16, 48), hps=(HP("finetune", 2e-3, 1.0),)), max_len=16,
                        n_test=16, seeds=(0, 1))
    a = TD.pretraining_data(cfg)
    bits = [b["eval_bits_per_token"] for b in a["bodies"]]
    assert bits[-1] < bits[0] - 0.5
    from decoupling.experiments import pretrain
    body = pretrain.config("smoke", "code")  # the smoke body preset: batch × window tokens per step
    assert a["tokens"] == [s * body.batch_size * body.model.block_size for s in cfg.body_steps]
    for v in a["per_target"].values():
        assert np.array(v["dL_per_label"]).shape == (2, 4)
        assert np.isfinite(v["dL_per_label"]).all() and len(v["slopes"]) == 2
    assert a["slope_ci"][0] <= a["slope_bits_per_doubling"] <= a["slope_ci"][1]
    assert TD.pretraining_data(cfg) == a
    # a seed is a whole run: each reads its own ladder of bodies (pretrained with that seed)
    for b in a["bodies"]:
        per = b["eval_bits_per_seed"]
        assert len(per) == 2 and per[0] != per[1] and b["eval_bits_per_token"] == pytest.approx(np.mean(per))
    full = TD.DATA["full"]
    assert len(full.body_steps) >= 4 and len(full.targets) >= 3 and len(full.seeds) >= 3


def test_full_presets_run_on_a_cpu_and_the_data_ladder_fits():
    """Every chapter-3 experiment is computed on a CPU at `full` (the store does not ask for a GPU); the data
    ladder spans ≥ 1.5 decades of pretraining steps up to chapter 4's body (its top point is that body), on
    ≥ 3 text targets whose train splits hold the protocol's examples, at ≤ the bodies' context."""
    from decoupling import data
    from decoupling.experiments import generality, pretrain
    from decoupling.experiments import tyranny_data as TD
    from decoupling.pipeline import store
    for fn in (E.scaling, E.memorization, E.compression, E.double_descent, TD.pretraining_data):
        assert store.runs_on_cpu(fn), fn.__name__
    full = TD.DATA["full"]
    body = pretrain.PRETRAIN[full.body_profile]
    assert list(full.body_steps) == sorted(set(full.body_steps)) and full.body_steps[-1] == body.steps
    assert math.log10(full.body_steps[-1] / full.body_steps[0]) >= 1.5
    assert set(full.targets) <= set(generality.TEXT_TARGETS) and len(set(full.targets)) >= 3
    assert full.max_len <= body.model.block_size
    for t in full.targets:
        assert full.protocol.ends[-1] <= len(data.arrays(t)["train"][1]), t
