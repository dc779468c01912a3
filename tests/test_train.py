"""decoupling.core.train: convergence, bitwise determinism on CPU, data order, fine-tuning, exact log-probabilities."""
import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from decoupling.core import models as M
from decoupling.core import train as T
from decoupling.core.device import DEVICE

CFG = M.PRESETS["test"]  # 1 layer, d=16, vocab 128, context 32
cpu_only = pytest.mark.skipif(DEVICE.type != "cpu", reason="bitwise determinism is a CPU guarantee")

pytestmark = pytest.mark.usefixtures("one_thread")


def _markov_stream(n: int, V: int = 128, fanout: int = 4, seed: int = 0) -> torch.Tensor:
    """A token stream from a sparse random Markov chain: entropy rate log(fanout) nats ≪ log V."""
    g = torch.Generator().manual_seed(seed)
    nxt = torch.randint(0, V, (V, fanout), generator=g)  # allowed successors of each token
    choice = torch.randint(0, fanout, (n,), generator=g)
    x = torch.empty(n, dtype=torch.long)
    x[0] = 0
    for i in range(1, n):
        x[i] = nxt[x[i - 1], choice[i]]
    return x


def _equal_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_lr_schedule_warmup_then_cosine():
    cfg = T.TrainConfig(steps=100, lr=1.0, warmup_frac=0.1, min_lr_frac=0.1)
    lrs = [T.lr_at(s, cfg) for s in range(100)]
    assert lrs[0] < lrs[5] < lrs[9] <= 1.0  # warmup
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)  # peak, then down to 10 %
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_overfits_one_batch():
    tokens = torch.randint(0, CFG.vocab_size, (CFG.block_size + 2,), generator=torch.Generator().manual_seed(0))
    out = T.train_lm(M.build_lm(CFG, 0), tokens,  # 2 possible windows: memorise them
                     T.TrainConfig(steps=120, batch_size=4, lr=1e-2, weight_decay=0.0, progress=False))
    first, last = out["loss"][0], out["loss"][-1]
    assert first == pytest.approx(math.log(CFG.vocab_size), rel=0.1)  # starts at chance
    assert last < 0.1 * first or last < 0.1
    assert len(out["loss"]) == 120 and out["tokens"] == 120 * 4 * CFG.block_size


def test_loss_falls_on_markov_data():
    x = _markov_stream(12_000)
    cfg = T.TrainConfig(steps=120, batch_size=16, lr=1e-2, eval_every=60, eval_windows=32, progress=False)
    out = T.train_lm(M.build_lm(CFG, 0), x[:10_000], cfg, eval_tokens=x[10_000:])
    assert out["final_train_loss"] < 0.6 * math.log(CFG.vocab_size)
    assert [s for s, _ in out["eval"]] == [60, 120]
    assert out["eval"][1][1] < out["eval"][0][1] < math.log(CFG.vocab_size)
    assert out["eval_bits_per_token"] == pytest.approx(out["eval_loss_nats"] / math.log(2))
    assert out["eval_loss_nats"] > math.log(4) - 0.05  # can't beat the source's entropy rate
    assert out["tokens_per_s"] > 0 and out["flops"] == 120 * 16 * CFG.block_size * M.flops_per_token(CFG)


@cpu_only
def test_two_runs_one_seed_identical_weights():
    torch.set_num_threads(os.cpu_count() or 1)  # multithreaded reductions are where nondeterminism hides
    x = _markov_stream(4000)
    drop = M.ModelConfig(**{**CFG.__dict__, "dropout": 0.1})  # dropout exercises the seeded RNG too
    cfg = T.TrainConfig(steps=8, batch_size=8, progress=False, seed=3)
    state = torch.random.get_rng_state()
    a, b = M.build_lm(drop, 0), M.build_lm(drop, 0)
    ra, rb = T.train_lm(a, x, cfg), T.train_lm(b, x, cfg)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched
    assert _equal_weights(a, b) and ra["loss"] == rb["loss"]
    torch.set_num_threads(1)
    c = M.build_lm(drop, 0)
    T.train_lm(c, x, T.TrainConfig(steps=8, batch_size=8, progress=False, seed=4))
    assert not _equal_weights(a, c)


def test_same_data_order_for_every_model_size():
    w = T.lm_windows(10_000, 32, 8, 50, seed=0)
    assert w.shape == (50, 8) and int(w.max()) <= 10_000 - 33
    assert torch.equal(T.lm_windows(10_000, 32, 8, 20, seed=0), w[:20])  # a shorter run = a prefix
    assert not torch.equal(T.lm_windows(10_000, 32, 8, 50, seed=1), w)
    order = T.example_order(10, 4, 6, seed=0)  # epochs of permutations
    assert order.shape == (6, 4)
    flat = order.reshape(-1).tolist()
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert torch.equal(T.example_order(3, 8, 2, seed=0), torch.tensor([[0, 1, 2], [0, 1, 2]]))


def _parity_task(n: int, seed: int = 0):
    """Label = whether token 7 occurs in the sequence; right-padded variable lengths."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 20, (n, 12), generator=g)
    lengths = torch.randint(4, 13, (n,), generator=g)
    mask = (torch.arange(12)[None] < lengths[:, None]).long()
    ids = ids * mask  # pad id 0
    y = ((ids == 7).any(1)).long()
    return ids, mask, y


def test_classifier_fine_tunes_and_predicts():
    ids, mask, y = _parity_task(256)
    clf = M.build_classifier(CFG, 2, seed=0)
    out = T.train_classifier(clf, ids, mask, y, T.TrainConfig(steps=150, batch_size=64, lr=1e-2,
                                                            progress=False))
    assert out["final_train_loss"] < 0.5 * out["loss"][0]
    p = T.predict_proba(clf, ids, mask, batch_size=50)
    assert p.shape == (256, 2) and p.dtype == np.float64 and np.allclose(p.sum(1), 1.0)
    assert (p.argmax(1) == y.numpy()).mean() > 0.85
    assert out["examples"] == 150 * 64


def test_evaluate_hook_gives_a_learning_curve():
    ids, mask, y = _parity_task(128)
    acc = lambda m: float((T.predict_proba(m, ids, mask).argmax(1) == y.numpy()).mean())  # noqa: E731
    cfg = T.TrainConfig(steps=30, batch_size=32, lr=1e-2, eval_every=10, progress=False)
    clf = M.build_classifier(CFG, 2, seed=0)
    out = T.train_classifier(clf, ids, mask, y, cfg, evaluate=acc)
    assert [s for s, _ in out["eval"]] == [10, 20, 30] and out["eval"][-1][1] == acc(clf)  # last: the trained model
    t = out["eval_train_s"]
    assert len(t) == 3 and 0 <= t[0] <= t[1] <= t[2] == pytest.approx(out["wall_s"] - out["eval_s"])
    assert out["flops"] == cfg.steps * out["flops_per_step"] == 30 * 32 * 12 * M.flops_per_token(CFG, 12, include_head=False)
    # evaluating changes nothing about the training itself
    ref = T.train_classifier(M.build_classifier(CFG, 2, seed=0), ids, mask, y, cfg)
    np.testing.assert_allclose(out["loss"], ref["loss"], rtol=1e-6)
    assert "eval" not in ref


def test_linear_probe_freezes_the_body():
    ids, mask, y = _parity_task(64)
    lm = M.build_lm(CFG, 1)
    clf = M.replace_head(lm, 2, seed=0)
    head0 = clf.score.weight.detach().clone()
    T.train_classifier(clf, ids, mask, y, T.TrainConfig(steps=5, batch_size=64, body_lr_mult=0.0,
                                                        progress=False))
    body, src = clf.transformer.state_dict(), lm.transformer.state_dict()
    assert all(torch.equal(body[k].cpu(), src[k]) for k in body)  # trained on DEVICE, source on CPU
    assert not torch.equal(clf.score.weight.cpu(), head0)
    assert all(p.requires_grad for p in clf.parameters())  # restored after training


@cpu_only
def test_train_module_mlp_deterministic():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 8, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + 2 * (x[:, 2] > 0).long()  # 4 classes

    def mlp():
        return M.seeded(0, lambda: nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4)))

    cfg = T.TrainConfig(steps=200, batch_size=64, lr=1e-2, weight_decay=0.0, progress=False)
    a, b = mlp(), mlp()
    ra = T.train_module(a, x, y, cfg)
    T.train_module(b, x, y, cfg)
    assert _equal_weights(a, b)
    p = T.predict_proba(a, x)
    assert (p.argmax(1) == y.numpy()).mean() > 0.9 and ra["final_train_loss"] < 0.3


def test_log_probabilities_are_exact_at_large_logit_gaps():
    """A float32 softmax underflows to 0 past a logit gap of ~104 nats, and the label is then charged the
    997-bit floor; predict_log_proba's float64 log_softmax keeps every code length exact and the KL between
    two such predictors finite. A module mapping x -> logits: the logits are x itself."""
    from decoupling.core import measures
    x = torch.tensor([[0.0, -200.0], [-300.0, 0.0], [0.0, -1000.0]])
    gaps = np.array([200.0, 300.0, 1000.0])
    lq = T.predict_log_proba(nn.Identity(), x)
    assert lq.dtype == np.float64 and np.isfinite(lq).all()
    np.testing.assert_allclose(measures.log_loss_bits(lq, [1, 0, 1], "none", log=True), gaps / math.log(2),
                               rtol=1e-12)
    # q(y|x) = exp(log q): finite code lengths while e^−gap is a float64 (the first two rows)
    q = T.predict_proba(nn.Identity(), x)
    np.testing.assert_allclose(measures.log_loss_bits(q[:2], [1, 0], "none"), gaps[:2] / math.log(2), rtol=1e-12)
    # the mirrored predictor puts the mass on the other label: D_KL = gap / ln 2 bits per row, not inf
    lflip = T.predict_log_proba(nn.Identity(), -x)
    assert measures.essay_kl(lq, lflip, log=True) == pytest.approx(gaps.mean() / math.log(2), rel=1e-12)



def test_progress_env_switch(monkeypatch):
    cfg = T.TrainConfig()
    monkeypatch.setenv("DECOUPLING_PROGRESS", "0")
    assert not T._progress_on(cfg)
    monkeypatch.setenv("DECOUPLING_PROGRESS", "1")
    assert T._progress_on(cfg) and not T._progress_on(T.TrainConfig(progress=False))


def test_kaplan_lr():
    # Kaplan et al. 2020 eq. D.1 at N = 1e6: 0.003239 − 0.0001395·ln(1e6) ≈ 0.001312
    assert T.kaplan_lr(1e6) == pytest.approx(0.003239 - 0.0001395 * math.log(1e6))
    assert T.kaplan_lr(1e4) > T.kaplan_lr(1e7) > 0
