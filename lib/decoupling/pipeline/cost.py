"""What a list of runs costs, counted without training anything: `decoupling compute --count`.

Each run's experiment function is called with its real config while the library's loops and forward-only
passes are replaced by recorders (in a child process of its own, so nothing here leaks into a real run):

  train._loop, batched._loop_many      optimizer steps (a vmapped step of K members counts once, and
                                       K·steps as member steps), training FLOPs as the library counts them
                                       (6·N per token, PaLM appendix B), tokens or examples trained on
  train.predict_proba, Many.predict_proba, train.eval_lm, models.embed_minilm, generality._gpt_features,
  memory's ICL evaluation              forward-only batches; one example is computed for the output
                                       shape and the rest made up (the values are garbage, only counts kept)

What is not counted: forward passes made outside those functions (the zoo's encoders, memory's gating
metrics) and CPU-side numpy work (bootstraps, LogME, TF-IDF, SVDs); `host_s`, the recorder's own wall time
per run, bounds that work from above. A body that a run reads but that exists already is not charged.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
import os
import tempfile
import time
from pathlib import Path


@dataclasses.dataclass
class Tally:
    steps: int = 0          # optimizer steps (a vmapped step of K members once)
    member_steps: int = 0   # Σ K·steps: what the same training costs one member after another
    units: int = 0          # tokens (language models) or examples (classifiers) trained on
    eval_batches: int = 0   # forward-only batches
    flops: float = 0.0      # training FLOPs as the library counts them
    host_s: float = 0.0     # the recorder's wall time for the run

    def add(self, o: "Tally") -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(o, f.name))


class _Recorder:
    def __init__(self):
        self.stack: list[Tally] = [Tally()]  # the bottom one collects what is charged to nobody

    @property
    def cur(self) -> Tally:
        return self.stack[-1]

    @contextlib.contextmanager
    def scope(self, tally: Tally):
        self.stack.append(tally)
        t0 = time.perf_counter()
        try:
            yield tally
        finally:
            tally.host_s += time.perf_counter() - t0
            self.stack.pop()


REC = _Recorder()


def _fake_value(i: int) -> float:
    """Deterministic made-up losses in [2, 6], not constant, so fits downstream stay defined."""
    return 2.0 + 4.0 * ((i * 0.6180339887) % 1.0)


def _install() -> None:
    """Replace the loops and forward-only passes by recorders (module docstring)."""
    import numpy as np
    import torch

    from decoupling.core import batched, models, train
    from decoupling.core.device import describe
    from decoupling.experiments import generality, memory, pretrain
    rng = np.random.default_rng(0)

    def fake_loop(model, cfg, batch_at, loss_of, units_per_step, unit, flops_per_step, desc, evaluate=None):
        t = REC.cur
        t.steps += cfg.steps
        t.member_steps += cfg.steps
        t.units += units_per_step * cfg.steps
        t.flops += flops_per_step * cfg.steps
        evals = []
        if evaluate is not None:
            if cfg.eval_every:
                evals += [(s, evaluate(model)) for s in range(cfg.eval_every, cfg.steps, cfg.eval_every)]
            evals.append((cfg.steps, evaluate(model)))
        model.eval()
        loss = [_fake_value(i) for i in range(cfg.steps)]
        out = {"loss": loss, "final_train_loss": float(np.mean(loss[-max(1, cfg.steps // 10):])) if loss else
               float("nan"), "steps": cfg.steps, unit + "s": units_per_step * cfg.steps,
               unit + "s_per_s": float("nan"), "wall_s": 0.0, "flops": flops_per_step * cfg.steps,
               "flops_per_step": flops_per_step, "mfu": None, "device": describe()}
        if evaluate is not None:  # the keys train._loop returns
            out.update(eval=[[s, v] for s, v in evals], eval_train_s=[0.0 for _ in evals], eval_s=0.0)
        return out

    def fake_loop_many(template, params, buffers, cfg, batch_at, member_loss, units_per_step, unit,
                       flops_per_step, desc):
        K = len(units_per_step)
        t = REC.cur
        t.steps += cfg.steps
        t.member_steps += K * cfg.steps
        t.units += sum(units_per_step) * cfg.steps
        t.flops += sum(flops_per_step) * cfg.steps
        for p in params.values():
            p.requires_grad_(False)
        loss = [_fake_value(i) for i in range(cfg.steps)]
        return [{"loss": loss, "final_train_loss": float(np.mean(loss[-max(1, cfg.steps // 10):])),
                 "steps": cfg.steps, unit + "s": units_per_step[k] * cfg.steps, unit + "s_per_s": float("nan"),
                 "wall_s": 0.0, "flops": flops_per_step[k] * cfg.steps, "mfu": None, "device": describe(),
                 "members": K, f"all_members_{unit}s_per_s": float("nan")} for k in range(K)]

    def fake_probs(n: int, C: int) -> np.ndarray:
        return rng.dirichlet(np.ones(C), size=n).astype(np.float64)

    real_predict, real_many_predict = train.predict_proba, batched.Many.predict_proba

    def predict_proba(model, input_ids, attention_mask=None, batch_size=256):
        n = len(input_ids)
        REC.cur.eval_batches += math.ceil(n / batch_size)
        if n == 0:
            return np.zeros((0, 0))
        q1 = real_predict(model, input_ids[:1], None if attention_mask is None else attention_mask[:1])
        return fake_probs(n, q1.shape[1])

    def many_predict(self, inputs_for_member, batch_size=256):
        per = [inputs_for_member(k) for k in range(len(self))]
        REC.cur.eval_batches += math.ceil(max(len(p[0]) for p in per) / batch_size)
        q1 = real_many_predict(self, lambda k: tuple(t[:1] for t in per[k]), batch_size)
        return [fake_probs(len(per[k][0]), q1[k].shape[1]) for k in range(len(self))]

    def eval_lm(model, tokens, block_size=None, n_windows=64, batch_size=32):
        block_size = block_size or model.config.n_positions
        W = min(n_windows, len(tokens) - block_size)
        REC.cur.eval_batches += math.ceil(W / batch_size)
        # falls with model size like a power law, so the scaling fits downstream behave as on real losses
        N = sum(p.numel() for p in model.parameters())
        return (1.0 + 30.0 * N ** -0.3) * (1.0 + 0.02 * (_fake_value(int(tokens[:8].sum())) - 4.0))

    def embed_minilm(texts, batch_size=64, max_length=128, normalize=True, model=None, tokenizer=None):
        REC.cur.eval_batches += math.ceil(len(texts) / batch_size)
        e = rng.normal(size=(len(texts), 384)).astype(np.float32)
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    def gpt_features(model, ids, mask, batch_size=256):
        REC.cur.eval_batches += math.ceil(len(ids) / batch_size)
        return rng.normal(size=(len(ids), model.config.n_embd))

    # hundreds of fine-tune inits load MiniLM or build a random BERT: built once, copied
    real_load_minilm, real_random_bert = models.load_minilm, generality._random_bert
    minilm_once = functools.lru_cache(maxsize=None)(lambda num_labels: real_load_minilm(num_labels, seed=0))
    bert_once = functools.lru_cache(maxsize=None)(lambda num_labels: real_random_bert(num_labels, 0))

    def icl_vmap(fn, in_dims=0, **kw):
        def fake(params, buffers, xs, ys):
            REC.cur.eval_batches += 1
            E_ = next(iter(params.values())).shape[0]
            return torch.randn(E_, *xs.shape[-3:-1]) if xs.dim() == 3 else torch.randn(*xs.shape[:-1])
        return fake

    def dmmse(xs, ys, pool, noise_var):
        REC.cur.eval_batches += math.ceil(len(xs) / max(1, (1 << 22) // (xs.shape[1] * pool.shape[0])))
        return torch.randn(xs.shape[:2])

    real_pretrain = pretrain.pretrain
    memory.vmap, memory.dmmse_predictions = icl_vmap, dmmse
    train._loop, batched._loop_many = fake_loop, fake_loop_many
    train.predict_proba, batched.Many.predict_proba, train.eval_lm = predict_proba, many_predict, eval_lm
    models.embed_minilm, generality._gpt_features = embed_minilm, gpt_features
    models.load_minilm = lambda num_labels=None, seed=0: copy.deepcopy(minilm_once(num_labels))
    generality._random_bert = lambda num_labels, seed: copy.deepcopy(bert_once(num_labels))
    # a body a run reads that is not itself being counted exists already (or is its own run): charged to nobody
    pretrain.pretrain = _elsewhere(real_pretrain)
    pretrain._real_pretrain = real_pretrain
    torch.set_num_threads(1)


def _count_here(profile: str, chapters: tuple, seed: int, wanted: list[int]) -> list[dict]:
    """In the child process: the tallies of runs `wanted` (indices into plan.book)."""
    from decoupling import paths
    from decoupling.pipeline import plan, store
    tmp = Path(tempfile.mkdtemp(prefix="decoupling-count-"))
    paths.STORE_DIR = tmp  # bodies and records of the fake runs land here, never in the real store
    os.environ[store.ALLOW_CPU_FULL] = "1"
    _install()
    from decoupling.experiments import pretrain
    from decoupling.progress import report
    runs = plan.book(profile, chapters, seed)
    out = []
    for k, i in enumerate(wanted, 1):
        r, t = runs[i], Tally()
        with REC.scope(t):
            if r.artifact:  # its own run: charged to it, and kept in the temporary store for its readers
                d = store.artifact_path(r.fn, r.cfg, r.profile)
                if not (d / "DONE").exists():
                    pretrain.pretrain = pretrain._real_pretrain
                    try:
                        store.artifact(pretrain.pretrain, r.cfg, profile=r.profile)
                    finally:
                        pretrain.pretrain = _elsewhere(pretrain._real_pretrain)
            else:
                r.fn(r.cfg)
        out.append(dataclasses.asdict(t))
        report(f"[count] {k}/{len(wanted)} {r.label}: {t.steps:,} steps ({t.host_s:.0f} s to count)")
    return out


def _elsewhere(real):
    @functools.wraps(real)
    def pretrain_elsewhere(cfg, out_dir):
        with REC.scope(Tally()):
            return real(cfg, out_dir)
    return pretrain_elsewhere


def count(profile: str, chapters: tuple, seed: int, wanted: list[int]) -> list[Tally]:
    """The tallies of `plan.book(profile, chapters, seed)[i]` for i in `wanted`, counted in a child process."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    if not wanted:
        return []
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        rows = pool.submit(_count_here, profile, tuple(chapters), seed, list(wanted)).result()
    return [Tally(**r) for r in rows]


def training_rate() -> float:
    """This device's training FLOP/s on a small GPT-2 step (batch 16 × 128) at the library's dtype, measured
    for about two seconds: what `decoupling compute --count` divides counted FLOPs by."""
    import torch

    from decoupling.core import device, models, train
    cfg = models.ModelConfig(n_layer=4, n_head=4, d_model=128, block_size=128)
    lm = models.build_lm(cfg, seed=0).to(device.DEVICE)
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-3)
    ids = torch.randint(0, cfg.vocab_size, (16, 128), generator=torch.Generator().manual_seed(0)).to(device.DEVICE)
    per_step = models.flops_per_token(cfg, 128) * ids.numel()

    def step():
        with device.autocast():
            loss = lm(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    step()  # warm-up: allocations, kernels chosen
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 2.0:
        step()
        n += 1
    device.sync()
    return per_step * n / (time.perf_counter() - t0)
