"""Chapter 3's experiments at tiny sizes: random labels are memorized but not generalized, the memorized-bits
estimator on known answers, the min-norm solver against numpy, the scaling helpers on an exact power law,
and bitwise determinism of every experiment on the CPU."""
import dataclasses
import math

import numpy as np
import pytest

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
    assert E.lr_for(64, 0.32) == pytest.approx(0.005)


def test_digits10_is_the_ten_class_task():
    d = E.digits10()
    (Xtr, ytr), (Xte, yte) = d["train"], d["test"]
    assert Xtr.shape[1] == Xte.shape[1] == 64 and len(Xtr) + len(Xte) == 1797
    assert set(ytr) == set(yte) == set(range(10))
    assert 0.0 <= Xtr.min() and Xtr.max() <= 1.0


# ---------------------------------------------------------------------------------------------- experiments
def test_random_labels_fit_but_do_not_generalize():
    """Zhang et al. 2017 at test size: a wide MLP fits random labels, and predicts the test set at chance."""
    cfg = E.MemorizationConfig(widths=(512,), control_widths=(512,), steps=400, n_boot=50)
    res = E.memorization(cfg)
    row = res["rows"][0]
    assert row["random"]["train_acc"] >= 0.99
    assert abs(row["random"]["test_acc"] - res["chance"]) <= res["chance_margin"]
    assert row["true"]["test_acc"] >= 0.9  # the control generalizes
    # it memorized nearly all of the n·log2 K bits of random labels (and cannot store more)
    assert 0.95 * res["label_bits_total"] <= row["random"]["stored_bits"] <= res["label_bits_total"]
    assert res["capacity_ci"][0] <= res["capacity_bits_per_param"] <= res["capacity_ci"][1]


def test_double_descent_peaks_at_interpolation_and_is_deterministic():
    cfg = E.DoubleDescentConfig(n_train=60, ratios=(0.25, 0.5, 1.0, 2.0, 4.0), feature_seeds=(0, 1), n_boot=50)
    a, b = E.double_descent(cfg), E.double_descent(cfg)
    assert a == b
    assert a["peak_ratio"] == 1.0
    assert max(np.median(a["train_mse"], 0)[a["ratio"].index(2.0):]) < 1e-12  # p > n interpolates


def test_compression_is_deterministic_and_memorizer_does_not_compress():
    cfg = E.CompressionConfig(widths=(0,), fracs=(0.05, 0.2, 1.0), steps=30, memorizer_width=32)
    a, b = E.compression(cfg), E.compression(cfg)
    assert a == b
    lin, memo = a["rows"]
    assert lin["labels"] == "true" and memo["labels"] == "random"
    assert lin["preq_bits_per_label"] < a["uniform_bits_per_label"] < memo["preq_bits_per_label"]


def test_scaling_runs_every_size_on_the_same_budget_and_is_deterministic():
    cfg = dataclasses.replace(E.SCALING["smoke"], sizes=((1, 8), (1, 16), (1, 32)), steps=40, batch_size=4,
                              block_size=32, eval_units=4000, eval_windows=8, n_evals=2, n_boot=50,
                              n_boot_floor=2)
    a, b = E.scaling(cfg), E.scaling(cfg)
    timing = ("wall_s", "units_per_s")
    strip = lambda res: [{k: v for k, v in r.items() if k not in timing} for r in res["runs"]]  # noqa: E731
    assert strip(a) == strip(b) and {**a, "runs": None} == {**b, "runs": None}
    assert len({r["units"] for r in a["runs"]}) == 1 and a["runs"][0]["units"] == 40 * 4 * 32
    assert a["N"] == sorted(a["N"]) and len(a["loss_nats"]) == 3
    assert a["alpha_delta_ci"][0] <= a["alpha_delta_ci"][1]
    assert all(r["lr"] == pytest.approx(0.32 / r["d_model"]) for r in a["runs"])
