"""Chapter 2, "Memory and control" (book/memory.md): context-gated retrieval, p(output | input, task), and
the move from retrieving memorized tasks to general in-context learning.

Three experiments, each a plain function of a frozen config returning a JSON-able dict:

1. `context_gating` — the context-guided object-memory task of Place, Farovik, Brockmann & Eichenbaum
   (Nature Neuroscience 19:992, 2016) as a model. A fixed store of episodes (object, context) -> response,
   read by attention, plays the hippocampus; a controller that sees only the context (the prefrontal
   cortex) multiplies each stored episode's retrieval weight by a learned gate in (0, 1). Objects demand
   a different response in each of K contexts (a Latin square), so without the context the response is
   unknowable: I(Y;T|X) = log2 K bits by construction. Three conditions: gated; gate lesioned at test;
   trained and tested with no controller at all.
2. `task_token` — a small GPT-2 classifier trained on several tasks over the same inputs, the task given by
   a first token: p(output | input, task) (Radford et al. 2019). Accuracy with the right, a wrong and no
   task token, and I(Y;T|X) measured from the model. `prompting` sets the task written as text in the
   input (its name, spelled in letter tokens) against the task token, same tasks, size and steps.
3. `icl_diversity` — in-context linear regression (Garg et al. 2022, tiny config) pretrained on M tasks;
   on unseen tasks, is the model closer to the Bayes predictor over the M memorized tasks (dMMSE) or to
   ridge regression (the Bayes predictor for the Gaussian task prior)? Raventós et al. 2023 found a
   threshold in M between the two.

Information is in bits throughout. Seeds are a sweep dimension; claims use Student-t CIs over seeds.

Longer than 500 lines on purpose: one chapter's four experiments, of which two (`task_token`, `prompting`)
share their tasks, inputs and split; split apart, each half would import the other's private helpers.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from decoupling.core import batched, intervals, measures, models, train
from decoupling.core.device import DEVICE, cpu_threads
from decoupling.progress import bar

LOG2E = measures.LOG2E


def _single_threaded(fn):
    @functools.wraps(fn)
    def wrapper(cfg):
        with cpu_threads(1):
            return fn(cfg)
    return wrapper


def task_information_bits(q) -> float:
    """I(Ŷ;T|X) in bits of a predictor q(y|x,t), an array (n_x, n_t, C), with X uniform over the rows and T
    uniform and independent of X: measures.conditional_mi_bits with p(x,t) uniform, which then reads

        I(Ŷ;T|X) = E_x [ H( mean_t q(·|x,t) ) − mean_t H( q(·|x,t) ) ]

    (the Jensen–Shannon divergence among the per-task predictions, averaged over inputs). It is ≤ log2 n_t,
    with equality iff every input's per-task predictions are deterministic and pairwise different — what a
    perfect model of K conflicting tasks gives. For the data's own one-hot q(y|x,t) it is I(Y;T|X)."""
    q = np.asarray(q, dtype=np.float64)
    return measures.conditional_mi_bits(q, np.ones(q.shape[:2]))


def ci_over_seeds(values, level: float = 0.95) -> tuple[float, float]:
    """Student-t CI of the mean over per-seed values (core.intervals.mean_ci): with the three to five
    seeds of these runs a percentile bootstrap would cover too rarely. One seed: (NaN, NaN), no interval."""
    c = intervals.mean_ci(values, level)
    return c.lo, c.hi


# ================================================================================== 1. context-gated memory
@dataclass(frozen=True)
class GatingConfig:
    """Reaches with-context accuracy ≈ 1 and no-context 1/K on conflicting objects, I(Ŷ;T|X) ≈ log2 K.
    smoke: ~6 s on one CPU thread; full (72 objects, K up to 16, 8 seeds): ~6 CPU-minutes (`--count`)."""
    n_objects: int = 16  # conflicting objects: a different response is rewarded in each context
    n_fixed: int = 4  # control objects whose rewarded response is the same in every context
    contexts: tuple[int, ...] = (2, 4, 8)  # K swept; K = 2 is Place et al.'s design (object A in context 1, B in 2)
    dim: int = 32  # width of the random object and context codes (nearly orthogonal at this width)
    steps: int = 200  # full-batch Adam steps (the task is tiny: (n_objects + n_fixed)·K episodes)
    lr: float = 0.05
    floor: float = 1e-3  # q = (retrieved + floor)/(1 + C·floor): keeps log-loss finite when attention is sharp
    seeds: tuple[int, ...] = (0, 1, 2)


class ContextGatedMemory(nn.Module):
    """Hippocampus + prefrontal controller, small and explicit.

    Memory: M stored episodes m with an object code k_obj[m], a context tag k_ctx[m] and a one-hot response
    v[m] (buffers: stored, not learned). A probe (object x, context t) retrieves by attention

        a_m ∝ g_m · exp(β o_x · k_obj[m])                  (recognition: similarity to the stored object)
        g_m = σ(c_t^T W_c k_ctx[m] + b)                     (the controller's gate, in (0, 1))

    and answers with the retrieved responses q(y|x,t) = Σ_m a_m v_m (plus a small floor). With the gate
    lesioned (g ≡ 1) the K episodes of an object get equal weight, whatever the context.

    Recognition is plain similarity with one learned sharpness β, not a learned query matrix: a matrix
    could learn to route object x to *any* episode whose stored response happens to be right (a lookup
    table in the weights), and retrieval precision would then measure nothing.
    """

    def __init__(self, obj_codes, ctx_codes, mem_obj, mem_ctx, mem_y, n_classes: int, floor: float, gate: bool):
        super().__init__()
        dim = obj_codes.shape[1]
        self.register_buffer("obj_codes", obj_codes)  # (N, d)
        self.register_buffer("ctx_codes", ctx_codes)  # (K, d)
        self.register_buffer("k_obj", obj_codes[mem_obj])  # (M, d)
        self.register_buffer("k_ctx", ctx_codes[mem_ctx])  # (M, d)
        self.register_buffer("values", F.one_hot(mem_y, n_classes).float())  # (M, C)
        self.log_beta = nn.Parameter(torch.zeros(()))  # β = 1 at init: object codes barely separate
        # Zero init of the controller: the gate starts at 1/2 everywhere, so whatever filtering appears is
        # learned from the reward signal, not built into the initialisation.
        self.W_c = nn.Parameter(torch.zeros(dim, dim)) if gate else None
        self.b_c = nn.Parameter(torch.zeros(())) if gate else None
        self.floor, self.n_classes = floor, n_classes
        self.lesioned = False  # set True to cut the controller at test time (g ≡ 1)

    def attention(self, probe: torch.Tensor) -> torch.Tensor:
        """Retrieval weights (B, M) for probes (B, 2) = (object index, context index)."""
        scores = self.log_beta.exp() * self.obj_codes[probe[:, 0]] @ self.k_obj.T  # (B, M)
        if self.W_c is not None and not self.lesioned:
            c = self.ctx_codes[probe[:, 1]] @ self.W_c  # (B, d): the context as the controller sends it
            scores = scores + F.logsigmoid(c @ self.k_ctx.T + self.b_c)  # log g_m: a multiplicative gate
        return torch.softmax(scores, dim=-1)

    def forward(self, probe: torch.Tensor) -> torch.Tensor:
        p = self.attention(probe) @ self.values  # (B, C): a mixture of the retrieved responses
        p = (p + self.floor) / (1 + self.n_classes * self.floor)
        return torch.log(p)  # normalised log-probabilities: cross-entropy on them is −log q(y|x,t)


def gating_task(cfg: GatingConfig, K: int, seed: int) -> dict:
    """Codes, stored episodes and probes for K contexts. Conflicting object i demands response (i + t) mod K
    in context t (a Latin square: each object's K contexts demand K different responses, and each response is
    rewarded equally often, so the object alone carries no information about it); fixed object j always
    demands response j mod K."""
    g = torch.Generator().manual_seed(10_000 * K + seed)
    n_obj = cfg.n_objects + cfg.n_fixed
    obj_codes = torch.randn(n_obj, cfg.dim, generator=g) / math.sqrt(cfg.dim)  # (N, d), |o| ≈ 1
    ctx_codes = torch.randn(K, cfg.dim, generator=g) / math.sqrt(cfg.dim)  # (K, d)
    obj, ctx = torch.meshgrid(torch.arange(n_obj), torch.arange(K), indexing="ij")
    obj, ctx = obj.reshape(-1), ctx.reshape(-1)  # one stored episode per (object, context)
    y = torch.where(obj < cfg.n_objects, (obj + ctx) % K, obj % K)
    return {"obj_codes": obj_codes, "ctx_codes": ctx_codes, "probe": torch.stack([obj, ctx], 1), "y": y,
            "conflicting": obj < cfg.n_objects}


@torch.no_grad()
def _gating_metrics(model: ContextGatedMemory, task: dict, K: int) -> dict:
    """Behaviour and retrieval statistics on every probe (the memory task has no held-out set: it is
    recall of stored episodes). Accuracy is the expected fraction correct of a responder that samples its
    choice from q(y|x,t) — no tie-breaking rule, which matters exactly when q is flat."""
    model.eval()
    probe, y, c = task["probe"], task["y"], task["conflicting"]
    logq = model(probe).double()  # (P, C)
    q = logq.exp()
    a = model.attention(probe).double()  # (P, M); memory m = probe m (same enumeration)
    p_correct = q.gather(1, y[:, None]).squeeze(1)  # (P,)
    ties = (q >= q.max(1, keepdim=True).values - 1e-6).double()  # argmax accuracy, ties split evenly
    argmax_acc = ties.gather(1, y[:, None]).squeeze(1) / ties.sum(1)
    same_obj = probe[:, None, 0] == probe[None, :, 0]  # (P, M): episodes of the probed object
    target = torch.eye(len(probe), dtype=torch.bool)  # the episode (x, t) itself
    H = torch.from_numpy(measures.entropy_bits(a.numpy()))  # (P,) attention entropy over all M memories
    return {
        "acc": float(p_correct[c].mean()), "acc_fixed": float(p_correct[~c].mean()),
        "argmax_acc": float(argmax_acc[c].mean()),
        "logloss_bits": float((-logq[c].gather(1, y[c][:, None]) * LOG2E).mean()),
        "task_bits": task_information_bits(q[c].view(-1, K, K)),  # probes enumerate object-major
        "attn_entropy_bits": float(H[c].mean()),
        "precision": float(a[target][c].mean()),  # retrieval precision: weight on the right episode
        "mass_same_object_other_context": float((a * (same_obj & ~target)).sum(1)[c].mean()),
        "mass_other_objects": float((a * ~same_obj).sum(1)[c].mean()),
    }


@_single_threaded
def context_gating(cfg: GatingConfig) -> dict:
    """Train the gated memory and the memory with no controller for every K and seed (the seeds of one K
    train together, batched.train_many); measure each with the gate on, the gate lesioned at test time, and
    without a controller. Chapter 2, figure memory-gating."""
    runs = []
    tcfg = train.TrainConfig(steps=cfg.steps, batch_size=10**9, lr=cfg.lr, weight_decay=0.0, warmup_frac=0.0,
                             grad_clip=0.0, progress=False)  # full batch: every stored episode every step
    for K in bar(cfg.contexts, desc="memory: gating (K)"):
        tasks = [gating_task(cfg, K, s) for s in cfg.seeds]
        trained = {}
        for name, gate in (("gated", True), ("no_context", False)):
            def make(seed, gate=gate):
                t = tasks[cfg.seeds.index(seed)]
                return ContextGatedMemory(t["obj_codes"], t["ctx_codes"], t["probe"][:, 0], t["probe"][:, 1],
                                          t["y"], K, cfg.floor, gate)
            trained[name] = batched.train_many(make, cfg.seeds, lambda k: ((tasks[k]["probe"],), tasks[k]["y"]),
                                               tcfg, desc=f"memory: gating K={K} {name}")
        for k, (seed, task) in enumerate(zip(cfg.seeds, tasks)):
            row = {"K": K, "seed": seed, "log2K": math.log2(K),
                   # the data's own I(Y;T|X): one-hot q over the conflicting objects (= log2 K by design)
                   "data_task_bits": task_information_bits(
                       F.one_hot(task["y"][task["conflicting"]], K).double().view(-1, K, K))}
            for name, many in trained.items():
                m = many.member(k)
                row[name] = _gating_metrics(m, task, K)
                row[name]["train_loss_bits"] = [v * LOG2E for v in many.results[k]["loss"][:: max(1, cfg.steps // 50)]]
                if name == "gated":
                    m.lesioned = True  # the same trained weights, controller cut
                    row["lesioned"] = _gating_metrics(m, task, K)
            # variational reading of I(Y;T|X) = H(Y|X) − H(Y|X,T): the log-loss a model without the context
            # pays minus the log-loss of the gated one (each an upper bound on its conditional entropy)
            row["logloss_gap_bits"] = row["no_context"]["logloss_bits"] - row["gated"]["logloss_bits"]
            runs.append(row)
    return {"runs": runs, "contexts": list(cfg.contexts), "seeds": list(cfg.seeds)}


context_gating.runs_on_cpu = True  # `full` is sized for a CPU (GATING): no GPU needed


# ================================================================================== 2. p(output | input, task)
TASKS = {  # four functions of the same input sequence, each with an answer in the symbol alphabet
    "first": lambda x: x[:, 0],
    "last": lambda x: x[:, -1],
    "max": lambda x: x.max(1).values,
    "min": lambda x: x.min(1).values,
}


@dataclass(frozen=True)
class TaskTokenConfig:
    """smoke (2 layers, d=32, 3 seeds batched, 300 steps): right-token accuracy ≈ 0.95-0.98, wrong ≈ 0.24 on
    held-out inputs, ~8 s on one quiet CPU thread. full (3 layers, d=64, 10 symbols × 5, 5 seeds, 1500 steps
    of 128): ~4 CPU-minutes (`--count`); a longer run at width 128 (3000 steps of 256) reached right-token
    accuracy 1.000, wrong 0.186, and the model's I(Ŷ;T|X) equal to the data's 1.46 bits."""
    n_symbols: int = 8  # alphabet of the input sequence and of the answer
    length: int = 4  # input length: n_symbols**length distinct inputs, all enumerated
    tasks: tuple[str, ...] = ("first", "last", "max", "min")  # keys of TASKS
    test_frac: float = 0.25  # inputs held out: accuracies are measured on inputs never trained on
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 32
    steps: int = 400
    batch_size: int = 128
    lr: float = 3e-3
    seeds: tuple[int, ...] = (0, 1, 2)


def _task_token_data(cfg: TaskTokenConfig, seed: int) -> dict:
    """Token ids: 0 pad (unused), 1..S the symbols, then one token per task, then the null ("no task") token.
    A sequence is [task token, x_1 .. x_L]; the classifier reads the last position, which sees the task token
    through causal attention."""
    S, L, T = cfg.n_symbols, cfg.length, len(cfg.tasks)
    X = torch.cartesian_prod(*[torch.arange(S)] * L).reshape(-1, L)  # (S^L, L) every input
    Y = torch.stack([TASKS[t](X) for t in cfg.tasks], 1)  # (S^L, T): answer of each task
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    n_test = int(cfg.test_frac * len(X))
    return {"X": X, "Y": Y, "test": perm[:n_test], "train": perm[n_test:], "task_tok": 1 + S + torch.arange(T),
            "null_tok": 1 + S + T, "vocab": 2 + S + T}


def _with_token(X: torch.Tensor, tok) -> torch.Tensor:
    tok = torch.as_tensor(tok).expand(len(X))
    return torch.cat([tok[:, None], 1 + X], 1)  # (B, 1 + L)


@_single_threaded
def task_token(cfg: TaskTokenConfig) -> dict:
    """Train one multitask model per seed on every (train input, task) with its task token, and on every
    (train input, task) with the null token instead — so the null token's best answer is the mixture over
    tasks, p(y|x) = mean_t p(y|x,t), and its log-loss estimates H(Y|X). Then read every held-out input under
    each task token and the null token. Chapter 2, figure memory-task-token."""
    runs = []
    T = len(cfg.tasks)
    data = [_task_token_data(cfg, s) for s in cfg.seeds]

    def train_set(k):
        d = data[k]
        Xtr, Ytr = d["X"][d["train"]], d["Y"][d["train"]]
        ids = torch.cat([_with_token(Xtr, d["task_tok"][t]) for t in range(T)] + [_with_token(Xtr, d["null_tok"])] * T)
        return (ids, torch.ones_like(ids)), torch.cat([Ytr[:, t] for t in range(T)] * 2)

    mcfg = models.ModelConfig(n_layer=cfg.n_layer, n_head=cfg.n_head, d_model=cfg.d_model,
                              vocab_size=data[0]["vocab"], block_size=1 + cfg.length)
    many = batched.train_many(lambda s: models.build_classifier(mcfg, num_labels=cfg.n_symbols, seed=s),
                              cfg.seeds, train_set, train.TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size,
                                                                      lr=cfg.lr, progress=False),
                              desc="memory: task token")
    toks = [*range(T), None]  # every task token, then the null token
    lqs = [many.predict_log_proba(lambda k, tok=tok: (
        _with_token(data[k]["X"][data[k]["test"]], data[k]["null_tok"] if tok is None else data[k]["task_tok"][tok]),
        torch.ones(len(data[k]["test"]), 1 + cfg.length, dtype=torch.long))) for tok in toks]  # [token][seed]
    for k, seed in enumerate(cfg.seeds):
        d, hist = data[k], many.results[k]
        Yte = d["Y"][d["test"]]  # (n, T)
        logq = torch.stack([torch.from_numpy(lqs[j][k]) for j in range(len(toks))], 1)  # (n, T+1, S): col T = null
        q = logq.exp()
        pred = q.argmax(-1)  # (n, T+1)
        hit = pred[:, :T, None] == Yte[:, None, :]  # (n, token, task): token t' answered task t's question
        right = hit.diagonal(dim1=1, dim2=2).double().mean()
        off = ~torch.eye(T, dtype=torch.bool)
        wrong = hit[:, off].double().mean()  # answer under a wrong token, scored against the asked task
        none = (pred[:, T, None] == Yte).double().mean()
        ce_right = -logq[:, :T].gather(2, Yte[:, :, None]).mean() * LOG2E
        ce_null = -logq[:, T, :].gather(1, Yte).mean() * LOG2E
        # what a perfect model scores: tasks agree on some inputs, so a wrong token is sometimes right
        agree = (Yte[:, :, None] == Yte[:, None, :])[:, off].double().mean()
        counts = F.one_hot(Yte, cfg.n_symbols).double().mean(1)  # (n, S): p(y|x) with T uniform
        runs.append({
            "seed": seed, "acc_right": float(right), "acc_wrong": float(wrong), "acc_none": float(none),
            "margin": float(right - wrong),
            "acc_wrong_ceiling": float(agree),  # a perfect task-follower's wrong-token accuracy
            "acc_none_ceiling": float(counts.max(1).values.mean()),  # Bayes accuracy without the task
            "data_task_bits": float(measures.entropy_bits(counts.numpy()).mean()),  # = H(Y|X): H(Y|X,T) = 0
            "model_task_bits": task_information_bits(q[:, :T].numpy()),
            "logloss_gap_bits": float(ce_null - ce_right),  # H(Y|X) − H(Y|X,T), variational
            "ce_right_bits": float(ce_right), "ce_null_bits": float(ce_null),
            "per_task_acc_right": hit.diagonal(dim1=1, dim2=2).double().mean(0).tolist(),
            "train_loss": hist["loss"][:: max(1, cfg.steps // 50)],
        })
    return {"runs": runs, "tasks": list(cfg.tasks), "seeds": list(cfg.seeds)}


task_token.runs_on_cpu = True  # `full` is sized for a CPU (TASK_TOKEN): no GPU needed


# ================================================================================== 2b. the task as a prompt
@dataclass(frozen=True)
class PromptConfig(TaskTokenConfig):
    """The task named in words inside the input against the task token (Radford et al. 2019 give the task as
    text in the input): the same tasks, inputs, split, model size and steps for both; 5 seeds, each seed's two
    models trained together (one batched run of 2 × seeds members). The name is spelled with letter tokens
    ("max" and "min" share a letter, "first" and "last" two), so one token does not name the task; the token
    model's sequences carry the same number of filler tokens before the task token, so the two models see
    sequences of one length. The task-token experiment's fields (tasks: keys of TASKS, each prompt is its key
    spelled out), its own training budget. smoke: about 2 s a seed on one quiet CPU thread."""
    steps: int = 200
    batch_size: int = 32
    lr: float = 6e-3
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)


def _prompt_vocab(cfg: PromptConfig) -> dict:
    """Token ids: 0 pad (unused), 1..S symbols, one token per task, then the letters of the task names and a
    filler (a space). Each task's prefix, as the prompt arm and the token arm see it, has one length:
    the name left-filled with spaces, or spaces and the task token."""
    S, T = cfg.n_symbols, len(cfg.tasks)
    letters = sorted({ch for t in cfg.tasks for ch in t})
    lid = {ch: 1 + S + T + i for i, ch in enumerate(letters)}
    space = 1 + S + T + len(letters)
    width = max(map(len, cfg.tasks))
    prompt = [[space] * (width - len(t)) + [lid[ch] for ch in t] for t in cfg.tasks]
    token = [[space] * (width - 1) + [1 + S + i] for i in range(T)]
    return {"prompt": torch.tensor(prompt), "token": torch.tensor(token), "vocab": space + 1, "width": width}


@_single_threaded
def prompting(cfg: PromptConfig) -> dict:
    """Per seed, two multitask models of one size trained for the same steps on the same (train input, task)
    pairs: one told the task by its token, one by its name written in the input. Both are read on every
    held-out input under every task: accuracy, log-loss and I(Ŷ;T|X) in bits, and the paired difference
    (prompt − token). Chapter 2, figure memory-prompting."""
    T = len(cfg.tasks)
    voc = _prompt_vocab(cfg)
    data = [_task_token_data(cfg, s) for s in cfg.seeds]  # the task-token experiment's inputs and split
    arms = ("token", "prompt")
    members = [(arm, k) for arm in arms for k in range(len(cfg.seeds))]  # member m: (arm, seed index)

    def seqs(arm, X, t):
        pre = voc[arm][t].expand(len(X), -1)
        return torch.cat([pre, 1 + X], 1)  # (B, width + L)

    def train_set(m):
        arm, k = members[m]
        d = data[k]
        Xtr, Ytr = d["X"][d["train"]], d["Y"][d["train"]]
        ids = torch.cat([seqs(arm, Xtr, t) for t in range(T)])
        return (ids, torch.ones_like(ids)), torch.cat([Ytr[:, t] for t in range(T)])

    mcfg = models.ModelConfig(n_layer=cfg.n_layer, n_head=cfg.n_head, d_model=cfg.d_model, vocab_size=voc["vocab"],
                              block_size=voc["width"] + cfg.length)
    seeds = [cfg.seeds[k] for _, k in members]  # the two arms of a seed share its init seed and data order
    many = batched.train_many(lambda s: models.build_classifier(mcfg, num_labels=cfg.n_symbols, seed=s), seeds,
                              train_set, train.TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                                                           progress=False), desc="memory: prompting")
    lqs = [many.predict_log_proba(lambda m, t=t: (
        seqs(members[m][0], data[members[m][1]]["X"][data[members[m][1]]["test"]], t),
        torch.ones(len(data[members[m][1]]["test"]), voc["width"] + cfg.length, dtype=torch.long)))
        for t in range(T)]  # [task][member]: (n_test, S)
    runs = []
    for k, seed in enumerate(cfg.seeds):
        d = data[k]
        Yte = d["Y"][d["test"]]  # (n, T)
        row = {"seed": seed}
        for arm in arms:
            m = members.index((arm, k))
            logq = torch.stack([torch.from_numpy(lqs[t][m]) for t in range(T)], 1)  # (n, T, S)
            q = logq.exp()
            row[arm] = {"acc": float((q.argmax(-1) == Yte).double().mean()),
                        "logloss_bits": float(-logq.gather(2, Yte[:, :, None]).mean() * LOG2E),
                        "task_bits": task_information_bits(q.numpy()),
                        "per_task_acc": (q.argmax(-1) == Yte).double().mean(0).tolist(),
                        "train_loss_first": float(np.mean(many.results[m]["loss"][:10])),
                        "train_loss_last": float(np.mean(many.results[m]["loss"][-10:]))}
        counts = F.one_hot(Yte, cfg.n_symbols).double().mean(1)
        row["data_task_bits"] = float(measures.entropy_bits(counts.numpy()).mean())  # I(Y;T|X) of the data
        row["acc_none_ceiling"] = float(counts.max(1).values.mean())  # Bayes accuracy with no task given
        row["acc_gap"] = row["prompt"]["acc"] - row["token"]["acc"]
        row["bits_gap"] = row["prompt"]["task_bits"] - row["token"]["task_bits"]
        runs.append(row)
    return {"runs": runs, "tasks": list(cfg.tasks), "seeds": list(cfg.seeds),
            "prompts": {t: t for t in cfg.tasks}}


prompting.runs_on_cpu = True  # `full` is sized for a CPU (PROMPTING): no GPU needed


# ================================================================================== 3. retrieval vs learning
@dataclass(frozen=True)
class ICLConfig:
    """In-context linear regression y = w·x + ε, x ~ N(0, I_d), w ~ N(0, I_d), ε ~ N(0, σ²) (Garg et al. 2022;
    Raventós et al. 2023 use d = 8, σ² = 0.25). Pretraining draws w uniformly from a fixed pool of M tasks.
    smoke (150 steps, ~4 s on one CPU thread) is far too short to leave the plateau at M > 1; full is Raventós et al.'s
    d = 8 with Garg et al.'s tiny model (3 layers, width 64, 2 heads), 15 runs batched (ICL)."""
    dim: int = 4  # d
    n_points: int = 8  # (x, y) pairs per sequence; the model predicts y_i from the pairs before i and x_i
    noise_var: float = 0.25  # σ²
    diversities: tuple[int, ...] = (1, 4, 16, 256)  # M, the number of pretraining tasks
    n_layer: int = 2  # smoke; full uses Garg et al.'s tiny config: 3 layers, width 64, 2 heads
    n_head: int = 2
    width: int = 32
    steps: int = 300
    batch_size: int = 32
    lr: float = 2e-3
    n_eval: int = 256  # unseen-task sequences (the same ones for every M and seed: paired comparisons)
    seeds: tuple[int, ...] = (0,)


class ICLRegressor(nn.Module):
    """Garg et al. 2022: tokens x_1, y_1, x_2, y_2, … as (d+1)-vectors ([x, 0] and [0, y]), a linear read-in
    to a GPT-2 body (transformers.GPT2Model through inputs_embeds), a linear read-out at the x positions."""

    def __init__(self, cfg: ICLConfig):
        super().__init__()
        from transformers import GPT2Config, GPT2Model
        hf = GPT2Config(vocab_size=1, n_positions=2 * cfg.n_points, n_embd=cfg.width, n_layer=cfg.n_layer,
                        n_head=cfg.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False,
                        bos_token_id=None, eos_token_id=None, activation_function="gelu_pytorch_tanh",
                        attn_implementation="sdpa")  # vmapped by decoupling.core.batched on SDPA's math path
        self.read_in = nn.Linear(cfg.dim + 1, cfg.width)
        self.body = GPT2Model(hf)
        self.read_out = nn.Linear(cfg.width, 1)

    def forward(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        B, n, d = xs.shape
        x_tok = F.pad(xs, (0, 1))  # (B, n, d+1): [x, 0]
        y_tok = F.pad(ys[..., None], (d, 0))  # (B, n, d+1): [0, y]
        z = torch.stack([x_tok, y_tok], 2).reshape(B, 2 * n, d + 1)  # x_1, y_1, x_2, y_2, ...
        h = self.body(inputs_embeds=self.read_in(z)).last_hidden_state  # (B, 2n, C)
        return self.read_out(h[:, 0::2]).squeeze(-1)  # (B, n): prediction of y_i at x_i's position


def _regression_batch(W: torch.Tensor, n: int, noise_var: float, g: torch.Generator):
    """xs (B, n, d), ys (B, n) for task vectors W (B, d)."""
    xs = torch.randn(W.shape[0], n, W.shape[1], generator=g, device=W.device)
    ys = torch.einsum("bnd,bd->bn", xs, W) + math.sqrt(noise_var) * torch.randn(W.shape[0], n, generator=g,
                                                                                 device=W.device)
    return xs, ys


@torch.no_grad()
def ridge_predictions(xs: torch.Tensor, ys: torch.Tensor, noise_var: float) -> torch.Tensor:
    """Posterior-mean prediction under w ~ N(0, I), the Bayes predictor for the Gaussian task prior (the
    general learner): ŷ_i = x_i·(X_{<i}^T X_{<i} + σ² I)^{-1} X_{<i}^T y_{<i}, for every prefix i."""
    xs, ys = xs.double(), ys.double()
    d = xs.shape[-1]
    xx = torch.cumsum(xs[..., :, None] * xs[..., None, :], 1) - xs[..., :, None] * xs[..., None, :]  # (B, n, d, d)
    xy = torch.cumsum(xs * ys[..., None], 1) - xs * ys[..., None]  # (B, n, d): sums over the points before i
    w = torch.linalg.solve(xx + noise_var * torch.eye(d, dtype=xs.dtype, device=xs.device), xy)
    return (w * xs).sum(-1).float()


@torch.no_grad()
def dmmse_predictions(xs: torch.Tensor, ys: torch.Tensor, pool: torch.Tensor, noise_var: float) -> torch.Tensor:
    """Posterior-mean prediction under the discrete prior uniform on the M pretraining tasks (Raventós et al.'s
    dMMSE, the memorized-task Bayes predictor): ŷ_i = Σ_j π_j(i) w_j·x_i with
    π_j(i) ∝ exp(−Σ_{k<i} (y_k − w_j·x_k)² / 2σ²). Chunked so (B, n, M) fits in memory."""
    out = []
    chunk = max(1, (1 << 22) // (xs.shape[1] * pool.shape[0]))
    for i in range(0, len(xs), chunk):
        x, y = xs[i:i + chunk].double(), ys[i:i + chunk].double()
        pred = x @ pool.double().T  # (b, n, M): every memorized task's prediction
        sq = (y[..., None] - pred) ** 2
        logw = -(torch.cumsum(sq, 1) - sq) / (2 * noise_var)  # (b, n, M): log-likelihood of the prefix
        out.append((torch.softmax(logw, -1) * pred).sum(-1).float())
    return torch.cat(out)


def _mse(a: torch.Tensor, b: torch.Tensor, d: int) -> torch.Tensor:
    """Squared difference per position, averaged over sequences and divided by d (Garg et al.'s scale)."""
    return ((a - b) ** 2).mean(0) / d  # (n,)


@_single_threaded
def icl_diversity(cfg: ICLConfig) -> dict:
    """For every M and seed: pretrain a model on sequences whose task is drawn from a pool of M tasks, then
    compare its predictions on unseen tasks with dMMSE (retrieval of memorized tasks) and ridge (general
    learning). Δ = mean squared distance between predictions (Raventós et al. 2023, figure 1). All (M, seed)
    runs train together as one batched run (decoupling.core.batched: each member has its own init, task pool
    and data, its own loss and optimizer state). Chapter 2, figure memory-icl."""
    d, n, s2 = cfg.dim, cfg.n_points, cfg.noise_var
    runs = [(M, seed) for M in cfg.diversities for seed in cfg.seeds]
    E_, Ms = len(runs), torch.tensor([M for M, _ in runs], device=DEVICE)
    pools = torch.zeros(E_, max(cfg.diversities), d, device=DEVICE)  # (E, M_max, d), member e uses [:M_e]
    for e, (M, seed) in enumerate(runs):
        gp = torch.Generator(device=DEVICE).manual_seed(1_000_003 * seed + M)
        pools[e, :M] = torch.randn(M, d, generator=gp, device=DEVICE)
    many = batched.stack(lambda s: models.seeded(s, lambda: ICLRegressor(cfg)), [seed for _, seed in runs])
    g = torch.Generator(device=DEVICE).manual_seed(int(np.random.SeedSequence(cfg.seeds).generate_state(1)[0]))

    def draw(B):  # (E, B, n, d), (E, B, n): each member's tasks drawn uniformly from its own pool
        idx = (torch.rand(E_, B, generator=g, device=DEVICE) * Ms[:, None]).long()
        W = pools.gather(1, idx[..., None].expand(E_, B, d))  # (E, B, d)
        xs = torch.randn(E_, B, n, d, generator=g, device=DEVICE)
        ys = torch.einsum("ebnd,ebd->ebn", xs, W) + math.sqrt(s2) * torch.randn(E_, B, n, generator=g, device=DEVICE)
        return xs, ys

    def member_loss(forward, xs, ys):
        return F.mse_loss(forward(xs, ys).float(), ys)

    n_params = sum(p[0].numel() for p in many.params.values())  # 6N FLOPs per token, 2n tokens a sequence
    tcfg = train.TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=0.0,
                             seed=cfg.seeds[0], progress=False)
    batched.train_stacked(many, member_loss, lambda step: draw(cfg.batch_size), tcfg, cfg.batch_size * n,
                          6.0 * n_params * 2 * n * cfg.batch_size, "example", f"memory: ICL ({E_} runs)")
    hist = many.results

    # Evaluation: one unseen-task set shared by every run (paired comparisons across M and seeds)
    g_eval = torch.Generator(device=DEVICE).manual_seed(999_983)
    W_eval = torch.randn(cfg.n_eval, d, generator=g_eval, device=DEVICE)
    xs_e, ys_e = _regression_batch(W_eval, n, s2, g_eval)
    ridge = ridge_predictions(xs_e, ys_e, s2)
    xs_s, ys_s = draw(cfg.n_eval)  # each member's own pretraining tasks, fresh sequences
    f = many.forward(xs_e, ys_e, shared=True).float()  # (E, n_eval, n)
    f_seen = many.forward(xs_s, ys_s).float()
    out = []
    for e, (M, seed) in enumerate(runs):
        dm = dmmse_predictions(xs_e, ys_e, pools[e, :M], s2)
        per = {"model": _mse(f[e], ys_e, d), "ridge": _mse(ridge, ys_e, d), "dmmse": _mse(dm, ys_e, d),
               "delta_ridge": _mse(f[e], ridge, d), "delta_dmmse": _mse(f[e], dm, d)}
        L = hist[e]["loss"]
        out.append({
            "M": M, "seed": seed,
            **{k: float(v.mean()) for k, v in per.items()},  # averaged over the n context positions
            **{f"{k}_by_position": v.tolist() for k, v in per.items()},
            "model_seen": float(_mse(f_seen[e], ys_s[e], d).mean()),
            "dmmse_seen": float(_mse(dmmse_predictions(xs_s[e], ys_s[e], pools[e, :M], s2), ys_s[e], d).mean()),
            "train_loss": L[:: max(1, cfg.steps // 50)],  # per-member MSE (not divided by d)
            "train_loss_first": float(np.mean(L[:10])), "train_loss_last": float(np.mean(L[-10:])),
        })
    return {"runs": out, "diversities": list(cfg.diversities), "seeds": list(cfg.seeds), "dim": d,
            "n_points": n, "noise_var": s2}


icl_diversity.runs_on_cpu = True  # `full` is sized for a CPU (ICL): no GPU needed


def diversity_transition(res: dict) -> dict:
    """The retrieval → learning statistic r(M) = log2(Δ_dMMSE / Δ_ridge) per (M, seed): r < 0 means the model's
    predictions on unseen tasks sit closer to the memorized-task Bayes predictor, r > 0 closer to ridge.
    Returns per-M means and t CIs over seeds, and the smallest M whose mean r is > 0 (None if none)."""
    out = {"M": [], "r_mean": [], "r_ci": []}
    for M in res["diversities"]:
        r = [math.log2(x["delta_dmmse"] / x["delta_ridge"]) for x in res["runs"] if x["M"] == M]
        out["M"].append(M)
        out["r_mean"].append(float(np.mean(r)))
        out["r_ci"].append(ci_over_seeds(r))
    out["threshold_M"] = next((M for M, r in zip(out["M"], out["r_mean"]) if r > 0), None)
    return out


# ================================================================================== presets
GATING = {
    "smoke": GatingConfig(),
    "full": GatingConfig(n_objects=64, n_fixed=8, contexts=(2, 3, 4, 8, 16), dim=64, steps=600,
                         seeds=tuple(range(8))),
}
TASK_TOKEN = {
    # smoke trains 300 steps, not 400: right-token accuracy stays ≈ 0.95-0.98, and the chapter keeps its CPU
    # budget with the prompting experiment beside it
    "smoke": TaskTokenConfig(steps=300),
    # full: 10 symbols x 5 positions (100k inputs, a quarter held out), 3 layers of width 64 (under bf16's
    # width threshold: fp32), 1500 steps of 128, 5 seeds batched: a third of the steps and a quarter of the
    # width of the longer run in TaskTokenConfig's docstring
    "full": TaskTokenConfig(n_symbols=10, length=5, n_layer=3, n_head=4, d_model=64, steps=1500,
                            batch_size=128, seeds=tuple(range(5))),
}
ICL = {
    # smoke trains 150 steps: its findings are decided at full, so smoke only illustrates (and checks that
    # M = 1 is memorised, which 150 steps do); the time went to the prompting experiment
    "smoke": ICLConfig(steps=150),
    # full: Raventós et al.'s d = 8 and Garg et al.'s tiny model, M every 16x from 1 to 65536, 3 seeds: 15
    # members batched, 1500 steps of 64 sequences (96k sequences per member, so at M = 65536 a task is seen
    # about once and the pool is in effect the Gaussian prior; the papers train ~500k steps of 64-256, so the
    # transition, if any, is the one this budget reaches). Counted at ~23 CPU-minutes (`--count`).
    "full": ICLConfig(dim=8, n_points=16, diversities=(1, 16, 256, 4096, 65536), n_layer=3,
                      n_head=2, width=64, steps=1500, batch_size=64, n_eval=2048, seeds=(0, 1, 2)),
}
PROMPTING = {
    "smoke": PromptConfig(),
    "full": PromptConfig(n_symbols=10, length=5, n_layer=3, n_head=4, d_model=64, steps=1500, batch_size=128,
                         lr=3e-3, seeds=tuple(range(5))),  # the task token's budget, 2 models a seed: ~14 CPU-min
}
PRESETS = {"context_gating": GATING, "task_token": TASK_TOKEN, "prompting": PROMPTING,
           "icl_diversity": ICL}  # function -> presets
