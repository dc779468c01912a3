"""Every `full` preset's code path, run on the CPU at toy sizes.

The `full` presets are sized for one GPU and are (almost) never executed before the scarce GPU time is spent
on them, yet they take branches `smoke` never does: pretrained bodies from the `full` pretrain preset,
whole-model MiniLM fine-tuning, LP/probe/slow-body hyperparameter kinds on long protocols, the scaling
ladder's 256-byte context and 500k held-out bytes, ... Here each experiment a chapter calls with a `full`
preset is called directly with that preset, only its *sizes* shrunk with `dataclasses.replace` (steps,
seeds, widths, targets, diversities, eval sizes, model width/depth, max_steps); every mode, flag and
branch selector stays as in `full`. Pretrained bodies go to a temporary store (`paths.STORE_DIR`
monkeypatched) from a shrunk copy of `pretrain.FULL`, so nothing lands in the repository's .cache.

A crash here is a crash the GPU run would have hit after minutes of training.
"""
import dataclasses
import math

import numpy as np
import pytest

from decoupling import data, files, paths
from decoupling.core import prequential
from decoupling.pipeline import store
from decoupling.experiments import computers as C
from decoupling.experiments import generality as G
from decoupling.experiments import generality_summary as GS
from decoupling.experiments import memory as M
from decoupling.experiments import pretrain as P
from decoupling.experiments import tyranny as T

pytestmark = pytest.mark.slow

R = dataclasses.replace


def jsonable(res: dict) -> dict:
    """What store.run does with a result before writing it (a chapter's ch.run fails here otherwise)."""
    import json
    return json.loads(files.canonical(res))


def finite(*xs) -> bool:
    return all(x is not None and math.isfinite(float(x)) for x in np.ravel(np.asarray(xs, dtype=object)))


@pytest.fixture
def full_env(tmp_path, monkeypatch, one_thread):
    """A temporary results store and a tiny stand-in for pretrain.FULL (same block size, corpus and
    max_tokens=None: only the model and the number of steps shrink)."""
    monkeypatch.setattr(paths, "STORE_DIR", tmp_path / "store")
    monkeypatch.setenv("DECOUPLING_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("DECOUPLING_PROGRESS", "0")
    monkeypatch.setenv(store.ALLOW_CPU_FULL, "1")  # full on this CPU on purpose: toy sizes
    tiny = R(P.FULL, model=R(P.FULL.model, n_layer=1, n_head=2, d_model=16), steps=2, batch_size=2, corpus="smoke",
             eval_tokens=4096, eval_every=0)
    monkeypatch.setitem(P.PRETRAIN, "full", tiny)
    return tiny


def _short(proto: G.Protocol, **kw) -> G.Protocol:
    """The protocol with one optimizer step per fit (ends and hyperparameter kinds as given)."""
    return R(proto, min_steps=1, max_steps=1, **kw)


# ====================================================================================== memory
def test_memory_full_paths(full_env):
    g = R(M.GATING["full"], n_objects=6, n_fixed=2, contexts=(3, 16), dim=16, steps=3, seeds=(0, 1))
    gres = jsonable(M.context_gating(g))
    assert len(gres["runs"]) == 4
    for r in gres["runs"]:
        for cond in ("gated", "lesioned", "no_context"):
            assert finite(r[cond]["acc"], r[cond]["task_bits"], r[cond]["precision"], r[cond]["logloss_bits"])
        assert finite(r["logloss_gap_bits"], r["data_task_bits"])

    t = R(M.TASK_TOKEN["full"], length=2, n_layer=1, d_model=16, steps=3, seeds=(0, 1))
    assert t.n_symbols == 10 and len(t.tasks) == 4
    tres = jsonable(M.task_token(t))
    for r in tres["runs"]:
        assert finite(r["acc_right"], r["acc_wrong"], r["acc_none"], r["model_task_bits"], r["logloss_gap_bits"],
                      r["acc_wrong_ceiling"], r["acc_none_ceiling"], *r["per_task_acc_right"])

    i = R(M.ICL["full"], diversities=(4, 16384), steps=3, batch_size=8, n_eval=32, seeds=(0, 1))
    assert (i.dim, i.n_points) == (8, 16)
    ires = jsonable(M.icl_diversity(i))
    assert [(r["M"], r["seed"]) for r in ires["runs"]] == [(4, 0), (4, 1), (16384, 0), (16384, 1)]
    for r in ires["runs"]:
        assert finite(r["model"], r["ridge"], r["dmmse"], r["delta_ridge"], r["delta_dmmse"], r["model_seen"],
                      r["dmmse_seen"], *r["delta_dmmse_by_position"])
    tr = M.diversity_transition(ires)
    assert finite(*tr["r_mean"])


# ====================================================================================== tyranny
def test_tyranny_full_paths(full_env):
    full = T.SCALING["full"]
    assert (full.block_size, full.eval_units, full.tokens_per_param) == (128, 500_000, 20.0)
    # the full preset's code path (context 128, its held-out tail, batched seeds) at toy sizes and budgets
    s = R(full, sizes=((1, 8), (1, 16), (2, 16)), tokens_per_param=0.05, batch_size=2, eval_windows=8,
          seeds=(0, 1, 2), n_boot=50)
    sc = jsonable(T.scaling(s))
    assert len(sc["runs"]) == 3 and np.array(sc["seed_loss_nats"]).shape == (3, 3)  # sizes; seeds × sizes
    assert finite(sc["pure"]["alpha"], sc["floor"]["alpha"], *sc["alpha_delta_ci"])

    m = R(T.MEMORIZATION["full"], widths=(2, 8, 512), control_widths=(8, 512), steps=3)
    mem = jsonable(T.memorization(m))
    assert finite(mem["capacity_bits_per_param"], *mem["capacity_ci"])
    assert all("true" in r for r in mem["rows"] if r["width"] in (8, 512))

    c = R(T.COMPRESSION["full"], widths=(0, 4, 256), steps=3)
    cp = jsonable(T.compression(c))
    assert len(cp["ends"]) == len(c.fracs) and cp["ends"][0] >= 1
    assert all(finite(r["preq_bits_per_label"], r["test_bits"]) for r in cp["rows"])
    assert math.isfinite(cp["spearman_preq_vs_test"])

    d = R(T.DOUBLE_DESCENT["full"], ratios=(0.1, 1.0, 10.0), feature_seeds=(0, 1, 2), n_boot=50)
    assert d.n_train == 500
    dd = jsonable(T.double_descent(d))
    assert 500 in dd["p"] and finite(dd["peak_ratio"], *dd["peak_ratio_ci"], dd["best_test_err"])


# ====================================================================================== generality
def test_full_protocols_fit_the_data():
    """ends[-1] examples of every target's train split are drawn (`_subset` raises beyond): check it at the
    full sizes without training (the MiniLM run below shortens its ends to stay cheap)."""
    from decoupling.data import full
    for t in G.TARGETS["full"]:
        if t in data.FULL_TASKS and full.read_full_manifest() is None:
            continue  # built by the full data step, which this test must not start (a download of minutes)
        assert G.TRANSFER["full"].protocol.ends[-1] <= len(data.arrays(t)["train"][1]), t
    for t in G.MINILM["full"].targets:
        assert G.MINILM["full"].protocol.ends[-1] <= len(data.arrays(t)["train"][1]), t
    assert G.DIGITS["full"].protocol.ends[-1] <= len(data.arrays("digits/5-9")["train"][1])
    for t in C.ECONOMICS["full"].tasks:  # max_train=None: every training example
        assert len(data.arrays(t)["train"][1]) > 0


def test_generality_full_paths(full_env, monkeypatch):
    monkeypatch.setattr(prequential, "batch_fits", lambda: True)  # the GPU's way: every member in one batched run
    full = G.TRANSFER["full"]
    assert full.body_profile == "full"
    # full ends and both hyperparameter kinds; one step per fit, one seed, two task families
    cfg = R(full, n_test=48, seeds=(0,), protocol=_short(full.protocol))
    transfers = [store.run(G.transfer, R(cfg, target=t), profile="full")
                 .value for t in ("sentiment/movies", "prose/topic")]
    # the bodies came from the (shrunk) full pretrain preset, in the temporary store, one per source
    arts = list((paths.STORE_DIR / "artifacts").glob("experiments.pretrain.pretrain/*"))
    assert len(arts) == len(full.sources)
    for t in transfers:
        assert t["n"] == full.protocol.ends[-1] and t["max_len"] == full.max_len
        assert set(t["runs"]) == {G.SCRATCH, G.CONTROL, *full.sources}
        assert all(len(r["test_bits"][0]) == len(full.protocol.ends) - 1 for r in t["runs"].values())
        assert all(finite(*p["dL"]) for p in t["pairs"].values())
        assert all(finite(v) for v in t["logme"].values())
        assert t["runs"][G.SCRATCH]["movement"]  # the last fit of the body-training candidate

    mfull = G.MINILM["full"]
    assert mfull.mode == "finetune"
    mcfg = R(mfull, targets=mfull.targets[:1], max_len=16, n_test=8, seeds=(0,),
             protocol=_short(mfull.protocol, ends=(4, 8, 12), batch_size=4))
    minilm = jsonable(G.minilm_transfer(mcfg))
    assert minilm["mode"] == "finetune"
    r = minilm["targets"][mfull.targets[0]]
    assert set(r["runs"]) == {G.SCRATCH, G.CONTROL, "minilm"}
    assert finite(*r["pairs"]["minilm"]["dL"], *r["logme"].values())
    assert r["runs"]["minilm"]["movement"]

    S = GS.summarize(transfers, minilm, n_boot=50)
    assert "minilm" in S["matrix"] and "minilm" in S["scores"]
    assert all(finite(S["scores"][i]["score"]) for i in S["scores"])

    dfull = G.DIGITS["full"]
    d = R(dfull, pretrain_steps=5, early_steps=2, seeds=(0, 1), protocol=_short(dfull.protocol))
    dig = jsonable(G.digits_transfer(d))
    assert dig["n"] == 640 and len(dig["ends"]) == 7
    for i in ("pretrained", "early", "pretrained-rescaled", "random-labels", G.CONTROL):
        assert finite(*dig["pairs"][i]["dL"]), i
    assert "pretrained+finetuned" in dig["filters"]
    assert finite(*dig["logme"].values())


# ====================================================================================== computers
def test_computers_full_paths(full_env):
    full = C.ECONOMICS["full"]
    assert full.profile == "full" and full.max_train is None
    # the body the chapter would get, with the shrunk full preset (shared with generality through the store)
    cfg = R(full, body=P.config("full", "code"), tasks=("sentiment/tweets", "code/module"), steps=4,
            eval_every=2, eval_examples=32, seeds=(0, 1), lrs=full.lrs[:2], heldout=32)
    res = store.run(C.economics, cfg, profile="full").value
    for task, rec in res["tasks"].items():
        # max_train=None: every training row but the held-out ones that choose the learning rate
        assert rec["n_train"] + rec["n_heldout"] == len(data.arrays(task)["train"][1])
        for init in ("scratch", "pretrained"):
            run = rec["runs"][init][0]
            assert [p["step"] for p in run["curve"]] == [2, 4]
            assert finite(run["flops"], run["final_acc"], run["counted_flops_per_token"])
    assert finite(res["pretrain"]["flops"], res["summary"]["c_pretrain"])
    # seed s fine-tunes the body pretrained with seed s, and scores its own test rows
    assert res["body_seeds"] == [0, 1] and len(set(res["pretrain"]["eval_bits_per_seed"])) == 2
    for rec in res["tasks"].values():
        assert len(rec["reference"]["acc_per_seed"]) == 2 and rec["n_eval"] == 32

    mfull = C.PLATFORM["full"]
    assert mfull.mode == "finetune" and mfull.max_train is None
    mcfg = R(mfull, tasks=("sentiment/tweets",), max_len=16, eval_examples=8, steps=2, batch_size=2, eval_every=1,
             heldout=8, lrs=mfull.lrs[:1], seeds=(0,))
    mini = jsonable(C.minilm_platform(mcfg))
    rec = mini["tasks"]["sentiment/tweets"]
    for name in C.ENCODERS:
        run = rec["encoders"][name]["runs"][0]
        assert len(run["curve"]) == 2 and finite(run["adapt_flops"], run["final_acc"])
