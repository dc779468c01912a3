"""`gain`: how many bits a pretrained model gives *your* labelled text task — the essay's information gain
as a tool, with the book's fair protocol (the `decoupling gain` command and `gain(model, dataset)`).

    ΔL = L_preq(θ0) − L_preq(θP)   bits over the coded labels

θP is the model as given, θ0 the same architecture randomly initialised, θ0' a second random init (the
seed-vs-seed control: its ΔL should be 0 within the equivalence bound `DELTA_BITS` per label), and a
competent model with no pretraining at all (TF-IDF word and character n-grams + logistic regression) is
coded on the same blocks. All of them see the same examples in the same order; every block is coded by a
fit on the blocks before it, with the fitting setting chosen per block on data already seen and
log2(#settings) bits charged per block (`core.prequential`, the protocol of the book's generality chapter).

Modes: `probe` trains a linear head on frozen mean-pooled features (cheap: one forward pass per encoder),
`finetune` trains the whole model (a GPU's job beyond a few hundred examples). Beside ΔL: the essay's KL
and the held-out gain on a fixed test split, learning curves, and two cheap feature-based proxies that
model-selection tools use instead of bits, LogME (You et al. 2021) and the H-score (Bao et al. 2019).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from decoupling import paths
from decoupling.core import baselines, encoders, intervals, measures, models
from decoupling.core.device import cpu_threads
from decoupling.core.prequential import (CONTROL, CONTROL_OFFSET, HP, SCRATCH, Member, Protocol, code_members,
                                         subset)
from decoupling.data import platforms, tables

PRETRAINED = "pretrained"
REFERENCE = "tfidf-logreg"  # the competent non-pretrained reference
DELTA_BITS = measures.DELTA_BITS
BOOK_BODIES = ("code", "prose", "c", "go", "bible_en", "shuffled")


class GainError(ValueError):
    """Bad input to `gain`: the message is one line that says what to change. Whatever it quotes (a
    reader's exception, a column name) is folded onto that line: every run of whitespace, newlines
    included, becomes one space."""

    def __init__(self, message: str = ""):
        super().__init__(" ".join(str(message).split()))


# ================================================================================== what goes in
@dataclass(frozen=True)
class GainConfig:
    """One `gain` computation. `model` and `data` name what to load; their sha256 (of the weights and
    config files, of the rows used) are part of the config so that the results store recomputes exactly
    when either changes."""
    model: str = "minilm"  # "minilm", "body:<domain>" (a book body), or a local Hugging Face directory
    data: str = ""  # a CSV / JSONL / Parquet file or a saved `datasets` directory
    model_sha: str = ""
    data_sha: str = ""
    text_col: str = "text"
    label_col: str = "label"
    mode: str = "probe"  # "probe" | "finetune"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # ≥ 5: the equivalence test of the control needs the power
    max_examples: int = 1000  # coded labels at most (the rest of the rows: the test split)
    n_test: int = 200  # fixed test rows for curves, KL and held-out gain
    max_len: int = 64  # tokens per text
    batch_size: int = 64
    body_profile: str = "smoke"  # for "body:<domain>": which pretrained preset


PRESETS = {"gain_experiment": {"smoke": GainConfig(), "full": GainConfig(mode="finetune", max_len=128)}}


def protocol(n: int, K: int, mode: str) -> Protocol:
    """Blocks that double from max(16, 2K) to n; two candidate settings chosen per block on seen data."""
    first = max(16, 2 * K)
    if n < 2 * first:
        raise GainError(f"{n} labelled rows: the protocol needs at least {2 * first} (a first block of "
                        f"{first} and one more to code) plus a test split")
    ends = [first]
    while ends[-1] * 2 < n:
        ends.append(ends[-1] * 2)
    ends.append(n)
    if mode == "probe":
        hps = (HP("probe-lr1e-2", 1e-2, 1.0, 0.0), HP("probe-lr5e-2", 5e-2, 1.0, 0.0))
        return Protocol(ends=tuple(ends), hps=hps, epochs=20.0, batch_size=64, min_steps=20)
    hps = (HP("finetune-lr5e-5", 5e-5, 1.0), HP("finetune-lr3e-4", 3e-4, 1.0))
    return Protocol(ends=tuple(ends), hps=hps, epochs=6.0, batch_size=32, max_steps=400)


def read_table(data, text_col: str = "text", label_col: str = "label"):
    """(texts, labels as int array, class names) of a labelled text table (`data.tables.read`: a `datasets`
    object or directory, CSV / TSV / JSONL / JSON / Parquet); what cannot be coded is a one-line GainError."""
    try:
        return tables.read(data, text_col, label_col)
    except tables.TableError as e:
        raise GainError(str(e)) from None


def _sha_rows(texts, y, classes) -> str:
    """sha256 of the rows as `_gain` uses them: every text with its label index, then the class names (two
    tables that differ only in what the labels are called code the same bits but report other classes)."""
    h = hashlib.sha256()
    for t, label in zip(texts, y):
        h.update(t.encode())
        h.update(b"\0%d\n" % label)
    h.update("\0".join(classes).encode())
    return h.hexdigest()


# The table `config_for` read and hashed, kept for `_gain` in the same process so that a call reads its
# data once. Keyed by the rows' sha256, which is also the table's part of the store key: an entry is only
# ever served to a config whose rows hash to it. A few entries (`score` makes one per target in turn).
_TABLES: dict[str, tuple] = {}
_KEEP = 4


def _remember(sha: str, table: tuple) -> None:
    _TABLES.pop(sha, None)
    _TABLES[sha] = table
    while len(_TABLES) > _KEEP:
        _TABLES.pop(next(iter(_TABLES)))


def _table(cfg: GainConfig) -> tuple:
    """(texts, labels, classes) of `cfg`: the table `config_for` read if this process has it, else read from
    `cfg.data` and checked against `cfg.data_sha` (a file changed since its key was made is refused)."""
    if cfg.data_sha and cfg.data_sha in _TABLES:
        return _TABLES[cfg.data_sha]
    texts, y, classes = read_table(cfg.data, cfg.text_col, cfg.label_col)
    if cfg.data_sha and _sha_rows(texts, y, classes) != cfg.data_sha:
        raise GainError(f"{cfg.data} changed since its configuration was made; run again")
    return texts, y, classes


_DIR_SHAS: dict[tuple, str] = {}


def _sha_dir(path: Path) -> str:
    """sha256 of every file's name and bytes under `path`. Remembered for this process under the files'
    names, sizes and modification times, so that `score` (one `gain` per target) hashes a model's weights
    once; any file added, removed or rewritten changes that signature and is hashed again."""
    files = sorted(f for f in path.rglob("*") if f.is_file())
    stats = tuple((str(f.relative_to(path)), (st := f.stat()).st_size, st.st_mtime_ns) for f in files)
    signature = (str(path.resolve()), stats)
    if signature in _DIR_SHAS:
        return _DIR_SHAS[signature]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    _DIR_SHAS[signature] = h.hexdigest()
    return _DIR_SHAS[signature]


def _saved(dataset, text_col: str, label_col: str) -> tuple[Path, tuple]:
    """An in-memory `datasets.Dataset` / `DatasetDict` / pandas frame, written once as Parquet under the
    store (named by its content) so that a record names a file that can be read again, and the table as
    read (texts, labels, classes: what reading that file gives, so nobody needs to)."""
    from decoupling import files
    texts, y, classes = read_table(dataset, text_col, label_col)
    path = paths.STORE_DIR / "inputs" / f"{_sha_rows(texts, y, classes)[:16]}.parquet"
    if not path.exists():
        import io
        import pandas as pd
        buf = io.BytesIO()
        pd.DataFrame({"text": texts, "label": [classes[i] for i in y]}).to_parquet(buf, index=False)
        files.atomic_write(path, buf.getvalue())
    return path, (texts, y, classes)


# ================================================================================== models
def model_loaders(cfg: GainConfig):
    """What `gain` builds its encoders from, for `cfg.model` ("minilm", "body:<domain>" or a Hugging Face
    directory): (pretrained(num_labels=None, seed=0), random_init(num_labels=None, seed=0), tokenizer,
    max positions). `num_labels=None` gives the bare encoder (probe mode), a number a sequence classifier
    with a head seeded by `seed` (finetune mode); `random_init` draws the same architecture afresh from
    `seed`. Texts are cut to the max positions."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer
    if cfg.model.startswith("body:"):
        from decoupling import data
        from decoupling.experiments import pretrain
        domain = cfg.model.split(":", 1)[1]
        path, _ = pretrain.body(pretrain.config(cfg.body_profile, domain), cfg.body_profile)
        tok = data.tokenizer()
    else:  # a zoo platform (minilm, mpnet, smollm2: `decoupling data --platforms`) or a model directory
        path = platforms.path(cfg.model) if cfg.model in platforms.ZOO else Path(cfg.model)
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    conf = AutoConfig.from_pretrained(path, local_files_only=True)
    if tok.pad_token is None:  # decoders ship none; padding is masked out of every pooled feature
        tok.pad_token = tok.eos_token or tok.unk_token
    conf.pad_token_id = tok.pad_token_id
    if getattr(conf, "vocab_size", None) and len(tok) > conf.vocab_size:
        raise GainError(f"the tokenizer has {len(tok)} tokens but the model's vocabulary {conf.vocab_size}: "
                        f"they do not belong together")

    def pretrained(num_labels=None, seed=0):
        if num_labels is None:
            return AutoModel.from_pretrained(path, config=conf, local_files_only=True, dtype=torch.float32)
        c = AutoConfig.from_pretrained(path, local_files_only=True, num_labels=num_labels,
                                       pad_token_id=tok.pad_token_id)
        return models.seeded(seed, lambda: AutoModelForSequenceClassification.from_pretrained(
            path, config=c, local_files_only=True, dtype=torch.float32))

    def random_init(num_labels=None, seed=0):
        if num_labels is None:
            return models.seeded(seed, lambda: AutoModel.from_config(conf))
        c = AutoConfig.from_pretrained(path, local_files_only=True, num_labels=num_labels,
                                       pad_token_id=tok.pad_token_id)
        return models.seeded(seed, lambda: AutoModelForSequenceClassification.from_config(c))

    # texts longer than the model's positions are cut to them (BERT-likes have 512, the book's bodies 48–128)
    limit = getattr(conf, "n_positions", None) or getattr(conf, "max_position_embeddings", None) or 10 ** 9
    return pretrained, random_init, tok, int(limit)


def check_model(model: str) -> tuple[str, str]:
    """(normalised model name, sha256 of what decides its weights) or a GainError naming what is missing."""
    if model in platforms.ZOO:
        try:
            return model, _sha_dir(platforms.path(model))
        except platforms.PlatformError as e:
            raise GainError(str(e)) from None
    if model.startswith("body:"):
        domain = model.split(":", 1)[1]
        if domain not in BOOK_BODIES:
            raise GainError(f"unknown book body {domain!r}; choose one of {', '.join(BOOK_BODIES)}")
        return model, "book-body"  # keyed by the pretrain config through the import graph and data hash
    p = Path(model)
    if not p.is_dir():
        raise GainError(f"--model {model}: not a directory; give a Hugging Face model directory, 'minilm' "
                        f"or body:<{'|'.join(BOOK_BODIES)}>")
    if not (p / "config.json").exists():
        raise GainError(f"{p}: no config.json (save the model with `save_pretrained`)")
    if not any(p.glob("*.safetensors")) and not any(p.glob("pytorch_model*.bin")):
        raise GainError(f"{p}: no weights (*.safetensors or pytorch_model.bin)")
    if not any((p / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")):
        raise GainError(f"{p}: no tokenizer files (save the tokenizer with `save_pretrained` beside the model)")
    # The probe feeds token ids to AutoModel and mean-pools its last_hidden_state: the architecture is
    # checked against that from config.json and the class's signature, before any weights are read.
    import dataclasses
    import inspect
    import json
    import typing

    import transformers
    from transformers.modeling_outputs import ModelOutput
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES
    try:
        conf = json.loads((p / "config.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise GainError(f"{p}/config.json is not readable JSON ({type(e).__name__}: {e})") from None
    kind = conf.get("model_type") if isinstance(conf, dict) else None
    if not kind or kind not in transformers.CONFIG_MAPPING:
        raise GainError(f"{p}: config.json's model_type {kind!r} is not an architecture transformers "
                        f"{transformers.__version__} knows")
    cls_name = MODEL_MAPPING_NAMES.get(kind)
    if isinstance(cls_name, (tuple, list)):
        cls_name = cls_name[0]
    if not cls_name:
        raise GainError(f"{p}: transformers has no AutoModel for model_type {kind!r}, so there are no hidden "
                        f"states to mean-pool")
    try:
        cls = getattr(transformers, cls_name)
    except Exception as e:
        raise GainError(f"{p}: transformers cannot import {cls_name} for model_type {kind!r} "
                        f"({type(e).__name__}: {e})") from None
    if "input_ids" not in inspect.signature(cls.forward).parameters:
        raise GainError(f"{p}: {cls_name} (model_type {kind!r}) reads no token ids: it is not a text model")
    try:
        returned = typing.get_type_hints(cls.forward).get("return")
    except Exception:  # an annotation that does not resolve: nothing to judge by, the run will tell
        returned = None
    outputs = [t for t in (typing.get_args(returned) or (returned,))
               if isinstance(t, type) and issubclass(t, ModelOutput)]
    if outputs and not any("last_hidden_state" in {f.name for f in dataclasses.fields(t)} for t in outputs):
        raise GainError(f"{p}: {cls_name} (model_type {kind!r}) returns {outputs[0].__name__}, which has no "
                        f"last_hidden_state to mean-pool")
    try:
        transformers.AutoTokenizer.from_pretrained(p, local_files_only=True)
    except Exception as e:
        raise GainError(f"{p}: the tokenizer does not load ({type(e).__name__}: {e})") from None
    return str(p.resolve()), _sha_dir(p)


# ================================================================================== the experiment
def gain_experiment(cfg: GainConfig) -> dict:
    """ΔL and its companions for one (model, dataset): the function the results store caches."""
    with cpu_threads(1), models.quiet_loading():
        return _gain(cfg)


def _gain(cfg: GainConfig) -> dict:
    if cfg.mode not in ("probe", "finetune"):
        raise GainError(f"mode must be 'probe' or 'finetune', not {cfg.mode!r}")
    texts, y_all, classes = _table(cfg)
    K = len(classes)
    rng = np.random.default_rng(0)  # the test split is fixed whatever the seeds
    perm = rng.permutation(len(y_all))
    n_test = min(cfg.n_test, len(y_all) // 5)
    test_idx, pool = np.sort(perm[:n_test]), perm[n_test:]
    n = min(cfg.max_examples, len(pool))
    proto = protocol(n, K, cfg.mode)
    y_test = y_all[test_idx]
    pretrained, random_init, tok, limit = model_loaders(cfg)
    max_len = min(cfg.max_len, limit)
    # equal inputs: every text cut once to the whole words the model reads in max_len tokens; the model and
    # the TF-IDF reference then read the same strings
    texts, _ = encoders.cut(list(texts), max_len, [tok])
    order_of = {s: pool[subset(len(pool), n, s)] for s in cfg.seeds}
    names = (SCRATCH, CONTROL, PRETRAINED)
    members: dict[tuple[int, str], Member] = {}
    proxies: dict = {}
    r0 = cfg.seeds[0]
    if cfg.mode == "probe":
        # frozen features for every row any seed codes, then linear heads per seed. The pretrained encoder is
        # one network; the random ones are drawn afresh for every seed (θ0 from seed s, θ0' from s + offset),
        # so that the interval over seeds covers how much a random encoder's features vary with its init —
        # with one random encoder for all seeds, θ0 vs θ0' would differ by a fixed amount no seed resamples.
        cache, threads = paths.STORE_DIR / "features", encoders.all_cores()  # a gain runs alone: every core
        conf = random_init(None, 0).config

        def embed(make, rows, identity):
            # core.encoders: tokenized once, length-ordered batches, cached by what decides the weights
            f = encoders.features(identity, [texts[i] for i in rows], max_len, make, tok, cache, threads=threads)
            return torch.from_numpy(f).float()

        need = np.unique(np.concatenate([*order_of.values(), test_idx]))  # one pass of θP over every row
        shared = embed(pretrained, need, {"weights": cfg.model_sha})
        feats, tests, n_test = {}, {}, len(test_idx)
        for s in cfg.seeds:
            feats[s, PRETRAINED] = shared[torch.as_tensor(np.searchsorted(need, order_of[s]))]
            tests[s, PRETRAINED] = shared[torch.as_tensor(np.searchsorted(need, test_idx))]
            for name, init in ((SCRATCH, s), (CONTROL, s + CONTROL_OFFSET)):
                f = embed(lambda i=init: random_init(None, i), np.concatenate([order_of[s], test_idx]),
                          {"config": conf.to_dict(), "seed": init})
                feats[s, name], tests[s, name] = f[:n], f[n:n + n_test]
        for s in cfg.seeds:
            y = torch.as_tensor(y_all[order_of[s]])
            for name in names:
                make = (lambda d=feats[s, name].shape[1], s=s: models.seeded(s, lambda: nn.Linear(d, K)))
                members[s, name] = Member(make, (feats[s, name],), y, (tests[s, name],), s)
        for name in (PRETRAINED, SCRATCH):
            f = feats[r0, name].double().numpy()
            proxies[name] = {"logme": measures.logme(f, y_all[order_of[r0]], K),
                             "h_score": measures.h_score(f, y_all[order_of[r0]])}
    else:
        enc = tok([texts[i] for i in range(len(texts))], padding="max_length", truncation=True,
                  max_length=max_len, return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        test_inputs = (ids[test_idx], mask[test_idx])
        for s in cfg.seeds:
            o = torch.as_tensor(order_of[s])
            makers = {SCRATCH: lambda s=s: random_init(K, s), CONTROL: lambda s=s: random_init(K, s + CONTROL_OFFSET),
                      PRETRAINED: lambda s=s: pretrained(K, s)}
            for name in names:
                members[s, name] = Member(makers[name], (ids[o], mask[o]), torch.as_tensor(y_all[order_of[s]]),
                                          test_inputs, s)
    try:
        out, _ = code_members(members, y_test, K, proto, f"gain {cfg.mode}")
    except torch.OutOfMemoryError:
        raise GainError(f"out of memory with batch {proto.batch_size} and {max_len} tokens: lower "
                        f"--max-len or --max-examples, or use --mode probe") from None
    ref = baselines.tfidf_prequential(texts, y_all, [order_of[s] for s in cfg.seeds], [texts[i] for i in test_idx],
                                      y_test, K, proto.ends)
    return {**out, "model": cfg.model, "data": cfg.data, "mode": cfg.mode, "classes": classes,
            "seeds": list(cfg.seeds), "max_len": max_len, "reference": ref, "proxies": proxies}


# ================================================================================== what comes out
def summarize(res: dict) -> dict:
    """The numbers a reader wants from one result: ΔL vs θ0 (with its CI over seeds), the control, the
    reference, KL and gain on the test split, the proxies — every ΔL in bits and in bits per label."""
    n = res["n"]
    L = {name: np.array(r["L"], float) for name, r in res["runs"].items()}
    L[REFERENCE] = np.array(res["reference"]["L"], float)

    def ci(v):
        c = intervals.mean_ci(v)  # Student-t over seeds: a percentile bootstrap undercovers at 2-5 runs
        return {"bits": c.value, "lo": c.lo, "hi": c.hi, "per_label": c.value / n,
                "per_label_lo": c.lo / n, "per_label_hi": c.hi / n}

    dl = ci(L[SCRATCH] - L[PRETRAINED])
    ctrl = ci(L[SCRATCH] - L[CONTROL])
    out = {
        "n": n, "K": res["K"], "seeds": len(res["seeds"]), "mode": res["mode"],
        "L_bits": {k: float(v.mean()) for k, v in L.items()}, "uniform_bits": res["uniform_bits"],
        "dL": dl, "control_dL": ctrl,
        "control_equivalent": measures.equivalence(ctrl["per_label_lo"], ctrl["per_label_hi"]) == "equivalent",
        "control_verdict": measures.equivalence(ctrl["per_label_lo"], ctrl["per_label_hi"]),
        "delta_bits_per_label": DELTA_BITS,
        "dL_vs_reference": ci(L[REFERENCE] - L[PRETRAINED]),
        "essay_kl": float(np.mean([k[-1] for k in res["pairs"][PRETRAINED]["essay_kl"]])),
        "heldout_gain": float(np.mean([g[-1] for g in res["pairs"][PRETRAINED]["gain"]])),
        "test_bits": {k: np.mean(r["test_bits"], axis=0).tolist() for k, r in res["runs"].items()},
        "proxies": res["proxies"],
    }
    out["test_bits"][REFERENCE] = np.mean(res["reference"]["test_bits"], axis=0).tolist()
    return out


def table(s: dict) -> str:
    """The short table `decoupling gain` prints."""
    d, c, r = s["dL"], s["control_dL"], s["dL_vs_reference"]
    lines = [f"{s['n']} labels coded prequentially ({s['K']} classes, {s['seeds']} seeds, {s['mode']}); "
             f"uniform code {s['uniform_bits']:.0f} bits",
             f"  {'code length L (bits)':<34}" + "  ".join(f"{k} {v:.0f}" for k, v in s["L_bits"].items()),
             f"  ΔL = L(θ0) − L(θP)                {d['bits']:+8.1f} bits  95% CI [{d['lo']:+.1f}, {d['hi']:+.1f}]"
             f"  {d['per_label']:+.3f} bits/label",
             f"  control L(θ0) − L(θ0')            {c['bits']:+8.1f} bits  95% CI [{c['lo']:+.1f}, {c['hi']:+.1f}]"
             f"  {s['control_verdict']} (±{s['delta_bits_per_label']} bits/label)",
             f"  vs TF-IDF + logistic regression   {r['bits']:+8.1f} bits  95% CI [{r['lo']:+.1f}, {r['hi']:+.1f}]",
             f"  essay KL(q0‖qP) {s['essay_kl']:.3f} bits/example; held-out gain {s['heldout_gain']:+.3f} bits/example"]
    if s["proxies"]:
        lines.append("  proxies (frozen features): " + "; ".join(
            f"{k}: LogME {v['logme']:+.3f}, H-score {v['h_score']:.2f}" for k, v in s["proxies"].items()))
    return "\n".join(lines)


def config_for(model: str, data, *, table: tuple | None = None, **options) -> GainConfig:
    """A validated GainConfig: the model checked and hashed, the table read (or `table`, the (texts, labels,
    classes) `read_table` gave for `data`), checked and hashed. The table is kept for `_gain` (`_table`)."""
    import dataclasses
    base = PRESETS["gain_experiment"]["full" if options.get("mode") == "finetune" else "smoke"]
    cfg = dataclasses.replace(base, **{k: v for k, v in options.items() if v is not None})
    if cfg.mode not in ("probe", "finetune"):
        raise GainError(f"--mode must be probe or finetune, not {cfg.mode!r}")
    if not cfg.seeds:
        raise GainError("--seeds must be at least 1")
    if cfg.max_examples < 1 or cfg.max_len < 1:
        raise GainError("--max-examples and --max-len must be positive")
    if cfg.n_test < 1:
        raise GainError("--n-test must be at least 1")
    name, model_sha = check_model(model)
    texts, y, classes = table or read_table(data, cfg.text_col, cfg.label_col)
    n = min(cfg.max_examples, len(y) - min(cfg.n_test, len(y) // 5))
    protocol(n, len(classes), cfg.mode)  # raises when there are too few rows
    sha = _sha_rows(texts, y, classes)
    _remember(sha, (texts, y, classes))
    return dataclasses.replace(cfg, model=name, model_sha=model_sha, data=str(Path(data).resolve()), data_sha=sha)


def gain(model: str, data, *, profile: str = "smoke", force: bool = False, **options) -> dict:
    """ΔL = L_preq(θ0) − L_preq(θP) of `model` on `data`, cached in the results store; returns
    `summarize(...)` with the raw result under "result". See the module docstring for the arguments."""
    from decoupling.pipeline import store
    table = None
    if not isinstance(data, (str, Path)):
        data, table = _saved(data, options.get("text_col") or "text", options.get("label_col") or "label")
        options = {**options, "text_col": "text", "label_col": "label"}
    cfg = config_for(model, data, table=table, **options)
    rec = store.run(gain_experiment, cfg, profile=profile, force=force)
    return {**summarize(rec.value), "result": rec.value, "cache_hit": rec.cache_hit, "config": cfg}


# ================================================================================== over the book's targets
def book_targets() -> tuple[str, ...]:
    from decoupling import data
    return tuple(t for t in data.TASKS if not t.startswith("digits"))


def score(model: str, profile: str = "smoke", **options) -> dict:
    """`gain` on every text target of the book (its train and test rows together; `gain` draws its own
    test split); the generality score is ΔL per label averaged over targets, with a CI that resamples
    targets (a t interval over the target means, `intervals.clustered_ci`). `options` as for `gain` (mode, seeds,
    max_examples, n_test, max_len, force)."""
    import pandas as pd
    from decoupling import data
    from decoupling.progress import report
    per_target, out = {}, {}
    for t in book_targets():
        arr = data.arrays(t)
        texts = [*arr["train"][0], *arr["test"][0]]
        labels = np.concatenate([arr["train"][1], arr["test"][1]])
        s = gain(model, pd.DataFrame({"text": texts, "label": labels}), profile=profile, **options)
        per_target[t] = (np.array(s["result"]["runs"][SCRATCH]["L"]) -
                         np.array(s["result"]["runs"][PRETRAINED]["L"])) / s["n"]
        out[t] = {"dL": s["dL"], "control_dL": s["control_dL"], "control_verdict": s["control_verdict"],
                  "dL_vs_reference": s["dL_vs_reference"], "n": s["n"], "K": s["K"], "seeds": s["seeds"],
                  "cache_hit": s["cache_hit"]}
        report(f"[score] {t}: ΔL {s['dL']['per_label']:+.3f} bits/label ({'stored' if s['cache_hit'] else 'computed'})")
    return {"model": model, "mode": s["mode"], "profile": profile, "targets": out,
            "score": {**intervals.clustered_ci(per_target).as_dict(), "unit": "bits/label", "targets": len(out)},
            "delta_bits_per_label": DELTA_BITS}
