"""Known-answer tests for decoupling.core.measures (pure numpy/scipy, a few seconds)."""
import math

import numpy as np
import pytest

from decoupling.core import measures as M


# ---------------------------------------------------------------------------------------------- KL, log loss
def test_kl_hand_computed():
    # D(p‖q) for p = (1/2, 1/2), q = (1/4, 3/4): ½·log2(2) + ½·log2(2/3) = ½(1 + 1 − log2 3) = 1 − ½ log2 3
    p = np.array([[0.5, 0.5]])
    q = np.array([[0.25, 0.75]])
    assert M.essay_kl(p, q) == pytest.approx(1 - 0.5 * math.log2(3), abs=1e-12)
    # reverse order: ¼ log2(½) + ¾ log2(3/2) = −¼ + ¾ (log2 3 − 1)
    assert M.essay_kl(q, p) == pytest.approx(-0.25 + 0.75 * (math.log2(3) - 1), abs=1e-12)
    assert M.essay_kl(p, q) != pytest.approx(M.essay_kl(q, p))  # asymmetric: argument order matters


def test_kl_zero_for_equal_and_zeros_handled():
    q = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    assert M.essay_kl(q, q) == 0.0
    # 0·log 0 = 0: a deterministic q0 against a spread qP is finite, log2(1/0.5) = 1 bit on that row
    assert M.essay_kl([[1.0, 0.0]], [[0.5, 0.5]]) == pytest.approx(1.0)


def test_essay_kl_is_a_mean_over_inputs():
    q0 = np.array([[0.5, 0.5], [0.5, 0.5]])
    qP = np.array([[0.5, 0.5], [0.25, 0.75]])
    assert M.essay_kl(q0, qP) == pytest.approx(0.5 * (1 - 0.5 * math.log2(3)))


def test_log_loss_and_heldout_gain_sign():
    y = np.array([0, 1, 1])
    q_good = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])
    q_flat = np.full((3, 2), 0.5)
    assert M.log_loss_bits(q_flat, y) == pytest.approx(1.0)
    assert M.log_loss_bits(q_flat, y, reduction="sum") == pytest.approx(3.0)
    assert M.log_loss_bits(q_good, y, "none") == pytest.approx(-np.log2([0.9, 0.8, 0.7]))
    assert M.heldout_gain(q_flat, q_good, y) > 0  # pretrained (qP) better → positive gain
    assert M.heldout_gain(q_good, q_flat, y) < 0  # worse → negative: the sign KL cannot show
    assert M.essay_kl(q_good, q_flat) > 0 and M.essay_kl(q_flat, q_good) > 0


def _log_softmax(z):
    z = np.asarray(z, np.float64)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def test_log_probabilities_give_exact_bits_at_large_logit_gaps():
    # logits (0, −g): log q(1|x) = −g − ln(1 + e^−g), so the label costs g/ln 2 + log2(1 + e^−g) bits
    for gap in (200.0, 800.0):
        lq = _log_softmax([[0.0, -gap]])
        want = gap / math.log(2) + math.log2(1 + math.exp(-gap))
        assert M.log_loss_bits(lq, [1], log=True) == pytest.approx(want, rel=1e-12)
        assert M.log_loss_bits(lq, [0], log=True) == pytest.approx(0.0, abs=1e-80)  # the right label: ~e^−g/ln 2
    # the same labels from probabilities: exact while e^−g is a float64 (g = 200), the 2^−997 floor past it
    assert M.log_loss_bits(np.exp(_log_softmax([[0.0, -200.0]])), [1]) == pytest.approx(200 / math.log(2))
    assert M.log_loss_bits(np.exp(_log_softmax([[0.0, -800.0]])), [1]) == pytest.approx(-math.log2(1e-300))
    # probabilities and log-probabilities agree where both are exact
    q = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])
    y = np.array([0, 1, 1])
    assert M.log_loss_bits(np.log(q), y, "none", log=True) == pytest.approx(M.log_loss_bits(q, y, "none"))


def test_kl_from_log_probabilities_is_finite_at_large_logit_gaps():
    # q0 = softmax(0, −g), qP = softmax(−g, 0): D(q0‖qP) = (1 − 2ε)·g/ln 2 bits, ε = σ(−g)
    for gap in (200.0, 800.0):
        l0, lP = _log_softmax([[0.0, -gap]]), _log_softmax([[-gap, 0.0]])
        eps = math.exp(-gap) / (1 + math.exp(-gap))
        want = (1 - 2 * eps) * gap / math.log(2)
        assert M.essay_kl(l0, lP, log=True) == pytest.approx(want, rel=1e-12)
        assert M.heldout_gain(l0, lP, [1], log=True) == pytest.approx(gap / math.log(2), rel=1e-12)
    # from float32 probabilities (a softmax underflows to 0 past a gap of ~104 nats) the KL is infinite
    q0 = np.exp(_log_softmax([[0.0, -200.0]])).astype(np.float32)
    qP = np.exp(_log_softmax([[-200.0, 0.0]])).astype(np.float32)
    assert math.isinf(M.essay_kl(q0, qP))
    # 0·log 0 = 0 holds in log space too, and the hand-computed value matches the probability path
    assert M.kl_bits([[0.0, -np.inf]], np.log([[0.5, 0.5]]), log=True) == pytest.approx([1.0])
    p, q = np.array([[0.5, 0.5]]), np.array([[0.25, 0.75]])
    assert M.essay_kl(np.log(p), np.log(q), log=True) == pytest.approx(1 - 0.5 * math.log2(3), abs=1e-12)


# ---------------------------------------------------------------------------------------------- prequential
def test_block_schedule():
    ends = M.block_schedule(10_000)
    assert ends == [10, 20, 40, 80, 160, 320, 625, 1250, 2500, 5000, 10_000]
    small = M.block_schedule(100, min_first=5)
    assert small[0] == 5 and small[-1] == 100 and all(b > a for a, b in zip(small, small[1:]))


def _kt(y, train_idx, test_idx, K=2):
    """Krichevsky–Trofimov estimator: (count + ½) / (n + K/2), fitted on the seen labels."""
    counts = np.bincount(y[train_idx], minlength=K)
    p = (counts + 0.5) / (len(train_idx) + K / 2)
    return np.tile(p, (len(test_idx), 1))


def test_prequential_bernoulli_kt_regret():
    # Sequential KT coding of a Bernoulli(p) source: L − n·Ĥ ≤ ½ log2 n + 1 (Krichevsky & Trofimov 1981;
    # Cover & Thomas 2006, ch. 13), with Ĥ the empirical entropy. One block per example = exact KT code.
    rng = np.random.default_rng(0)
    n, p = 2000, 0.2
    y = (rng.random(n) < p).astype(int)
    ph = y.mean()
    nH = -n * (ph * math.log2(ph) + (1 - ph) * math.log2(1 - ph))
    res = M.prequential(lambda tr, te: _kt(y, tr, te), None, y, K=2, ends=list(range(1, n + 1)))
    assert 0 <= res["total_bits"] - nH <= 0.5 * math.log2(n) + 1
    # blocks at doubling sizes cost O(log n) more, not O(n): within ~1 bit per block of the KT code
    ends = M.block_schedule(n)
    res_b = M.prequential(lambda tr, te: _kt(y, tr, te), None, y, K=2, ends=ends)
    assert res_b["ends"] == ends and len(res_b["block_bits"]) == len(ends)
    assert res_b["block_bits"][0] == pytest.approx(ends[0] * 1.0)  # uniform first block, log2 2 = 1 bit
    assert 0 <= res_b["total_bits"] - nH <= len(ends) * 1.5 + 0.5 * math.log2(n)
    res_log = M.prequential(lambda tr, te: np.log(_kt(y, tr, te)), None, y, K=2, ends=ends, log=True)
    assert res_log["block_bits"] == pytest.approx(res_b["block_bits"], rel=1e-12)  # the same code, in log space
    # n·H(p) itself (true p): the code length per label tends to H(p)
    H = -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
    assert res_b["bits_per_label"] == pytest.approx(H, abs=0.05)


def test_prequential_charges_hyperparameters_and_delta_L():
    y = np.zeros(64, int)
    ends = [4, 8, 16, 32, 64]
    perfect = lambda tr, te: np.tile([1.0, 0.0], (len(te), 1))  # noqa: E731
    r1 = M.prequential(perfect, np.zeros((64, 3)), y, K=2, ends=ends)
    r8 = M.prequential(perfect, np.zeros((64, 3)), y, K=2, ends=ends, n_configs=8)
    assert r1["total_bits"] == pytest.approx(4.0)  # only the uniform first block costs anything
    assert r8["total_bits"] - r1["total_bits"] == pytest.approx(3.0 * 4)  # log2 8 bits × 4 model blocks
    uniform = lambda tr, te: np.full((len(te), 2), 0.5)  # noqa: E731
    r0 = M.prequential(uniform, None, y, K=2, ends=ends)
    assert r0["total_bits"] == pytest.approx(64.0)
    assert M.delta_L(r0, r1) == pytest.approx(60.0)
    assert np.allclose(M.delta_L([10, 12], [4, 5]), [6, 7])
    with pytest.raises(ValueError):
        M.prequential(perfect, None, y, K=2, ends=[8, 4])


# ---------------------------------------------------------------------------------------------- transfer
def test_effective_data_transferred_known_shift():
    # Scratch curve L(n) = 3 n^-0.3; the pretrained model behaves like scratch with 4n + 100 examples.
    n_s = np.logspace(1, 5, 40)
    loss = lambda n: 3 * n ** -0.3  # noqa: E731
    n_ft = np.array([10, 30, 100, 300, 1000])
    dt = M.effective_data_transferred(n_ft, loss(4 * n_ft + 100), n_s, loss(n_s))
    assert dt == pytest.approx(3 * n_ft + 100, rel=0.01)
    # outside the scratch range → NaN; a worse fine-tune → negative D_T
    out = M.effective_data_transferred([10, 1000], [loss(1e7), loss(500)], n_s, loss(n_s))
    assert math.isnan(out[0]) and out[1] == pytest.approx(-500, rel=0.01)


# ---------------------------------------------------------------------------------------------- statistics
def test_bootstrap_ci_covers_mean():
    rng = np.random.default_rng(1)
    v = rng.normal(2.0, 1.0, 200)
    ci = M.bootstrap_ci(v)
    assert ci.lo < v.mean() < ci.hi and ci.value == pytest.approx(v.mean())
    assert ci.lo < 2.0 < ci.hi  # the true mean too (holds for this seed; a 95 % interval)
    assert ci.hi - ci.lo == pytest.approx(2 * 1.96 / math.sqrt(200), rel=0.2)
    assert M.bootstrap_ci(v, seed=3) == M.bootstrap_ci(v, seed=3)


def test_power_law_pure_recovered():
    N = np.logspace(4, 7, 8)
    L = (8.8e13 / N) ** 0.076  # Kaplan et al. 2020's N_c and α_N
    rng = np.random.default_rng(0)
    fit = M.fit_power_law(N, L * np.exp(rng.normal(0, 0.002, len(N))), n_boot=300)
    assert fit["alpha"] == pytest.approx(0.076, abs=0.003)
    assert fit["alpha_ci"][0] < 0.076 < fit["alpha_ci"][1]
    assert fit["r2"] > 0.99
    exact = M.fit_power_law(N, L, n_boot=10)
    assert exact["Nc"] == pytest.approx(8.8e13, rel=1e-6)
    # over seeds: a (seeds, points) matrix
    seeds = L * np.exp(rng.normal(0, 0.003, (5, len(N))))
    fs = M.fit_power_law(N, seeds, n_boot=200)
    assert fs["alpha_ci"][0] < fs["alpha"] < fs["alpha_ci"][1]


def test_power_law_floor_recovered():
    N = np.logspace(4, 9, 10)
    L = 1.69 + 406.4 * N ** -0.34  # Hoffmann et al. 2022's E, A, α
    fit = M.fit_power_law_floor(N, L, n_boot=20)
    assert fit["alpha"] == pytest.approx(0.34, abs=0.01)
    assert fit["E"] == pytest.approx(1.69, abs=0.02)
    rng = np.random.default_rng(0)
    noisy = M.fit_power_law_floor(N, L * np.exp(rng.normal(0, 0.002, len(N))), n_boot=50)
    assert noisy["alpha"] == pytest.approx(0.34, abs=0.05)
    assert noisy["alpha_ci"][0] <= noisy["alpha"] <= noisy["alpha_ci"][1]
    # the two forms give different exponents for the same curve: never compare across forms
    assert M.fit_power_law(N, L, n_boot=10)["alpha"] < 0.2


# ---------------------------------------------------------------------------------------------- LogME
def test_logme_equals_direct_evidence():
    rng = np.random.default_rng(0)
    n, D = 40, 5
    F = rng.normal(size=(n, D))
    t = (F @ rng.normal(size=D) + 0.5 * rng.normal(size=n) > 0).astype(float)
    ev, a, b = M.logme_evidence(F, t)
    assert ev == pytest.approx(M.log_evidence(F, t, a, b), rel=1e-8, abs=1e-8)
    # the fixed point is a maximum of the evidence over (α, β)
    for da, db in [(1.5, 1), (1 / 1.5, 1), (1, 1.5), (1, 1 / 1.5)]:
        assert M.log_evidence(F, t, a * da, b * db) < ev
    # and the LogME score is the per-class mean of evidence / n
    y = rng.integers(0, 3, n)
    per = [M.logme_evidence(F, (y == k).astype(float))[0] / n for k in range(3)]
    assert M.logme(F, y) == pytest.approx(np.mean(per))


def test_logme_prefers_informative_features():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    good = np.c_[y + 0.1 * rng.normal(size=300), rng.normal(size=(300, 4))]
    bad = rng.normal(size=(300, 5))
    assert M.logme(good, y) > M.logme(bad, y)


# ---------------------------------------------------------------------------------------------- MI
def test_mutual_information():
    assert M.mutual_information_bits(np.eye(4) / 4) == pytest.approx(2.0)  # Y = X, uniform over 4
    assert M.mutual_information_bits(np.full((3, 5), 1 / 15)) == pytest.approx(0.0, abs=1e-12)
    assert M.mutual_information_bits(np.eye(2) * 7) == pytest.approx(1.0)  # counts are normalised


def test_conditional_mi_conflicting_tasks():
    # K tasks over X = {0..K-1}: task t maps x to (x + t) mod K. Given x, y is uniform without the task;
    # with it, certain: I(Y;T|X) = log2 K.
    K = 4
    pyxt = np.zeros((K, K, K))
    for x in range(K):
        for t in range(K):
            pyxt[x, t, (x + t) % K] = 1.0
    assert M.conditional_mi_bits(pyxt, np.full((K, K), 1 / K ** 2)) == pytest.approx(2.0)
    # tasks that agree carry no information
    same = np.zeros((K, K, K))
    same[np.arange(K), :, np.arange(K)] = 1.0
    assert M.conditional_mi_bits(same, np.full((K, K), 1 / K ** 2)) == pytest.approx(0.0, abs=1e-12)
