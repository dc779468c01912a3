"""What each chapter costs at `full`, counted in optimizer steps, without training anything.

On a GPU the book's models are tiny and launch-bound: an eager optimizer step costs ~5-10 ms whatever the
batch, so the number of optimizer steps (plus forward-only evaluation batches) decides the wall time, not
the FLOPs. This script runs every experiment a chapter calls, with the chapter's `full` config (seed 0), in
the chapters' order (_toc.yml), with the library's loops replaced by recorders:

  train._loop            (train_lm / train_classifier / train_module / computers' curves): sequential —
                         records cfg.steps, calls the evaluation hook where the real loop would, trains nothing
  batched._loop_many     (train_many / train_many_lm / memory's ICL): K members in one vmapped step —
                         records cfg.steps once (one launch sequence per step), and K
  train.eval_lm, train.predict_proba, batched.Many.predict_proba, models.embed_minilm,
  generality._gpt_features
                         forward-only passes: record the number of batches they would run, compute one
                         example for the output shape, return made-up values (results are garbage;
                         only the counts are kept)

MiniLM loads and random BERTs are memoised (copies) so the 400-odd fine-tune inits cost seconds here.
Pretrained bodies go to a temporary store and are charged to the chapter that first asks for them
(computers pretrains "code"; generality the other sources), as in a cold `full` rebuild.

  memory.vmap, memory.dmmse_predictions
                         memory's ICL evaluation: one batch per vmapped forward, one per dMMSE chunk

Not counted: direct model calls outside those functions (memory's gating metrics), CPU-side numpy work (bootstraps, LogME, power-law fits, TF-IDF baselines,
double descent's SVDs: no GPU work at all) — the "host s" column is this script's own wall time per
experiment on this machine, an upper bound on that host-side work (it includes model construction).

    PYTHONPATH=lib python benchmarks/full_cost.py --bodies             # what each pretrained body reads
    PYTHONPATH=lib python benchmarks/full_cost.py                      # all chapters (a few minutes)
    PYTHONPATH=lib python benchmarks/full_cost.py --chapters memory tyranny --json cost.json
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import json
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET_MIN = {"computers": None, "memory": 4.0, "tyranny": 8.0, "generality": 6.0}  # one H100
BOOK_BUDGET_MIN = 20.0
CHAPTERS = ("computers", "memory", "tyranny", "generality")  # _toc.yml order


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chapters", nargs="+", choices=CHAPTERS, default=list(CHAPTERS),
                   help="chapters to count (default: all, in book order)")
    p.add_argument("--ms", type=float, nargs="+", default=[5.0, 10.0],
                   help="milliseconds per optimizer step / eval batch for the minutes columns (default 5 10)")
    p.add_argument("--host-only", action="store_true",
                   help="also run experiments that train nothing (tyranny's double descent: numpy SVDs)")
    p.add_argument("--json", metavar="PATH", help="write the rows as JSON too")
    p.add_argument("--bodies", action="store_true",
                   help="only print what each pretrained body reads at smoke and full: steps, tokens seen, unique "
                        "tokens, epochs (full: <= 4; fetches the full corpora the first time)")
    return p.parse_args(argv)


def bodies_table() -> int:
    """Per body and profile: optimizer steps, token positions seen, unique training tokens, epochs. Exit 1
    when a full body would read its corpus more than pretrain.MAX_EPOCHS_FULL times."""
    from decoupling.experiments import pretrain as P
    print(f"{'profile':<7} {'body':<9} {'corpus':<6} {'steps':>6} {'tokens seen':>12} {'unique tokens':>14} "
          f"{'epochs':>7} {'held out':>9}")
    worst = 0.0
    for profile in ("smoke", "full"):
        for domain in P.COMPARED + ("shuffled",):
            p = P.plan(P.config(profile, domain))
            print(f"{profile:<7} {domain:<9} {p['corpus']:<6} {p['steps']:>6} {p['tokens_seen']:>12,} "
                  f"{p['unique_tokens']:>14,} {p['epochs']:>7.2f} {p['eval_tokens']:>9,}")
            if profile == "full":
                worst = max(worst, p["epochs"])
    ok = worst <= P.MAX_EPOCHS_FULL
    print(f"full: at most {worst:.2f} epochs per body ({'<=' if ok else '>'} {P.MAX_EPOCHS_FULL:g}); every body of a "
          "profile reads the same number of unique tokens (the smallest compared corpus, less the held-out tokens)")
    return 0 if ok else 1


# ====================================================================================== the recorder
@dataclasses.dataclass
class Tally:
    seq_steps: int = 0  # optimizer steps of sequential loops
    seq_loops: int = 0
    batched_steps: int = 0  # optimizer steps of vmapped loops (one per step, whatever K)
    batched_loops: int = 0
    member_steps: int = 0  # Σ K·steps of the vmapped loops (what sequential training would take)
    max_K: int = 0
    eval_batches: int = 0  # forward-only batches
    flops: float = 0.0  # training FLOPs as the library counts them
    host_s: float = 0.0

    @property
    def steps(self) -> int:
        return self.seq_steps + self.batched_steps

    def add(self, o: "Tally") -> None:
        for f in dataclasses.fields(self):
            if f.name == "max_K":
                self.max_K = max(self.max_K, o.max_K)
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(o, f.name))


class Recorder:
    def __init__(self):
        self.stack: list[Tally] = []

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


REC = Recorder()


def _fake_value(i: int) -> float:
    """Deterministic made-up loss values in [2, 6] (non-constant, so fits and bootstraps stay defined)."""
    return 2.0 + 4.0 * ((i * 0.6180339887) % 1.0)


def install(tmp_store: Path) -> dict:
    """Replace the loops and forward-only passes by recorders. Returns the pretrain bodies' tallies."""
    import numpy as np
    import torch

    from decoupling import paths
    from decoupling.core import batched, models, prequential, train
    from decoupling.core.device import describe
    from decoupling.experiments import generality, pretrain

    paths.STORE_DIR = tmp_store
    os.environ["DECOUPLING_STORE"] = str(tmp_store)
    rng = np.random.default_rng(0)

    def fake_loop(model, cfg, batch_at, loss_of, units_per_step, unit, flops_per_step, desc, evaluate=None):
        t = REC.cur
        t.seq_steps += cfg.steps
        t.seq_loops += 1
        t.flops += flops_per_step * cfg.steps
        evals = []
        if evaluate is not None:
            if cfg.eval_every:
                for s in range(cfg.eval_every, cfg.steps, cfg.eval_every):
                    evals.append((s, evaluate(model)))
            evals.append((cfg.steps, evaluate(model)))
        model.eval()
        loss = [_fake_value(i) for i in range(cfg.steps)]
        out = {"loss": loss, "final_train_loss": float(np.mean(loss[-max(1, cfg.steps // 10):])) if loss else
               float("nan"), "steps": cfg.steps, unit + "s": units_per_step * cfg.steps,
               unit + "s_per_s": float("nan"), "wall_s": 0.0, "flops": flops_per_step * cfg.steps,
               "flops_per_step": flops_per_step, "mfu": None, "device": describe()}
        if evaluate is not None:  # the keys train._loop returns (train_lm adds the bits/token itself)
            out["eval"] = [[s, v] for s, v in evals]
            out["eval_train_s"] = [0.0 for _ in evals]
            out["eval_s"] = 0.0
        return out

    def fake_loop_many(template, params, buffers, cfg, batch_at, member_loss, units_per_step, unit,
                       flops_per_step, desc):
        K = len(units_per_step)
        t = REC.cur
        t.batched_steps += cfg.steps
        t.batched_loops += 1
        t.member_steps += K * cfg.steps
        t.max_K = max(t.max_K, K)
        t.flops += sum(flops_per_step) * cfg.steps
        for p in params.values():
            p.requires_grad_(False)
        loss = [_fake_value(i) for i in range(cfg.steps)]
        return [{"loss": loss, "final_train_loss": float(np.mean(loss[-max(1, cfg.steps // 10):])),
                 "steps": cfg.steps, unit + "s": units_per_step[k] * cfg.steps, unit + "s_per_s": float("nan"),
                 "wall_s": 0.0, "flops": flops_per_step[k] * cfg.steps, "mfu": None, "device": describe(),
                 "members": K, f"all_members_{unit}s_per_s": float("nan")} for k in range(K)]

    def fake_probs(q1: np.ndarray, n: int) -> np.ndarray:
        C = q1.shape[1]
        p = rng.dirichlet(np.ones(C), size=n)
        return p.astype(np.float64)

    real_predict = train.predict_proba

    def predict_proba(model, input_ids, attention_mask=None, batch_size=256):
        n = len(input_ids)
        REC.cur.eval_batches += math.ceil(n / batch_size)
        if n == 0:
            return np.zeros((0, 0))
        q1 = real_predict(model, input_ids[:1], None if attention_mask is None else attention_mask[:1])
        return fake_probs(q1, n)

    real_many_predict = batched.Many.predict_proba

    def many_predict(self, inputs_for_member, batch_size=256):
        per = [inputs_for_member(k) for k in range(len(self))]
        n = max(len(p[0]) for p in per)
        REC.cur.eval_batches += math.ceil(n / batch_size)
        q1 = real_many_predict(self, lambda k: tuple(t[:1] for t in per[k]), batch_size)
        return [fake_probs(q1[k], len(per[k][0])) for k in range(len(self))]

    def eval_lm(model, tokens, block_size=None, n_windows=64, batch_size=32):
        block_size = block_size or model.config.n_positions
        last = len(tokens) - block_size - 1
        W = min(n_windows, last + 1)
        REC.cur.eval_batches += math.ceil(W / batch_size)
        # a made-up loss that falls with model size like a power law, with window noise: the scaling fits
        # downstream then take about as long as on real losses (pure noise makes curve_fit crawl)
        N = sum(p.numel() for p in model.parameters())
        return (1.0 + 30.0 * N ** -0.3) * (1.0 + 0.02 * (_fake_value(int(tokens[:8].sum())) - 4.0))

    def embed_minilm(texts, batch_size=64, max_length=128, normalize=True, model=None, tokenizer=None):
        REC.cur.eval_batches += math.ceil(len(texts) / batch_size)
        e = rng.normal(size=(len(texts), 384)).astype(np.float32)
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    def gpt_features(model, ids, mask, batch_size=256):
        REC.cur.eval_batches += math.ceil(len(ids) / batch_size)
        return rng.normal(size=(len(ids), model.config.n_embd))

    # memoised MiniLM / random-BERT builds (copies): hundreds of fine-tune inits
    real_load_minilm, real_random_bert = models.load_minilm, generality._random_bert

    @functools.lru_cache(maxsize=None)
    def _minilm_template(num_labels):
        return real_load_minilm(num_labels, seed=0)

    @functools.lru_cache(maxsize=None)
    def _bert_template(num_labels):
        return real_random_bert(num_labels, 0)

    # memory's ICL evaluation: two vmapped forwards over every member, and dMMSE in (b, n, M) chunks
    from decoupling.experiments import memory

    def icl_vmap(fn, in_dims=0, **kw):
        def fake(params, buffers, xs, ys):
            REC.cur.eval_batches += 1
            E_ = next(iter(params.values())).shape[0]
            return torch.randn(E_, *xs.shape[-3:-1]) if xs.dim() == 3 else torch.randn(*xs.shape[:-1])
        return fake

    def dmmse(xs, ys, pool, noise_var):
        chunk = max(1, (1 << 22) // (xs.shape[1] * pool.shape[0]))
        REC.cur.eval_batches += math.ceil(len(xs) / chunk)
        return torch.randn(xs.shape[:2])

    memory.vmap = icl_vmap
    memory.dmmse_predictions = dmmse
    train._loop = fake_loop
    batched._loop_many = fake_loop_many
    train.predict_proba = predict_proba
    batched.Many.predict_proba = many_predict
    train.eval_lm = eval_lm
    models.embed_minilm = embed_minilm
    models.load_minilm = lambda num_labels=None, seed=0: copy.deepcopy(_minilm_template(num_labels))
    generality._random_bert = lambda num_labels, seed: copy.deepcopy(_bert_template(num_labels))
    generality._gpt_features = gpt_features
    prequential.batch_fits = lambda: True  # count what the GPU runs (this CPU would fit one by one)

    # a pretrained body is charged to its own row, under the chapter that first asks for it
    bodies: dict[str, Tally] = {}
    real_pretrain = pretrain.pretrain

    @functools.wraps(real_pretrain)
    def pretrain_counted(cfg, out_dir):
        t = bodies.setdefault(f"pretrain body '{cfg.domain}' {cfg.steps} st seed {cfg.seed}", Tally())  # one row per checkpoint
        t.chapter = REC.stack[0].chapter if REC.stack and hasattr(REC.stack[0], "chapter") else "?"
        with REC.scope(t):
            return real_pretrain(cfg, out_dir)
    pretrain.pretrain = pretrain_counted
    torch.set_num_threads(1)
    return bodies


# ====================================================================================== what the chapters run
def chapter_calls(name: str, host_only: bool) -> list[tuple[str, object, object]]:
    """(label, experiment function, full config) in the order the chapter's `ch.run` calls them (seed 0)."""
    from decoupling.profiles import preset
    if name == "computers":
        from decoupling.experiments import computers as E
        return [("economics", E.economics, preset(E.ECONOMICS, "full")),
                ("minilm_platform (finetune)", E.minilm_platform, preset(E.PLATFORM, "full"))]
    if name == "memory":
        from decoupling.experiments import memory as E
        return [("context_gating", E.context_gating, preset(E.GATING, "full")),
                ("task_token", E.task_token, preset(E.TASK_TOKEN, "full")),
                ("icl_diversity", E.icl_diversity, preset(E.ICL, "full"))]
    if name == "tyranny":
        from decoupling.experiments import tyranny as E, tyranny_data as TD
        out = [("scaling", E.scaling, preset(E.SCALING, "full")),
               ("pretraining_data", TD.pretraining_data, preset(TD.DATA, "full")),
               ("memorization", E.memorization, preset(E.MEMORIZATION, "full")),
               ("compression", E.compression, preset(E.COMPRESSION, "full", order_seed=0, label_seed=0, seed=0))]
        if host_only:
            out.append(("double_descent (numpy only)", E.double_descent, preset(E.DOUBLE_DESCENT, "full", subset_seed=0)))
        return out
    if name == "generality":
        from decoupling.experiments import generality as E
        out = [(f"transfer {t}", E.transfer, preset(E.TRANSFER, "full", target=t)) for t in E.TARGETS["full"]]
        return out + [("minilm_transfer (finetune)", E.minilm_transfer, preset(E.MINILM, "full")),
                      ("digits_transfer", E.digits_transfer, preset(E.DIGITS, "full"))]
    raise ValueError(name)


# ====================================================================================== the table
def minutes(t: Tally, ms: float) -> float:
    return (t.steps + t.eval_batches) * ms / 1000 / 60


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO / "lib"))
    os.environ.setdefault("DECOUPLING_PROGRESS", "0")
    if args.bodies:
        return bodies_table()
    import warnings
    warnings.filterwarnings("ignore")
    tmp = Path(tempfile.mkdtemp(prefix="full_cost-"))
    bodies = install(tmp / "store")
    rows, failed = [], []
    t_start = time.perf_counter()
    for chapter in args.chapters:
        for label, fn, cfg in chapter_calls(chapter, args.host_only):
            tally = Tally()
            tally.chapter = chapter
            seen = set(bodies)
            print(f"[{time.perf_counter() - t_start:6.0f}s] {chapter}: {label} ...", file=sys.stderr, flush=True)
            with REC.scope(tally):
                try:
                    fn(cfg)
                except Exception as e:  # noqa: BLE001 - report and go on: the counts so far are kept
                    failed.append((chapter, label, f"{type(e).__name__}: {e}"))
                    traceback.print_exc()
            for b in [b for b in bodies if b not in seen]:  # bodies pretrained inside this call
                rows.append({"chapter": chapter, "experiment": b, "tally": bodies[b], "kind": "sequential"})
                tally.host_s -= bodies[b].host_s
            kind = ("batched" if tally.batched_loops and not tally.seq_loops else
                    "sequential" if tally.seq_loops and not tally.batched_loops else
                    "mixed" if tally.steps else "no training")
            rows.append({"chapter": chapter, "experiment": label, "tally": tally, "kind": kind})

    ms = args.ms
    head = (f"{'chapter':<11} {'experiment':<34} {'loop':<10} {'K max':>5} {'opt steps':>10} {'(member-st)':>11} "
            f"{'eval bat':>8} {'TFLOP':>7} {'host s':>7} " + " ".join(f"{'min@' + f'{m:g}ms':>9}" for m in ms))
    print(head)
    print("-" * len(head))
    per_ch: dict[str, Tally] = {}
    for r in rows:
        t = r["tally"]
        per_ch.setdefault(r["chapter"], Tally()).add(t)
        print(f"{r['chapter']:<11} {r['experiment'][:34]:<34} {r['kind']:<10} {t.max_K or '':>5} {t.steps:>10,} "
              f"{(t.member_steps or ''):>11} {t.eval_batches:>8,} {t.flops / 1e12:>7.1f} {t.host_s:>7.1f} "
              + " ".join(f"{minutes(t, m):>9.1f}" for m in ms))
    print("-" * len(head))
    total = Tally()
    for ch, t in per_ch.items():
        total.add(t)
        b = BUDGET_MIN.get(ch)
        verdict = "" if b is None else ("  OVER budget" if minutes(t, ms[0]) > b else
                                        "  over at the slower rate" if minutes(t, ms[-1]) > b else "  within")
        print(f"{ch:<11} {'TOTAL':<34} {'':<10} {'':>5} {t.steps:>10,} {'':>11} {t.eval_batches:>8,} "
              f"{t.flops / 1e12:>7.1f} {t.host_s:>7.1f} " + " ".join(f"{minutes(t, m):>9.1f}" for m in ms)
              + f"   budget {'none stated' if b is None else f'{b:g} min'}{verdict}")
    print(f"{'book':<11} {'TOTAL':<34} {'':<10} {'':>5} {total.steps:>10,} {'':>11} {total.eval_batches:>8,} "
          f"{total.flops / 1e12:>7.1f} {total.host_s:>7.1f} " + " ".join(f"{minutes(total, m):>9.1f}" for m in ms)
          + f"   budget {BOOK_BUDGET_MIN:g} min")
    print("\nminutes = (optimizer steps + eval batches) × ms; a vmapped step of K members counts once. "
          "'(member-st)' = Σ K·steps of the batched loops (what sequential training would take). "
          "TFLOP: training FLOPs as the library counts them (at ~300 TFLOP/s achieved, 1 TFLOP ≈ 3 ms). "
          "host s: this script's wall time on this CPU (model building, numpy work, fake passes).")
    if failed:
        print("\nNOT COUNTED (the experiment raised; counts above stop where it failed):")
        for ch, label, err in failed:
            print(f"  {ch}: {label}: {err}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{"chapter": r["chapter"], "experiment": r["experiment"], "kind": r["kind"],
              **dataclasses.asdict(r["tally"]), "steps": r["tally"].steps} for r in rows]
            + [{"failed": f} for f in failed], indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
