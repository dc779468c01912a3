"""What a list of runs costs, and how long it takes on this machine: `decoupling compute --count`.

**Counting.** Each run's experiment function is called with its real config while the library's loops and
forward passes are replaced by recorders (in a child process, so nothing leaks into a real run; `recorders()`
puts everything back on exit). Nothing trains and no large forward pass runs:

  train._loop, batched._loop_many        optimizer steps: the real batch of step 0 is drawn for its shape,
                                         then the steps are counted, never taken
  train.predict_log_proba, train.eval_lm, batched.Many.predict_log_proba / .forward, encoders.embed (every
  encoder pass: the zoo, MiniLM features), generality._gpt_features, memory.dmmse_predictions
                                         forward-only work: the rows or tokens are counted and made-up
                                         outputs of the right shape returned
  memory._gating_metrics                 run for real (a few milliseconds) and counted
  baselines._fit, _fit_pixels, data.baseline
                                         the references' logistic regressions: stand-ins, counted

Models are built or loaded once per architecture (or file) and that one instance is handed to every caller
(nothing trains, and every value is made up anyway), so counting pays neither weight initialisation, nor
copies, nor loading more than once; deterministic host work an experiment repeats (the zoo's cut of a
target's texts, a platform's file checks) is done once (`ONCE`).

**Work per shape.** A run's `Tally` holds its work per `Shape`: the kind (training steps or forward
calls), the architecture, one call's input shapes, how many members a vmapped call stacks, the threads.
Time per unit differs by orders of magnitude between a linear probe and SmolLM2, between a step and a
forward pass and between fp32 and bf16, so no single FLOP rate can turn counts into minutes: each shape's
rate is measured on this machine the first time a count meets it, and kept (`pipeline.rates`); minutes =
Σ units / rate over shapes (`estimate`).

**Host work.** LogME, H-scores, bootstraps, power-law fits and double descent's SVDs run for real while
counting (on made-up features and losses where those are faked) and are timed: their seconds go into the
estimate as measured (LogME, H-score and the SVDs once per input shape, `BY_SHAPE`: their time is the
shape's).
The references' and baselines' logistic regressions (TF-IDF over whole training splits at `full`: minutes)
are replaced by stand-ins and only counted (`STANDINS`): not estimated. Nor is the rest of the host's work
— reading data, tokenizing, cutting texts, building and saving models; `count_s` says how long counting
spent on it.

**Cache.** Each run's tally is kept under .cache/cost/counts, keyed by the run's results key
(`store.keys`: experiment, config, library source, data, torch, device), this recorder's code and the CPU,
so a second count is instant and a changed config or library recounts only the runs it changes. A tally
whose shapes have no rate under the current dtype is counted again, which measures them.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from decoupling import files
from decoupling.pipeline.rates import (cache_dir, context, cpu_name, load_rates, measure, rates_path, save_rates,
                                       timed)


# ================================================================================== shapes and tallies
@dataclass(frozen=True)
class Shape:
    """One kind of work whose rate is measured once."""
    kind: str            # "train": optimizer steps; "forward": no gradient
    model: str           # the architecture, readable ("GPT2LMHeadModel 6x192", "Linear 384->2")
    inputs: str          # one call's tensors, e.g. "32x128,32x128" (batch x tokens, then labels)
    unit: str            # what the rate counts: "token" or "example"
    members: int = 1     # models stacked in one vmapped call
    threads: int = 1     # torch intra-op threads of the call
    detail: str = ""     # what else changes the time: frozen body, clipping, a hash of the parameter shapes

    @property
    def key(self) -> str:
        return " | ".join([self.kind, self.model, self.inputs, f"K={self.members}", f"{self.threads}t", self.detail])


@dataclass
class Tally:
    """What one run costs."""
    steps: int = 0            # optimizer steps (a vmapped step of K members once)
    member_steps: int = 0     # Σ K·steps: what the same training costs one member after another
    tokens: float = 0.0       # token positions trained on (sequence models; all members)
    examples: float = 0.0     # examples trained on by models of vectors (probes, MLPs, the memory models)
    fwd_tokens: float = 0.0   # token positions read by forward-only passes
    fwd_examples: float = 0.0  # rows read by forward-only passes of models of vectors
    flops: float = 0.0        # training FLOPs as the library counts them (6N per token, PaLM appendix B)
    work: dict = field(default_factory=dict)    # Shape.key -> [calls, units]
    shapes: dict = field(default_factory=dict)  # Shape.key -> the Shape's fields
    host: dict = field(default_factory=dict)    # host function run for real and timed -> [calls, seconds]
    untimed: dict = field(default_factory=dict)  # host work replaced by a stand-in, not estimated -> [calls, rows]
    count_s: float = 0.0      # seconds counting took, measuring rates excluded

    def add(self, o: "Tally") -> None:
        for f in ("steps", "member_steps", "tokens", "examples", "fwd_tokens", "fwd_examples", "flops", "count_s"):
            setattr(self, f, getattr(self, f) + getattr(o, f))
        for k, (calls, units) in o.work.items():
            w = self.work.setdefault(k, [0, 0.0])
            w[0] += calls
            w[1] += units
        self.shapes.update(o.shapes)
        for mine, theirs in ((self.host, o.host), (self.untimed, o.untimed)):
            for k, (calls, x) in theirs.items():
                h = mine.setdefault(k, [0, 0.0])
                h[0] += calls
                h[1] += x

    @property
    def host_s(self) -> float:
        """Seconds of the timed host functions."""
        return sum(s for _, s in self.host.values())


@dataclass
class Estimate:
    seconds: float          # Σ units / rate over the measured shapes, plus the timed host work
    host_s: float           # of which timed host work
    unmeasured: list        # shapes with no rate here (not in `seconds`)


def estimate(t: Tally, rates: dict) -> Estimate:
    """Seconds `t` takes on the machine `rates` was measured on ({Shape.key: {"rate": units per second}})."""
    s, missing = 0.0, []
    for k, (_, units) in t.work.items():
        r = (rates.get(k) or {}).get("rate")
        if r:
            s += units / r
        elif units:
            missing.append(k)
    return Estimate(s + t.host_s, t.host_s, missing)


# ================================================================================== the count cache
def _recorder_hash() -> str:
    """This module's code without comments and docstrings (`provenance.code_text`): a changed recorder
    recounts every run, a reworded comment none."""
    from decoupling.pipeline.provenance import code_text
    return hashlib.sha256(code_text(Path(__file__).read_text(), __file__).encode()).hexdigest()[:16]


RECORDER = _recorder_hash()


def count_path(run, threads: int | None = None) -> Path:
    """Where a run's tally is kept: its results key, this recorder, the CPU (host seconds are this
    machine's) and the threads a run takes (its shapes name them)."""
    from decoupling.pipeline import store
    _, key, parts = store.keys(run.fn, run.cfg, run.profile)
    ident = {"key": key, "artifact": run.artifact, "recorder": RECORDER, "cpu": cpu_name()}
    if threads:  # a run's share under `--jobs N`; None keeps the names of one-at-a-time tallies
        ident["threads"] = threads
    name = hashlib.sha256(files.canonical(ident).encode()).hexdigest()[:24]
    return cache_dir() / "counts" / parts["experiment"] / f"{name}.json"


def _load_count(path: Path) -> Tally | None:
    try:
        return Tally(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


# ================================================================================== the recorders
class _Recorder:
    """The tally being charged (a stack: a body built for a reader is charged to nobody), the rates known,
    and whether new shapes are measured."""

    def __init__(self, rates: dict | None = None, probe: bool = False, seconds: float = 0.3,
                 rates_file: Path | None = None):
        self.stack: list[Tally] = [Tally()]  # the bottom one collects what is charged to nobody
        self.rates = rates if rates is not None else {}
        self.probe, self.seconds, self.rates_file = probe, seconds, rates_file
        self.probe_s = 0.0  # seconds spent measuring rates (not counting)
        self.new: set[str] = set()
        self.host_depth = 0

    @property
    def cur(self) -> Tally:
        return self.stack[-1]

    @contextlib.contextmanager
    def scope(self, tally: Tally):
        self.stack.append(tally)
        t0, p0 = time.perf_counter(), self.probe_s
        try:
            yield tally
        finally:
            tally.count_s += time.perf_counter() - t0 - (self.probe_s - p0)
            self.stack.pop()

    def charge(self, shape: Shape, calls: int, units: float, probe: Callable[[], tuple] | None) -> None:
        """Charge `calls` of `shape` (`units` in all) to the current run; the first time a shape is met
        and measuring is on, `probe()` gives (run(n), units per call) and the shape's rate is measured."""
        t = self.cur
        w = t.work.setdefault(shape.key, [0, 0.0])
        w[0] += calls
        w[1] += float(units)
        t.shapes[shape.key] = dataclasses.asdict(shape)
        if not (self.probe and probe is not None and shape.key not in self.rates):
            return
        t0 = time.perf_counter()
        try:
            run, per_call = probe()
            self.rates[shape.key] = {"rate": measure(run, per_call, self.seconds), "unit": shape.unit}
        except Exception as e:  # noqa: BLE001 - a shape that cannot be measured is reported, not fatal
            self.rates[shape.key] = {"rate": None, "unit": shape.unit, "error": f"{type(e).__name__}: {e}"[:300]}
        self.new.add(shape.key)
        if self.rates_file is not None:
            self.rates.update(save_rates({shape.key: self.rates[shape.key]}, self.rates_file))
        self.probe_s += time.perf_counter() - t0


def _fake_value(i: int) -> float:
    """Deterministic made-up losses in [2, 6], not constant, so fits downstream stay defined."""
    return 2.0 + 4.0 * ((i * 0.6180339887) % 1.0)


def _tensors(x) -> list:
    """Every tensor in a nest of tuples and lists, in order."""
    import torch
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (tuple, list)):
        return [t for v in x for t in _tensors(v)]
    return []


def _dims(ts) -> str:
    return ",".join("x".join(map(str, t.shape)) for t in ts)


def _ids(model, ts, lead: int = 0):
    """The token ids among a call's tensors (integers with `lead` member dims before batch x tokens) when
    `model` is a `transformers` model, else None: their size is the token positions a call reads."""
    if not hasattr(getattr(model, "config", None), "model_type"):
        return None  # index pairs (the memory models) or vectors: examples, not tokens
    return next((t for t in ts if t.dim() >= 2 + lead and not t.is_floating_point()), None)


def _arch(model) -> str:
    """A model's architecture, readable."""
    from torch import nn
    name = type(model).__name__
    c = getattr(model, "config", None)
    if c is not None and hasattr(c, "model_type"):
        L = getattr(c, "n_layer", None) or getattr(c, "num_hidden_layers", None)
        d = getattr(c, "n_embd", None) or getattr(c, "hidden_size", None)
        return f"{name} {L}x{d}" + (f" ->{c.num_labels}" if name.endswith("ForSequenceClassification") else "")
    if isinstance(model, nn.Linear):
        return f"Linear {model.in_features}->{model.out_features}"
    return f"{name} {sum(p.numel() for p in model.parameters()):,} params"


def _params_hash(model) -> str:
    """The parameter shapes and which ones train: what else decides a step's time."""
    return hashlib.sha1(repr([(n, tuple(p.shape), p.requires_grad) for n, p in model.named_parameters()]
                             ).encode()).hexdigest()[:8]


PROBE_TOKENS = 4096  # a forward probe reads at most this many tokens a call: past it, time per token is flat


def _probe_rows(rows: int, T: int | None, K: int = 1) -> int:
    """Rows a forward probe call reads: the call's own, or fewer for a long one (at least one)."""
    return rows if not T else max(1, min(rows, PROBE_TOKENS // (T * K)))


def _threads() -> int:
    import torch
    return torch.get_num_threads()


_N_OUT: dict = {}  # (class, parameter shapes) -> classes predicted, found once by one real row


def _n_out(model, one_row: Callable[[], object]) -> int:
    """The number of classes a model predicts, from its config or its only layer, else from one real row
    (once per class and parameter shapes)."""
    from torch import nn
    c = getattr(model, "config", None)
    if c is not None and type(model).__name__.endswith("ForSequenceClassification"):
        return int(c.num_labels)
    if isinstance(model, nn.Linear):
        return model.out_features
    k = (type(model).__qualname__, _params_hash(model))
    if k not in _N_OUT:
        _N_OUT[k] = int(one_row().shape[-1])
    return _N_OUT[k]


_ABSENT = object()


@contextlib.contextmanager
def _patched(patches: list):
    """Set each (object, attribute, value), then put the old values back (an attribute a class inherited
    is deleted again, so that the inherited one shows through)."""
    old = [(o, a, o.__dict__.get(a, _ABSENT) if isinstance(o, type) else getattr(o, a)) for o, a, _ in patches]
    try:
        for o, a, v in patches:
            setattr(o, a, v)
        yield
    finally:
        for o, a, v in reversed(old):
            if v is _ABSENT:
                delattr(o, a)
            else:
                setattr(o, a, v)


HOST = {  # host functions run for real while counting and timed: module -> functions
    "decoupling.core.measures": ("logme", "h_score", "bootstrap_ci", "fit_power_law", "fit_power_law_floor",
                                 "clustered_ci"),
    "decoupling.experiments.tyranny": ("min_norm_solve",),  # double descent's SVDs
}
# Of those, the ones whose time is decided by their arguments' shapes (an eigendecomposition or SVD of the
# features): run once per shape, and a repeat is charged the time measured and handed the same value.
BY_SHAPE = ("measures.logme", "measures.h_score", "tyranny.min_norm_solve")
# Deterministic host work an experiment repeats with the same arguments (the zoo cuts a target's texts for
# every model; a platform's files are checked on every look-up): done once per counting process.
ONCE = (("decoupling.experiments.zoo", "inputs"), ("decoupling.experiments.zoo", "tokenizer_of"),
        ("decoupling.data.platforms", "path"))
# Host work replaced by stand-ins (module, function, what it is): the logistic regressions of the references
# and baselines take minutes at `full` (TF-IDF over whole training splits), change no count, and are not
# estimated; their fits and rows are counted.
STANDINS = (("decoupling.core.baselines", "_fit", "TF-IDF + logistic regression fits"),
            ("decoupling.core.baselines", "_fit_pixels", "pixels + logistic regression fits"),
            ("decoupling.data", "baseline", "data.baseline TF-IDF fits (whole training split)"))


@contextlib.contextmanager
def recorders(rec: _Recorder):
    """The library's loops and forward passes replaced by recorders charging `rec` (module docstring)."""
    import importlib

    import numpy as np
    import torch

    from decoupling.core import batched, encoders, models, train
    from decoupling.core.device import describe
    from decoupling.experiments import generality, memory, pretrain
    rng = np.random.default_rng(0)
    real = {"loop": train._loop, "loop_many": batched._loop_many, "predict": train.predict_log_proba,
            "many_predict": batched.Many.predict_log_proba, "many_forward": batched.Many.forward,
            "eval_lm": train.eval_lm, "embed": encoders.embed, "gpt_features": generality._gpt_features,
            "gating": memory._gating_metrics, "dmmse": memory.dmmse_predictions}

    # ---------------------------------------------------------------------------- training
    def fake_loop(model, cfg, batch_at, loss_of, units_per_step, unit, flops_per_step, desc, evaluate=None):
        ts = _tensors(batch_at(0))
        ids = _ids(model, ts)
        flags = [f for f, on in (("frozen body", cfg.body_lr_mult == 0), ("clip", cfg.grad_clip > 0),
                                 (f"compile={cfg.compile}", bool(cfg.compile))) if on]
        shape = Shape("train", _arch(model), _dims(ts), unit, 1, _threads(), " ".join(flags + [_params_hash(model)]))
        t = rec.cur
        t.steps += cfg.steps
        t.member_steps += cfg.steps
        if ids is not None:
            t.tokens += ids.numel() * cfg.steps
        else:
            t.examples += units_per_step * cfg.steps
        t.flops += flops_per_step * cfg.steps

        def probe():
            m = copy.deepcopy(model)

            def run(n):
                s = 0.0
                while n > 0:
                    k = min(n, cfg.steps)
                    c = dataclasses.replace(cfg, steps=k, eval_every=0, progress=False)
                    s += real["loop"](m, c, batch_at, loss_of, units_per_step, unit, flops_per_step, desc)["wall_s"]
                    n -= k
                return s
            return run, units_per_step
        rec.charge(shape, cfg.steps, units_per_step * cfg.steps, probe)
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
        ts = _tensors(batch_at(0))
        ids = _ids(template, ts, lead=1)
        flags = [f for f, on in (("frozen body", cfg.body_lr_mult == 0), ("clip", cfg.grad_clip > 0)) if on]
        shape = Shape("train", _arch(template), _dims(ts), unit, K, _threads(),
                      " ".join(flags + [_params_hash(template)]))
        t = rec.cur
        t.steps += cfg.steps
        t.member_steps += K * cfg.steps
        if ids is not None:
            t.tokens += ids.numel() * cfg.steps
        else:
            t.examples += sum(units_per_step) * cfg.steps
        t.flops += sum(flops_per_step) * cfg.steps

        def probe():
            ps = {n: p.detach().clone() for n, p in params.items()}
            bs = {n: b.clone() for n, b in buffers.items()}

            def run(n):
                s = 0.0
                while n > 0:
                    k = min(n, cfg.steps)
                    for p in ps.values():  # the real loop freezes them when it ends
                        p.requires_grad_(True)
                    c = dataclasses.replace(cfg, steps=k, progress=False)
                    r = real["loop_many"](template, ps, bs, c, batch_at, member_loss, units_per_step, unit,
                                          flops_per_step, desc)
                    s += r[0]["wall_s"]
                    n -= k
                return s
            return run, sum(units_per_step)
        rec.charge(shape, cfg.steps, sum(units_per_step) * cfg.steps, probe)
        for p in params.values():
            p.requires_grad_(False)
        loss = [_fake_value(i) for i in range(cfg.steps)]
        return [{"loss": loss, "final_train_loss": float(np.mean(loss[-max(1, cfg.steps // 10):])),
                 "steps": cfg.steps, unit + "s": units_per_step[k] * cfg.steps, unit + "s_per_s": float("nan"),
                 "wall_s": 0.0, "flops": flops_per_step[k] * cfg.steps, "mfu": None, "device": describe(),
                 "members": K, f"all_members_{unit}s_per_s": float("nan")} for k in range(K)]

    # ---------------------------------------------------------------------------- forward passes
    def charge_forward(model_name, ts, rows, T, K, detail, probe, calls=1):
        """Forward work over `rows` rows per member (K members), of T tokens each (None: vectors); `ts` are
        one call's tensors, for the shape."""
        t = rec.cur
        if T:
            units, unit = rows * K * T, "token"
            t.fwd_tokens += units
        else:
            units, unit = rows * K, "example"
            t.fwd_examples += units
        rec.charge(Shape("forward", model_name, _dims(ts), unit, K, _threads(), detail), calls, units, probe)

    def log_probs(n, C):
        return np.log(rng.dirichlet(np.ones(C), size=n)).astype(np.float64)

    def predict_log_proba(model, input_ids, attention_mask=None, batch_size=256):
        n = len(input_ids)
        if n == 0:
            return np.zeros((0, 0))
        b = min(n, batch_size)
        x = (input_ids[:b],) + (() if attention_mask is None else (attention_mask[:b],))
        ids = _ids(model, list(x))
        T = ids.shape[1] if ids is not None else None

        def probe():
            r = _probe_rows(b, T)
            return timed(lambda: real["predict"](model, *(t[:r] for t in x), batch_size=batch_size)), r * (T or 1)
        charge_forward(_arch(model), list(x), n, T, 1, _params_hash(model), probe, math.ceil(n / batch_size))
        C = _n_out(model, lambda: real["predict"](model, input_ids[:1],
                                                  None if attention_mask is None else attention_mask[:1]))
        return log_probs(n, C)

    def many_predict(self, inputs_for_member, batch_size=256):
        per = [tuple(torch.as_tensor(t) for t in inputs_for_member(k)) for k in range(len(self))]
        ns = [len(p[0]) for p in per]
        n = max(ns)
        if n == 0:
            return [np.zeros((0, 0)) for _ in ns]
        b = min(n, batch_size)
        head = [tuple(t[:b] for t in p) for p in per]
        ids = _ids(self.template, list(head[0]))
        T = ids.shape[1] if ids is not None else None

        def probe():
            r = _probe_rows(b, T, len(self))
            return timed(lambda: real["many_predict"](self, lambda k: tuple(t[:r] for t in head[k]), batch_size)), \
                len(self) * r * (T or 1)
        charge_forward(_arch(self.template), list(head[0]), n, T, len(self), _params_hash(self.template), probe,
                       math.ceil(n / batch_size))
        C = _n_out(self.template, lambda: real["many_predict"](self, lambda k: tuple(t[:1] for t in per[k]))[0])
        return [log_probs(nk, C) for nk in ns]

    def many_forward(self, *inputs, shared=False):
        n = inputs[0].shape[0 if shared else 1]
        b = min(n, 256)
        head = tuple(t[:b] if shared else t[:, :b] for t in inputs)
        one = real["many_forward"](self, *(t[:1] if shared else t[:, :1] for t in inputs), shared=shared)
        ids = _ids(self.template, list(head), lead=0 if shared else 1)
        T = ids.shape[-1] if ids is not None else None

        def probe():
            r = _probe_rows(b, T, len(self))
            part = tuple(t[:r] if shared else t[:, :r] for t in head)
            return timed(lambda: real["many_forward"](self, *part, shared=shared)), len(self) * r * (T or 1)
        charge_forward(_arch(self.template), list(head), n, T, len(self),
                       ("shared " if shared else "") + _params_hash(self.template), probe)
        return torch.randn(one.shape[0], n, *one.shape[2:], dtype=one.dtype)

    def eval_lm(model, tokens, block_size=None, n_windows=64, batch_size=32):
        block_size = block_size or model.config.n_positions
        W = min(n_windows, len(tokens) - block_size)
        b = min(W, batch_size)

        def probe():
            r = _probe_rows(b, block_size)
            return timed(lambda: real["eval_lm"](model, tokens, block_size, r, batch_size)), r * block_size
        charge_forward(_arch(model), [torch.zeros(b, block_size, dtype=torch.long)], W, block_size, 1,
                       _params_hash(model), probe, math.ceil(W / batch_size))
        # falls with model size like a power law, so the scaling fits downstream behave as on real losses
        N = sum(p.numel() for p in model.parameters())
        return (1.0 + 30.0 * N ** -0.3) * (1.0 + 0.02 * (_fake_value(int(tokens[:8].sum())) - 4.0))

    lengths: dict = {}

    def embed(model, tokenizer, texts, max_length, batch_size=32, normalize=True, threads=None):
        texts = list(texts)
        hidden = int(getattr(model.config, "hidden_size", 0) or getattr(model.config, "n_embd", 0))
        if not texts:
            return np.zeros((0, hidden), np.float32)
        k = (id(tokenizer), max_length, encoders.texts_sha(texts))
        if k not in lengths or lengths[k][0] is not tokenizer:  # the same texts, tokenizer: a twin's pass
            enc = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
            lengths[k] = (tokenizer, np.array([len(x) for x in enc]))
        lens = lengths[k][1]
        order = np.argsort(lens, kind="stable")
        batches = [order[i:i + batch_size] for i in range(0, len(texts), batch_size)]
        pads = np.array([lens[o].max() for o in batches])
        sizes = np.array([len(o) for o in batches])
        tokens = int((pads * sizes).sum())  # each batch pads to its longest text, in embed's length order
        T = (pads * pads * sizes).sum() / tokens  # the padded length of the average token's batch
        T = int(min(max_length, 2 ** math.ceil(math.log2(T))))  # up to a power of 2: fewer shapes to measure
        b = min(len(texts), batch_size)

        def probe():
            near = order[np.argsort(np.abs(lens[order] - T), kind="stable")[:_probe_rows(b, T)]]  # real texts near T
            sample = [texts[i] for i in near]
            return timed(lambda: real["embed"](model, tokenizer, sample, max_length, batch_size=batch_size,
                                               normalize=normalize, threads=threads)), len(near) * int(lens[near].max())
        nt = threads if threads is not None else _threads()
        rec.cur.fwd_tokens += tokens
        rec.charge(Shape("forward", _arch(model), f"{b}x{T}", "token", 1, nt, _params_hash(model)), len(batches),
                   tokens, probe)
        e = rng.normal(size=(len(texts), hidden)).astype(np.float32)
        return e / np.linalg.norm(e, axis=1, keepdims=True) if normalize else e

    def gpt_features(model, ids, mask, batch_size=256):
        n = len(ids)
        b = min(n, batch_size)

        def probe():
            r = _probe_rows(b, ids.shape[1])
            return timed(lambda: real["gpt_features"](model, ids[:r], mask[:r], batch_size)), r * ids.shape[1]
        charge_forward(_arch(model) + " body", [ids[:b], mask[:b]], n, ids.shape[1], 1, _params_hash(model), probe,
                       math.ceil(n / batch_size))
        return rng.normal(size=(n, model.config.n_embd))

    def gating_metrics(model, task, K):
        P = len(task["probe"])

        def probe():
            return timed(lambda: real["gating"](model, task, K)), P
        charge_forward(_arch(model), [task["probe"]], P, None, 1, _params_hash(model), probe)
        return real["gating"](model, task, K)  # a few milliseconds: the real values

    def dmmse(xs, ys, pool, noise_var):
        b = min(len(xs), 256)

        def probe():
            return timed(lambda: real["dmmse"](xs[:b], ys[:b], pool, noise_var)), b
        charge_forward(f"dMMSE M={pool.shape[0]}", [xs[:b]], len(xs), None, 1, "", probe)
        return torch.randn(xs.shape[:2])

    # ---------------------------------------------------------------------------- models built once
    def shared(build, key_of=None):
        """A model built or loaded once per architecture (or file), the one instance handed to every caller:
        under the recorders nothing trains, only values change (a body copied into a fresh head), and those
        are made up anyway; a probe trains a copy. `key_of(*a, **kw)`: what decides the architecture (by
        default every argument)."""
        memo = {}

        def once(*a, **kw):
            if torch.empty(0).device.type == "meta":  # a shape-only build (zoo._shape_only): never a model to run
                return build(*a, **kw)
            k = key_of(*a, **kw) if key_of else files.canonical(
                [[x.to_json_string() if hasattr(x, "to_json_string") else str(x) for x in a],
                 {n: v.to_json_string() if hasattr(v, "to_json_string") else str(v) for n, v in kw.items()}])
            if k not in memo:
                memo[k] = build(*a, **kw)
            return memo[k]
        return once

    import transformers
    auto = [(cls, m) for cls in (transformers.AutoModel, transformers.AutoModelForSequenceClassification,
                                 transformers.GPT2LMHeadModel, transformers.GPT2ForSequenceClassification)
            for m in ("from_pretrained", "from_config") if hasattr(cls, m)]
    real_pretrain = pretrain.pretrain

    seen_shapes: dict = {}

    def timed_host(name, fn):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            if name in BY_SHAPE:
                sig = (name, tuple(getattr(x, "shape", None) for x in a), tuple(sorted(kw)))
                if sig in seen_shapes:
                    seconds, value = seen_shapes[sig]
                    h = rec.cur.host.setdefault(name, [0, 0.0])
                    h[0] += 1
                    h[1] += seconds
                    return value
                t0 = time.perf_counter()
                value = wrapper_timed(*a, **kw)
                seen_shapes[sig] = (time.perf_counter() - t0, value)
                return value
            return wrapper_timed(*a, **kw)

        def wrapper_timed(*a, **kw):
            rec.host_depth += 1
            t0, p0 = time.perf_counter(), rec.probe_s
            try:
                return fn(*a, **kw)
            finally:
                rec.host_depth -= 1
                if rec.host_depth == 0:  # the outermost timed call holds the nested ones
                    h = rec.cur.host.setdefault(name, [0, 0.0])
                    h[0] += 1
                    h[1] += time.perf_counter() - t0 - (rec.probe_s - p0)
        return wrapper

    def once(fn):
        memo = {}

        @functools.wraps(fn)
        def wrapper(*a):
            if a not in memo:
                memo[a] = fn(*a)
            return memo[a]
        return wrapper
    host = [(importlib.import_module(mod), name) for mod, names in HOST.items() for name in names]

    class Standin:
        """A fitted logistic regression's stand-in: its classes, and made-up probabilities."""
        def __init__(self, y):
            self.classes_ = np.unique(np.asarray(y))

        def predict_proba(self, x):
            return rng.dirichlet(np.ones(len(self.classes_)), size=len(x))

    def untimed(what, rows):
        u = rec.cur.untimed.setdefault(what, [0, 0.0])
        u[0] += 1
        u[1] += rows

    def standin_fit(what):
        def fit(x, y, C):
            untimed(what, len(y))
            return Standin(y)
        return fit

    def standin_baseline(what):
        def baseline(name):
            from decoupling.data import read
            a = read.arrays(name)
            (_, ytr), (_, yte) = a["train"], a["test"]
            untimed(what, len(ytr))
            majority = float(np.mean(yte == np.bincount(ytr).argmax()))
            return {"task": name, "majority": round(majority, 4), "linear": round(majority + 0.5 * (1 - majority), 4),
                    "n_train": len(ytr), "n_test": len(yte)}
        return baseline
    standins = [(importlib.import_module(mod), name, (standin_baseline if name == "baseline" else standin_fit)(what))
                for mod, name, what in STANDINS]

    patches = [
        (train, "_loop", fake_loop), (batched, "_loop_many", fake_loop_many),
        (train, "predict_log_proba", predict_log_proba), (batched.Many, "predict_log_proba", many_predict),
        (batched.Many, "forward", many_forward), (train, "eval_lm", eval_lm), (encoders, "embed", embed),
        (generality, "_gpt_features", gpt_features), (memory, "_gating_metrics", gating_metrics),
        (memory, "dmmse_predictions", dmmse),
        (models, "build_lm", shared(models.build_lm, lambda cfg, seed=0: cfg)),
        (models, "build_classifier", shared(models.build_classifier, lambda cfg, num_labels, seed=0: (cfg, num_labels))),
        *[(cls, m, shared(getattr(cls, m))) for cls, m in auto],
        *[(mod, name, timed_host(f"{mod.__name__.rsplit('.', 1)[-1]}.{name}", getattr(mod, name))) for mod, name in host],
        *standins,
        *[(m, name, once(getattr(m, name))) for m, name in ((importlib.import_module(mod), n) for mod, n in ONCE)],
        # a body a run reads that is not itself being counted exists already (or is its own run): charged to nobody
        (pretrain, "pretrain", _elsewhere(real_pretrain, rec)),
    ]
    with _patched(patches):
        yield real_pretrain


def _elsewhere(real, rec: _Recorder):
    @functools.wraps(real)
    def pretrain_elsewhere(cfg, out_dir):
        with rec.scope(Tally()):
            return real(cfg, out_dir)
    return pretrain_elsewhere


# ================================================================================== counting runs
def _count_here(jobs: list[tuple], probe: bool, seconds: float, rates_file: str | None,
                threads_per_run: int | None = None) -> tuple[list[dict], list]:
    """Count `jobs` ((run, cache file) pairs) here, each tally written to its cache file as it is counted;
    with `probe`, every shape without a rate is measured. Returns the tallies and the shapes measured.
    `threads_per_run`: the share of the cores each run of `decoupling compute --jobs N` takes (the encoder
    passes that take every core alone take this many), None: one run at a time."""
    import torch

    from decoupling.core import encoders
    if threads_per_run:  # a child process: its environment is its own
        os.environ[encoders.WORKER_THREADS] = str(threads_per_run)

    from decoupling import paths as P
    from decoupling.pipeline import store
    from decoupling.progress import report
    tmp = Path(tempfile.mkdtemp(prefix="decoupling-count-"))
    before_store, before_env = P.STORE_DIR, os.environ.get(store.ALLOW_CPU_FULL)
    P.STORE_DIR = tmp  # bodies and records of the made-up runs land here, never in the real store
    os.environ[store.ALLOW_CPU_FULL] = "1"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as every experiment runs (device.cpu_threads)
    rates_file = Path(rates_file) if rates_file else None
    rec = _Recorder(load_rates(rates_file) if rates_file else {}, probe, seconds, rates_file)
    out = []
    from decoupling.core.models import quiet_loading
    try:
        with recorders(rec) as real_pretrain, quiet_loading():
            from decoupling.experiments import pretrain
            for k, (r, path) in enumerate(jobs, 1):
                t = Tally()
                with rec.scope(t):
                    if r.artifact:  # its own run: charged to it, and kept in the temporary store for its readers
                        d = store.artifact_path(r.fn, r.cfg, r.profile)
                        if not (d / "DONE").exists():
                            with _patched([(pretrain, "pretrain", real_pretrain)]):
                                store.artifact(pretrain.pretrain, r.cfg, profile=r.profile)
                    else:
                        r.fn(r.cfg)
                if path:
                    files.atomic_write(path, files.pretty(dataclasses.asdict(t)))
                out.append(dataclasses.asdict(t))
                report(f"[count] {k}/{len(jobs)} {r.label}: {t.steps:,} steps ({t.count_s:.0f} s to count"
                       f"{f', {len(rec.new)} shapes measured so far' if probe else ''})")
    finally:
        P.STORE_DIR = before_store
        if before_env is None:
            os.environ.pop(store.ALLOW_CPU_FULL, None)
        else:
            os.environ[store.ALLOW_CPU_FULL] = before_env
        torch.set_num_threads(threads)
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return out, sorted(rec.new)


@dataclass
class Counted:
    tallies: list           # one Tally per run asked for, in order
    rates: dict             # Shape.key -> {"rate": units per second, ...} on this machine
    counted: int            # runs counted now (the rest came from the cache)
    measured: list          # shapes whose rate was measured now
    context: dict           # what the rates depend on (device, dtype, torch, CPU)


def count(runs: list, probe: bool = True, child: bool = True, seconds: float = 0.3, remeasure: bool = False,
          threads: int | None = None) -> Counted:
    """The tally of each of `runs` (plan.Run), from the cache or counted (in a child process unless
    child=False); with `probe`, shapes with no rate here are measured (and a cached tally with such a shape
    is counted again to measure them); `remeasure` forgets this machine's rates first (its load changed);
    `threads`: each run's share of the cores under `decoupling compute --jobs N` (None: one at a time)."""
    ctx = context()
    rfile = rates_path(ctx)
    if remeasure and probe:
        rfile.unlink(missing_ok=True)
    rates = load_rates(rfile)
    paths_ = [count_path(r, threads) for r in runs]
    tallies = [_load_count(p) for p in paths_]
    todo = [i for i, t in enumerate(tallies)
            if t is None or (probe and any(k not in rates for k, (_, u) in t.work.items() if u))]
    measured: list = []
    if todo:
        jobs = [(runs[i], str(paths_[i])) for i in todo]
        args = (jobs, probe, seconds, str(rfile) if probe else None, threads)
        if child:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                rows, measured = pool.submit(_count_here, *args).result()
        else:
            rows, measured = _count_here(*args)
        for i, row in zip(todo, rows):
            tallies[i] = Tally(**row)
        rates = load_rates(rfile)
    return Counted(tallies, rates, len(todo), measured, ctx)
