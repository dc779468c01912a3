"""Chapter 4 (general-purpose models): the estimators and the fair protocol against known answers, and one
tiny real run. Fast (< 90 s on 2 busy CPU cores): synthetic fit_predicts, a digits MLP, and a 1-layer GPT-2
body on one sentiment task."""
import math

import numpy as np
import pytest
import torch

from decoupling.core import measures, models
from decoupling.core import prequential as P
from decoupling.experiments import generality as E, generality_summary as S


def _uniform(K):
    def fp(c, train_idx, test_idx):
        return np.full((len(test_idx), K), 1.0 / K)
    return fp


# ------------------------------------------------------------------------------- prequential, known answers
def test_identical_fit_predict_gives_delta_L_exactly_zero():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    ends = measures.block_schedule(200, (0.05, 0.1, 0.2, 0.4, 1.0))

    def fp(c, train_idx, test_idx):  # a deterministic "model": class frequencies seen so far, smoothed
        counts = np.bincount(y[train_idx], minlength=3) + 1.0 + c
        return np.tile(counts / counts.sum(), (len(test_idx), 1))

    a = P.select_prequential(fp, y, 3, ends, n_configs=2)
    b = P.select_prequential(fp, y, 3, ends, n_configs=2)
    assert measures.delta_L(a, b) == 0.0
    # the uniform first block and the per-block charge are accounted for exactly
    assert a["block_bits"][0] == pytest.approx(ends[0] * math.log2(3))
    assert a["hyperparameter_bits"] == pytest.approx(1.0 * (len(ends) - 1))


def test_uniform_model_codes_log2K_per_label_plus_the_charge():
    y = np.arange(100) % 4
    ends = [10, 30, 100]
    res = P.select_prequential(_uniform(4), y, 4, ends, n_configs=3)
    assert res["total_bits"] == pytest.approx(100 * 2.0 + 2 * math.log2(3))
    assert res["config_bits"] == pytest.approx([200.0] * 3)  # a candidate alone: no charge


def test_oracle_init_codes_fewer_bits():
    """An 'init' that already knows the labelling rule (the oracle) beats one that must learn it."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 2))
    y = (x[:, 0] > 0).astype(int)
    ends = [10, 40, 100, 300]

    def oracle(c, train_idx, test_idx):
        p1 = 1 / (1 + np.exp(-8 * x[test_idx, 0]))
        return np.stack([1 - p1, p1], 1)

    def learner(c, train_idx, test_idx):  # logistic regression from scratch on the seen blocks
        from sklearn.linear_model import LogisticRegression
        m = LogisticRegression(C=1.0).fit(x[train_idx], y[train_idx])
        return m.predict_proba(x[test_idx])

    L_oracle = P.select_prequential(oracle, y, 2, ends, 1)
    L_scratch = P.select_prequential(learner, y, 2, ends, 1)
    assert measures.delta_L(L_scratch, L_oracle) > 20  # bits saved by the side information


def test_hyperparameter_choice_uses_only_seen_data():
    """Per block, fits get exactly the blocks already sent, and the choice for a block cannot depend on its
    own labels or on later ones: changing the labels of the last block leaves every choice unchanged."""
    rng = np.random.default_rng(2)
    K, n = 3, 120
    ends = [8, 20, 50, 120]
    calls = []

    def fp(c, train_idx, test_idx):
        calls.append((c, train_idx.copy(), test_idx.copy()))
        # candidate 1 "learns" the seen labels' majority, candidate 0 stays uniform
        if c == 0:
            return np.full((len(test_idx), K), 1 / K)
        counts = np.bincount(y_cur[train_idx], minlength=K) + 0.5
        return np.tile(counts / counts.sum(), (len(test_idx), 1))

    y_cur = np.where(rng.random(n) < 0.8, 0, rng.integers(0, K, n))
    a = P.select_prequential(fp, y_cur, K, ends, n_configs=2)
    for c, tr, te in calls:
        assert tr.tolist() == list(range(len(tr)))  # train on a prefix: the blocks already sent
        assert te.min() == len(tr) and te.max() < n  # predict the next block only
        assert len(tr) in ends[:-1]
    assert a["choices"][0] == 0  # nothing seen to choose on: candidate 0
    y_cur = y_cur.copy()
    y_cur[ends[-2]:] = (y_cur[ends[-2]:] + 1) % K  # relabel the last block
    b = P.select_prequential(fp, y_cur, K, ends, n_configs=2)
    assert a["choices"] == b["choices"]
    assert a["block_bits"][:-1] == b["block_bits"][:-1]


def test_choice_follows_the_previous_block():
    """With a candidate that is right and one that is uniform, after the first coded block the protocol picks
    the one that coded the previous block better."""
    y = np.zeros(64, dtype=int)

    def fp(c, train_idx, test_idx):
        p = np.full((len(test_idx), 2), 0.5)
        if c == 1:
            p[:] = [0.9, 0.1]
        return p

    res = P.select_prequential(fp, y, 2, [4, 8, 16, 32, 64], 2)
    assert res["choices"] == [0, 1, 1, 1]


def test_calibration_and_layer_movement():
    y = np.array([0, 1, 0, 1])
    assert P.expected_calibration_error(np.array([[1.0, 0.0]] * 4), y) == pytest.approx(0.5)
    assert P.expected_calibration_error(np.array([[0.5, 0.5]] * 4), y) == pytest.approx(0.0)
    m = E.MLP(4, 8, 2)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    assert all(v == 0 for v in P.layer_movement(before, m).values())
    with torch.no_grad():
        m.head.weight.mul_(2)
    mv = P.layer_movement(before, m)
    assert set(mv) == {"body.0", "body.2", "head"} and mv["body.0"] == 0
    assert mv["head"] > 0.5
    assert P._layer_group("transformer.h.1.attn.c_attn.weight", "transformer") == "h.1"
    assert P._layer_group("bert.encoder.layer.3.output.dense.weight", "bert") == "encoder.layer.3"


def test_every_target_and_seed_is_its_own_draw():
    """Cells are independent draws: every (target, seed) gets its own seed, the control another one. (The
    summary's known answers: tests/test_generality_summary.py.)"""
    seeds = {E.run_seed(t, s) for t in E.TEXT_TARGETS for s in (0, 1, 2)}
    assert len(seeds) == 3 * len(E.TEXT_TARGETS)
    assert not seeds & {v + P.CONTROL_OFFSET for v in seeds}




def test_presets_are_keyed_by_experiment_function():
    """PRESETS names each experiment function of the module, with a config per profile."""
    for fn, presets in E.PRESETS.items():
        assert callable(getattr(E, fn)), fn
        assert set(presets) == {"smoke", "full"}, fn


# ------------------------------------------------------------------------------- tiny real runs
TINY_PROTO = P.Protocol(ends=(8, 24, 56), hps=(P.HP("ft", 3e-3, 1.0), P.HP("probe", 1e-2, 0.0)), epochs=3.0,
                        batch_size=16, min_steps=4, max_steps=20)


def test_seed_vs_seed_kl_positive_while_gain_near_zero():
    """Two random inits of the same tiny GPT-2 classifier on real sentiment data: they disagree (essay KL
    > 0) although neither knows more than the other (held-out gain ≈ 0, far below the KL's scale)."""
    from decoupling import data
    tok = data.tokenizer()
    enc = data.encode("sentiment/tweets", tok, 24)
    tr, te = enc["train"], enc["test"]
    cfg = models.ModelConfig(n_layer=1, n_head=2, d_model=32, block_size=24)
    inputs = (tr["input_ids"][:56], tr["attention_mask"][:56])
    test = (te["input_ids"][:96], te["attention_mask"][:96])
    yt = te["labels"][:96].numpy()
    kls, gains = [], []
    for s in (0, 1):
        runs = {k: P.run_protocol(lambda k=k: models.build_classifier(cfg, 2, seed=s + k), inputs,
                                  tr["labels"][:56], test, yt, 2, TINY_PROTO, s) for k in (0, 1000)}
        pr = P._pair(runs[0], runs[1000], yt)
        kls.append(pr["essay_kl"][-1])
        gains.append(pr["gain"][-1])
    assert min(kls) > 1e-4
    assert abs(np.mean(gains)) < 0.25  # bits/example; a seed swap carries no information on average


def _assert_same_runs(batched_runs, sequential_runs, rtol):
    """run_protocols' results equal run_protocol's, member by member, up to float rounding."""
    assert len(batched_runs) == len(sequential_runs)
    for b, s in zip(batched_runs, sequential_runs):
        rb, rs = b["record"], s["record"]
        assert set(rb) == set(rs)
        assert rb["choices"] == rs["choices"]  # the same candidate chosen at every block
        for k in ("L", "L_config", "block_bits", "test_bits", "test_acc", "ece", "confidence"):
            np.testing.assert_allclose(rb[k], rs[k], rtol=rtol, atol=rtol, err_msg=k)
        assert set(rb["movement"]) == set(rs["movement"])
        for g in rs["movement"]:
            np.testing.assert_allclose(rb["movement"][g], rs["movement"][g], rtol=rtol, err_msg=g)
        assert set(b["test_probs"]) == set(s["test_probs"])
        for blk in s["test_probs"]:
            np.testing.assert_allclose(b["test_probs"][blk], s["test_probs"][blk], atol=rtol)
        assert (b["model"] is None) == (s["model"] is None)
        if s["model"] is not None:
            for p, q in zip(b["model"].parameters(), s["model"].parameters()):
                torch.testing.assert_close(p, q, rtol=rtol, atol=rtol)


def test_batched_protocol_equals_sequential_mlps(one_thread):
    """Every init and seed fitted as members of one batched run per (block, candidate) gives what fitting
    them one after another gives: the same code lengths, choices, test curves, movement and kept models.
    Members differ in init (fresh seeds, a "pretrained" body), examples and their order, and data seed;
    the candidates cover full fine-tuning, a slow body, LP-FT (two stages) and a linear probe."""
    from decoupling import data
    d = data.arrays("digits/5-9")
    (xt, yt), (xe, ye) = d["train"], d["test"]
    xt, xe = torch.from_numpy(xt), torch.from_numpy(xe[:100])
    ye = ye[:100]
    proto = P.Protocol(ends=(10, 30, 60), hps=(P.HP("ft", 3e-3, 1.0), P.HP("slow-body", 3e-3, 0.1),
                                               P.HP("lp-ft", 3e-3, 1.0, lp_frac=0.5), P.HP("probe", 1e-2, 0.0)),
                       epochs=5.0, batch_size=16, min_steps=5, max_steps=12)
    source = models.seeded(99, lambda: E.MLP(64, 16, 5))

    def from_source(seed):
        m = models.seeded(seed, lambda: E.MLP(64, 16, 5))
        m.body.load_state_dict(source.body.state_dict())
        return m

    members = []
    for seed in (0, 1):
        order = torch.as_tensor(P.subset(len(yt), 60, seed))
        inputs, y = (xt[order],), torch.as_tensor(yt[order.numpy()])
        for make in (lambda s=seed: models.seeded(s, lambda: E.MLP(64, 16, 5)), lambda s=seed: from_source(s)):
            members.append(P.Member(make, inputs, y, (xe,), seed, keep_model=seed == 0))
    together = P.run_protocols(members, ye, 5, proto, batch=True)
    alone = [P.run_protocol(m.make, m.inputs, m.y, m.test_inputs, ye, 5, proto, m.seed, m.keep_model)
             for m in members]
    _assert_same_runs(together, alone, rtol=1e-4)
    assert together[0]["record"]["movement"] and together[0]["model"] is not None
    # the CPU's way (batch_fits() is False here): one fit after another inside the same driver
    _assert_same_runs(P.run_protocols(members, ye, 5, proto, batch=False), alone, rtol=1e-6)


def _tiny_gpt2_task():
    """A 1-layer GPT-2 config and real sentiment rows for it: (training split, config, test inputs, test labels)."""
    from decoupling import data
    enc = data.encode("sentiment/tweets", data.tokenizer(), 24)
    tr, te = enc["train"], enc["test"]
    cfg = models.ModelConfig(n_layer=1, n_head=2, d_model=32, block_size=24)
    return tr, cfg, (te["input_ids"][:48], te["attention_mask"][:48]), te["labels"][:48].numpy()


def test_batched_protocol_equals_sequential_gpt2(one_thread):
    """The same for tiny GPT-2 classifiers on real sentiment data: a random init and its seed control,
    two seeds with their own examples."""
    tr, cfg, test, yt = _tiny_gpt2_task()
    members = []
    for seed in (0, 1):
        order = P.subset(len(tr["labels"]), 56, seed)
        inputs = P.take((tr["input_ids"], tr["attention_mask"]), order)
        y = tr["labels"][torch.as_tensor(order)]
        for init in (seed, seed + P.CONTROL_OFFSET):
            members.append(P.Member(lambda i=init: models.build_classifier(cfg, 2, seed=i), inputs, y, test, seed))
    together = P.run_protocols(members, yt, 2, TINY_PROTO, batch=True)
    alone = [P.run_protocol(m.make, m.inputs, m.y, m.test_inputs, yt, 2, TINY_PROTO, m.seed) for m in members]
    _assert_same_runs(together, alone, rtol=1e-3)  # Adam on tiny early moments: looser than the MLPs
    assert together[0]["record"]["movement"]


def test_batched_protocol_equals_sequential_bert(one_thread):
    """The MiniLM fine-tune path: BERT members get their padding mask as (n, 1, 1, L) booleans
    (`_bert_inputs`, which vmap can trace) and code the labels as sequential fits with the usual 2-D mask
    do. Tiny random BERTs without dropout (with dropout the draws differ, as batched.py says)."""
    from transformers import BertConfig, BertForSequenceClassification
    conf = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=16, num_labels=2, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 13, (104,), generator=g)
    mask = (torch.arange(12)[None] < lengths[:, None]).long()
    ids = torch.randint(1, 64, (104, 12), generator=g) * mask
    y = (ids[:, 0] > 32).long()
    train, test = (ids[:56], mask[:56]), (ids[56:], mask[56:])
    make = lambda s: models.seeded(s, lambda: BertForSequenceClassification(conf))  # noqa: E731
    members = [P.Member(lambda s=s: make(s), E._bert_inputs(train), y[:56], E._bert_inputs(test), s) for s in (0, 1)]
    together = P.run_protocols(members, y[56:].numpy(), 2, TINY_PROTO, batch=True)
    alone = [P.run_protocol(lambda s=s: make(s), train, y[:56], test, y[56:].numpy(), 2, TINY_PROTO, s)
             for s in (0, 1)]
    _assert_same_runs(together, alone, rtol=1e-3)


TINY_DIGITS = E.DigitsConfig(hidden=16, pretrain_steps=60, early_steps=5, mid_steps=(20,), seeds=(0, 1), n_filters=2,
                             protocol=P.Protocol(ends=(10, 30, 60), hps=(P.HP("ft", 3e-3, 1.0), P.HP("probe", 1e-2, 0.0)),
                                                 epochs=5.0, batch_size=32, min_steps=5, max_steps=20))


@pytest.mark.parametrize("direction", [{}, E.REVERSE], ids=["0-4 to 5-9", "5-9 to 0-4"])
def test_digits_experiment_is_deterministic_in_both_directions(direction):
    import dataclasses
    import json
    from decoupling import data
    from decoupling.core import baselines
    cfg = dataclasses.replace(TINY_DIGITS, **direction)
    a = E.digits_transfer(cfg)
    b = E.digits_transfer(cfg)
    assert a == b  # bitwise-deterministic on CPU, JSON-able dict
    json.dumps(a)
    assert (a["source_task"], a["target"]) == (cfg.source, cfg.target) and cfg.source != cfg.target
    assert set(a["runs"]) == {E.SCRATCH, E.CONTROL, "pretrained", "early", "steps-20"} | (
        {"pretrained-rescaled", "random-labels"} if cfg.diagnostics else set())
    assert a["source_steps"] == {"early": 5, "steps-20": 20, "pretrained": 60}
    r = a["runs"]["pretrained"]
    assert len(r["block_bits"][0]) == 3 and len(r["choices"][0]) == 2 and len(r["L"]) == 2
    assert r["block_bits"][0][0] == pytest.approx(10 * math.log2(5))
    if cfg.diagnostics:  # the rescaled body has θ0's feature norm on the source images (same directions)
        assert a["diagnostics"]["pretrained-rescaled"]["feature_norm"] < a["diagnostics"]["pretrained"]["feature_norm"]
    assert len(a["filters"]["pretrained"]) == 2 and len(a["filters"]["pretrained"][0]) == 64
    # the reference (pixels + logistic regression) codes the same examples, in the same order, on the same blocks
    ref = a["reference"]
    assert len(ref["L"]) == 2 and all(len(bb) == 3 for bb in ref["block_bits"])
    assert ref["block_bits"][0][0] == pytest.approx(r["block_bits"][0][0])  # the same uniform first block
    tgt = data.arrays(cfg.target)
    (xt, yt), (xe, ye) = tgt["train"], tgt["test"]
    again = baselines.pixels_prequential(xt, yt, [P.subset(len(yt), 60, s) for s in cfg.seeds], xe, ye, 5, (10, 30, 60))
    assert again == ref


def test_digits_directions_differ_and_the_summary_reads_both():
    import dataclasses
    runs = [E.digits_transfer(dataclasses.replace(TINY_DIGITS, seeds=(0,), **d)) for d in ({}, E.REVERSE)]
    assert runs[0]["runs"][E.SCRATCH]["L"] != runs[1]["runs"][E.SCRATCH]["L"]
    D = S.digits_summary(runs)
    assert list(D["directions"]) == ["digits/0-4 -> digits/5-9", "digits/5-9 -> digits/0-4"]
    assert D["asymmetry"]["pair"] == list(D["directions"])
    for dd in D["directions"].values():
        assert [p["steps"] for p in dd["steps"]] == [5, 20, 60]  # ΔL against source-training steps, in order
        assert S.control_word(dd["control"]["decision"]) in ("equivalent", "biased", "undecided")


def test_reference_codes_the_same_blocks_known_answers():
    """The TF-IDF reference: a uniform first block, one code length per order, and a reference that is told
    the same order twice codes it the same way (it sees the rows in the order it is given)."""
    from decoupling.core import baselines
    texts = [f"good movie {i}" if i % 2 else f"bad film {i}" for i in range(80)]
    y = np.arange(80) % 2
    order = np.random.default_rng(0).permutation(80)[:48]
    res = baselines.tfidf_prequential(texts, y, [order, order], texts[:10], y[:10], 2, (8, 24, 48))
    assert res["L"][0] == res["L"][1] and len(res["block_bits"][0]) == 3
    assert res["block_bits"][0][0] == pytest.approx(8.0)  # 8 labels at 1 bit
    assert res["L"][0] < 48 * 0.6  # the rule is learnable from the words: far below the uniform code






def test_minilm_random_bert_is_drawn_afresh_per_seed(monkeypatch):
    """In probe mode, θ0 and θ0' are random BERTs initialised from each seed's own run seed (and + offset),
    each embedding only its own seed's rows plus that run's test rows; MiniLM embeds the union once; the
    TF-IDF reference codes the same rows in the same order on the same blocks and scores the same test rows."""
    from decoupling import data
    from decoupling.core import baselines
    inits, sizes = [], []
    real_random, real_embed = E._random_bert, models.embed_minilm

    def spy_random(num_labels, seed):
        inits.append(seed)
        m = real_random(num_labels, seed)
        m._spy_seed = seed
        return m

    def spy_embed(texts, *a, model=None, **kw):
        sizes.append((getattr(model, "_spy_seed", "minilm"), len(texts)))
        return real_embed(texts, *a, model=model, **kw)

    monkeypatch.setattr(E, "_random_bert", spy_random)
    monkeypatch.setattr(models, "embed_minilm", spy_embed)
    target = "sentiment/tweets"
    cfg = E.MiniLMConfig(targets=(target,), max_len=8, n_test=16, seeds=(0, 1),
                         protocol=P.Protocol(ends=(8, 24), hps=(P.HP("p", 1e-2, 1.0, 0.0),), epochs=2.0,
                                             batch_size=16, min_steps=2, max_steps=4))
    out = E.minilm_transfer(cfg)["targets"][target]
    rs = [E.run_seed(target, s) for s in cfg.seeds]
    assert inits == [rs[0], rs[0] + P.CONTROL_OFFSET, rs[1], rs[1] + P.CONTROL_OFFSET]
    assert [n for who, n in sizes if who != "minilm"] == [24 + 16] * 4  # own seed's rows + the test rows
    assert out["pairs"][P.CONTROL]["dL"][0] != out["pairs"][P.CONTROL]["dL"][1]
    arr = data.arrays(target)
    (xtr, ytr), (xte, yte) = arr["train"], arr["test"]
    # equal inputs: the reference reads the texts as MiniLM does, cut to the whole words of max_len tokens
    from decoupling.core.encoders import cut
    tok = models.minilm_tokenizer()
    xtr, xte = cut(list(xtr), cfg.max_len, [tok])[0], cut(list(xte), cfg.max_len, [tok])[0]
    tests = [P.heldout_rows(len(yte), 16, s) for s in cfg.seeds]  # each run scores its own test rows
    assert set(tests[0]) != set(tests[1])
    ref = baselines.tfidf_prequential(xtr, ytr, [P.subset(len(ytr), 24, r) for r in rs], xte, yte, 2, (8, 24),
                                      test_of=tests)
    assert out["reference"] == ref
    assert len(out["reference"]["L"]) == len(out["runs"][E.SCRATCH]["L"]) == 2


def test_seed_control_depends_on_the_seeds_not_on_the_roles_or_the_order(one_thread):
    """θ0 and θ0′ of our GPT-2 bodies differ in nothing but their init seed: built after another model or
    alone they are the same network (no shared RNG state), and coding them with their seeds swapped and the
    members in the opposite order swaps their code lengths exactly, so ΔL(θ0 − θ0′) changes sign and
    nothing else. A seed-vs-seed ΔL away from 0 is then the luck of the seeds drawn, not the protocol."""
    tr, cfg, test, yt = _tiny_gpt2_task()
    seed = E.run_seed("sentiment/tweets", 0)
    order = P.subset(len(tr["labels"]), 56, seed)
    inputs = P.take((tr["input_ids"], tr["attention_mask"]), order)
    y = tr["labels"][torch.as_tensor(order)]
    a, b = seed, seed + P.CONTROL_OFFSET
    models.build_classifier(cfg, 2, seed=a)  # building θ0 first leaves nothing behind for θ0′
    after = models.build_classifier(cfg, 2, seed=b).state_dict()
    torch.manual_seed(123)
    alone = models.build_classifier(cfg, 2, seed=b).state_dict()
    assert all(torch.equal(after[k], alone[k]) for k in after)

    def code(seeds, names):
        members = {(0, n): P.Member(lambda i=i: models.build_classifier(cfg, 2, seed=i), inputs, y, test, seed)
                   for n, i in zip(names, seeds)}
        coded, _ = P.code_members(members, yt, 2, TINY_PROTO, "t")
        return coded["runs"][P.SCRATCH]["L"][0], coded["runs"][P.CONTROL]["L"][0], coded["pairs"][P.CONTROL]["dL"][0]

    l0, l1, dl = code((a, b), (P.SCRATCH, P.CONTROL))
    s0, s1, sdl = code((a, b), (P.CONTROL, P.SCRATCH))  # θ0′ drawn from a, θ0 from b, listed θ0′ first
    assert (s0, s1) == (l1, l0) and sdl == -dl and dl != 0


def test_equivalence_verdict_is_a_tost_with_its_margin():
    assert E.equivalence_verdict(-0.02, 0.03, 0.05) == "holds"
    assert E.equivalence_verdict(-0.02, 0.07, 0.05) == "inconclusive"  # contains 0, but not inside the band
    assert E.equivalence_verdict(0.06, 0.2, 0.05) == "does not hold"
    assert E.equivalence_verdict(-0.3, -0.05, 0.05) == "does not hold"
    assert E.equivalence_verdict(float("nan"), 0.0, 0.05) == "inconclusive"


def test_each_run_reads_the_bodies_pretrained_with_its_own_seed(monkeypatch):
    """Our bodies' pretraining seed is a run: run s of `transfer` loads, for every source, the body that
    `experiments.pretrain` trained with seed s (so the interval over runs holds the pretraining luck)."""
    asked = []

    def body(cfg, profile):
        asked.append((cfg.domain, cfg.seed))
        return f"ckpt-{cfg.domain}-{cfg.seed}", {"eval_bits_per_token": 7.0 + cfg.seed}
    monkeypatch.setattr(E.pretrain, "body", body)
    monkeypatch.setattr(models, "load_lm", lambda path: path)
    lms, info = E._bodies(E.TransferConfig(sources=("code", "prose"), seeds=(0, 1, 2)))
    assert sorted(asked) == [(d, s) for d in ("code", "prose") for s in (0, 1, 2)]
    assert lms["prose", 2] == "ckpt-prose-2" and info["code"]["eval_bits_per_seed"] == [7.0, 8.0, 9.0]
