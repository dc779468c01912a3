"""decoupling.core.batched: K models trained as one batched run equal K sequential runs of decoupling.core.train
(same seeds, same data order) within float tolerance, on CPU — for plain MLPs, GPT-2 classifiers and LMs,
with per-member gradient clipping active and members of different dataset sizes."""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from decoupling.core import batched
from decoupling.core import models as M
from decoupling.core import train as T
from decoupling.core.device import DEVICE, cpu_threads

CFG = M.PRESETS["test"]  # 1 layer, d=16, vocab 128, context 32


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: on a shared 2-core machine a second thread mostly waits (device.cpu_threads)."""
    with cpu_threads(1):
        yield


def _mlp(seed):
    return M.seeded(seed, lambda: nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4)))


def _mlp_data(k):
    """Member k gets its own dataset; sizes differ (member 2 is smaller than a batch: full batch)."""
    g = torch.Generator().manual_seed(100 + k)
    n = (300, 200, 40, 250)[k]
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + 2 * (x[:, 2] > 0).long()
    return (x,), y


def _close_params(a: nn.Module, b: nn.Module, atol: float) -> float:
    worst = max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))
    assert worst < atol, worst
    return worst


def test_mlps_batched_equal_sequential():
    # small clip: every member's gradient is clipped by its own norm; decay + warmup + cosine all on
    cfg = T.TrainConfig(steps=60, batch_size=64, lr=1e-2, weight_decay=0.1, grad_clip=0.05, progress=False)
    seeds = [0, 1, 2, 3]
    many = batched.train_many(_mlp, seeds, _mlp_data, cfg)
    mods, seq = batched.sequential(_mlp, seeds, _mlp_data, cfg)
    for k in range(4):
        np.testing.assert_allclose(many.results[k]["loss"], seq[k]["loss"], rtol=1e-5, atol=1e-6)
        _close_params(many.member(k), mods[k], 1e-4)
        assert many.results[k]["examples"] == seq[k]["examples"]
    q = many.predict_proba(lambda k: _mlp_data(k)[0])
    for k in range(4):
        np.testing.assert_allclose(q[k], T.predict_proba(mods[k], *_mlp_data(k)[0]), atol=1e-5)
    assert many.results[0]["members"] == 4 and many.results[0]["final_train_loss"] < seq[0]["loss"][0]
    # one record for both loops (train.run_record): a batched member reports what a sequential run does
    for k in range(4):
        assert set(many.results[k]) == set(seq[k]) | {"members", "all_members_examples_per_s"}
        assert many.results[k]["flops"] == seq[k]["flops"] and many.results[k]["steps"] == seq[k]["steps"]


def test_log_probabilities_are_exact_at_large_logit_gaps():
    """Many.predict_log_proba is train.predict_log_proba per member: a float64 log_softmax, so a label
    behind a logit gap of 200·(k+1) nats costs exactly that / ln 2 bits (a float32 softmax would give 0)."""
    from decoupling.core import measures

    def scaled_identity(k):  # member k's logits are (k + 1)·x
        m = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            m.weight.copy_(torch.eye(2) * (k + 1))
        return m

    many = batched.stack(scaled_identity, [0, 1, 2])
    x = torch.tensor([[0.0, -200.0], [-200.0, 0.0]])
    lqs = many.predict_log_proba(lambda k: (x,))
    for k, lq in enumerate(lqs):
        np.testing.assert_allclose(lq, T.predict_log_proba(scaled_identity(k), x), rtol=1e-12)
        bits = measures.log_loss_bits(lq, [1, 0], "none", log=True)
        np.testing.assert_allclose(bits, [200 * (k + 1) / np.log(2)] * 2, rtol=1e-12)
    np.testing.assert_allclose(many.predict_proba(lambda k: (x,))[0], np.exp(lqs[0]))


def test_full_batch_members_equal_sequential():
    """Every member full batch (batch_size ≥ every n; sizes differ): the batch is gathered once, not per step."""
    cfg = T.TrainConfig(steps=40, batch_size=300, lr=1e-2, weight_decay=0.1, grad_clip=0.05, progress=False)
    many = batched.train_many(_mlp, [0, 1, 2], _mlp_data, cfg)
    mods, seq = batched.sequential(_mlp, [0, 1, 2], _mlp_data, cfg)
    for k in range(3):
        np.testing.assert_allclose(many.results[k]["loss"], seq[k]["loss"], rtol=1e-5, atol=1e-6)
        _close_params(many.member(k), mods[k], 1e-4)
        assert many.results[k]["examples"] == seq[k]["examples"] == 40 * len(_mlp_data(k)[1])


def test_separate_data_seeds_give_separate_orders():
    cfg = T.TrainConfig(steps=20, batch_size=16, lr=1e-2, progress=False)
    many = batched.train_many(_mlp, [0, 0], lambda k: _mlp_data(0), cfg, data_seeds=[5, 6])
    _, seq = batched.sequential(_mlp, [0, 0], lambda k: _mlp_data(0), cfg, data_seeds=[5, 6])
    np.testing.assert_allclose(many.results[1]["loss"], seq[1]["loss"], rtol=1e-5, atol=1e-6)
    assert many.results[0]["loss"] != many.results[1]["loss"]  # same init, different data order


def _clf_data(k):
    g = torch.Generator().manual_seed(10 + k)
    n, L = 96, 12
    lengths = torch.randint(2, L + 1, (n,), generator=g)
    mask = (torch.arange(L)[None] < lengths[:, None]).long()
    ids = torch.randint(1, CFG.vocab_size, (n, L), generator=g) * mask  # right padding, pad id 0
    return (ids, mask), ids[:, 0] % 2


def test_gpt2_classifiers_batched_equal_sequential():
    cfg = T.TrainConfig(steps=15, batch_size=32, lr=1e-2, grad_clip=0.5, progress=False)
    make = lambda s: M.build_classifier(CFG, num_labels=2, seed=s)  # noqa: E731
    many = batched.train_many(make, [0, 1, 2], _clf_data, cfg)
    mods, seq = batched.sequential(make, [0, 1, 2], _clf_data, cfg)
    for k in range(3):
        np.testing.assert_allclose(many.results[k]["loss"], seq[k]["loss"], rtol=1e-4, atol=1e-5)
        _close_params(many.member(k), mods[k], 1e-3)  # Adam divides by tiny early moments: loose on weights
    q = many.predict_proba(lambda k: _clf_data(k)[0])
    np.testing.assert_allclose(q[1], T.predict_proba(mods[1], *_clf_data(1)[0]), atol=1e-3)
    assert many.results[0]["flops"] == seq[0]["flops"]


def test_linear_probe_trains_only_the_head():
    cfg = T.TrainConfig(steps=5, batch_size=32, lr=1e-2, body_lr_mult=0.0, progress=False)
    make = lambda s: M.build_classifier(CFG, num_labels=2, seed=s)  # noqa: E731
    many = batched.train_many(make, [3, 4], _clf_data, cfg)
    for k, s in enumerate([3, 4]):
        before, after = make(s), many.member(k)
        assert torch.equal(before.transformer.h[0].mlp.c_fc.weight, after.transformer.h[0].mlp.c_fc.weight)
        assert not torch.equal(before.score.weight, after.score.weight)


def test_lms_batched_equal_sequential():
    cfg = T.TrainConfig(steps=10, batch_size=8, lr=1e-2, progress=False)
    g = torch.Generator().manual_seed(0)
    streams = [torch.randint(0, CFG.vocab_size, (n,), generator=g) for n in (600, 900)]
    make = lambda s: M.build_lm(CFG, seed=s)  # noqa: E731
    many = batched.train_many_lm(make, [0, 1], lambda k: streams[k], cfg)
    for k, s in enumerate([0, 1]):
        m = make(s)
        out = T.train_lm(m, streams[k], dataclasses.replace(cfg, seed=s))
        np.testing.assert_allclose(many.results[k]["loss"], out["loss"], rtol=1e-4, atol=1e-5)
        _close_params(many.member(k), m, 1e-3)  # tied LM head: the member's copy stays tied
        assert many.member(k).lm_head.weight is many.member(k).transformer.wte.weight or \
            torch.equal(many.member(k).lm_head.weight, many.member(k).transformer.wte.weight)


class _Regressor(nn.Module):
    """Two inputs and a scalar output: neither a classifier nor an LM, so it needs its own loss."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, x, scale):  # (B, 4), (B,) -> (B,)
        return self.net(x).squeeze(-1) * scale


def test_custom_loss_members_train_as_if_alone():
    cfg = T.TrainConfig(steps=40, batch_size=16, lr=1e-2, grad_clip=0.5, progress=False)
    K, B = 3, 16
    g = torch.Generator().manual_seed(0)
    x = torch.randn(cfg.steps, K, B, 4, generator=g)
    s = torch.rand(cfg.steps, K, B, generator=g) + 0.5
    y = torch.einsum("tkbd,kd->tkb", x, torch.randn(K, 4, generator=g))  # each member its own target
    x, s, y = x.to(DEVICE), s.to(DEVICE), y.to(DEVICE)
    make = lambda seed: M.seeded(seed, _Regressor)  # noqa: E731

    def loss(forward, x_k, s_k, y_k):
        return F.mse_loss(forward(x_k, s_k), y_k)

    together = batched.train_stacked(batched.stack(make, [0, 1, 2]), loss, lambda t: (x[t], s[t], y[t]), cfg, B, 100.0)
    assert len(together) == K and together.results[0]["flops"] == 100.0 * cfg.steps
    for k in range(K):
        alone = batched.train_stacked(batched.stack(make, [k]), loss,
                                      lambda t: (x[t, k:k + 1], s[t, k:k + 1], y[t, k:k + 1]), cfg, B, 100.0)
        np.testing.assert_allclose(together.results[k]["loss"], alone.results[0]["loss"], rtol=1e-5, atol=1e-6)
        _close_params(together.member(k), alone.member(0), 1e-5)
    # forward: every member at once, each on its own inputs or all on the same ones
    own, shared = together.forward(x[0], s[0]).cpu(), together.forward(x[0, 0], s[0, 0], shared=True).cpu()
    assert own.shape == shared.shape == (K, B)
    with torch.no_grad():
        for k in range(K):
            m = together.member(k)
            torch.testing.assert_close(own[k], m(x[0, k].cpu(), s[0, k].cpu()))
            torch.testing.assert_close(shared[k], m(x[0, 0].cpu(), s[0, 0].cpu()))


def test_clip_per_member_is_torch_clip_on_each_slice():
    g = torch.Generator().manual_seed(0)
    ps = [torch.zeros(3, 5, 4, requires_grad=True), torch.zeros(3, 7, requires_grad=True)]
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g) * torch.tensor([0.01, 1.0, 10.0]).view(-1, *[1] * (p.dim() - 1))
    want = []
    for k in range(3):
        sl = [p.grad[k].clone().requires_grad_(False) for p in ps]
        fake = [torch.zeros_like(s, requires_grad=True) for s in sl]
        for f, s in zip(fake, sl):
            f.grad = s
        torch.nn.utils.clip_grad_norm_(fake, 1.0)
        want.append([f.grad for f in fake])
    norms = batched.clip_per_member(ps, 1.0)
    assert norms.shape == (3,) and norms[0] < 1.0 < norms[1] < norms[2]
    for k in range(3):
        for p, w in zip(ps, want[k]):
            torch.testing.assert_close(p.grad[k], w)


def test_members_must_share_an_architecture():
    widths = {0: 16, 1: 32}
    make = lambda s: nn.Linear(8, widths[s])  # noqa: E731
    with pytest.raises(ValueError, match="one architecture"):
        batched.train_many(make, [0, 1], lambda k: ((torch.zeros(4, 8),), torch.zeros(4, dtype=torch.long)),
                           T.TrainConfig(steps=1, progress=False))


def test_members_train_with_dropout_and_predict_without_it_whatever_the_template_mode():
    """As train._loop: training in train mode (a from_pretrained model arrives in eval mode), evaluation in
    eval mode (deterministic q(y|x))."""
    def drop(seed, mode):
        m = M.seeded(seed, lambda: nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 4)))
        return m.train() if mode == "train" else m.eval()

    cfg = T.TrainConfig(steps=20, batch_size=32, lr=1e-2, progress=False)
    runs = {mode: batched.train_many(lambda s, mode=mode: drop(s, mode), [0, 1], _mlp_data, cfg) for mode in ("train", "eval")}
    assert runs["train"].results[0]["loss"] == runs["eval"].results[0]["loss"]
    # members arriving in different modes (a from_pretrained body beside a fresh init) stack all the same
    mixed = batched.train_many(lambda s: drop(s, ("eval", "train")[s]), [0, 1], _mlp_data, cfg)
    assert mixed.results[0]["loss"] == runs["eval"].results[0]["loss"]
    plain = batched.train_many(lambda s: M.seeded(s, lambda: nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Identity(),
                                                                      nn.Linear(32, 4))), [0, 1], _mlp_data, cfg)
    assert runs["eval"].results[0]["loss"] != plain.results[0]["loss"]  # dropout was on while training
    many = runs["eval"]
    p1, p2 = many.predict_proba(lambda k: _mlp_data(k)[0]), many.predict_proba(lambda k: _mlp_data(k)[0])
    assert all(np.array_equal(a, b) for a, b in zip(p1, p2))
