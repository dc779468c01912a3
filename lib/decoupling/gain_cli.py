"""`decoupling gain` and `decoupling score`: the information gain of your model on your data, from the
command line (the computation lives in `decoupling.experiments.gain`; this module reads arguments,
prints the table and writes JSON + a figure).

    decoupling gain --model minilm --data reviews.csv --out gain-out/
    decoupling score --model path/to/hf-model --out score-out/
    decoupling score --model minilm --seeds 2 --max-examples 32 --n-test 32   # a quick look (minutes)

Python: `from decoupling.experiments.gain import gain; s = gain("minilm", "reviews.csv")`, then `s["dL"]`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from decoupling.args import Parser, at_least
from decoupling.experiments.gain import GainError, gain

__all__ = ["main_gain", "main_score"]


def _figure(s: dict, out: Path) -> Path:
    """Code length per block (bits per label of each block) for θP, θ0, θ0' and the reference."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from decoupling.experiments.gain import CONTROL, PRETRAINED, REFERENCE, SCRATCH
    res = s["result"]
    ends = np.array(res["ends"])
    sizes = np.diff(ends)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    series = {PRETRAINED: res["runs"][PRETRAINED]["block_bits"], SCRATCH: res["runs"][SCRATCH]["block_bits"],
              CONTROL: res["runs"][CONTROL]["block_bits"], REFERENCE: res["reference"]["block_bits"]}
    for name, bb in series.items():
        per = np.mean(np.array(bb)[:, 1:], axis=0) / sizes  # block 1 is the uniform code for everyone
        ax.plot(ends[:-1], per, marker="o", label=name)
    ax.axhline(np.log2(res["K"]), color="grey", ls=":", lw=1, label="uniform")
    ax.set_xscale("log")
    ax.set_xlabel("labels seen before the block")
    ax.set_ylabel("bits per label in the block")
    ax.set_title(f"ΔL = {s['dL']['bits']:+.1f} bits ({s['dL']['per_label']:+.3f}/label)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "gain.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _write(s: dict, out: Path) -> None:
    from decoupling import files
    out.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in s.items() if k != "config"}
    body["config"] = s["config"]
    files.write_json(out / "gain.json", body)
    _figure(s, out)


def _size_options(p) -> None:
    """--max-len and --n-test, shared by `gain` and `score` (the encoder passes scale with both)."""
    p.add_argument("--max-len", type=at_least(1), default=None, help="tokens per text (default 64 probe, 128 finetune)")
    p.add_argument("--n-test", type=at_least(1), default=None,
                   help="rows held out as the fixed test split for the essay's KL and the held-out gain "
                        "(default 200, at most a fifth of the rows); every encoder embeds them")


def main_gain(argv=None) -> int:
    p = Parser(
        prog="decoupling gain",
        description="ΔL = L_preq(θ0) − L_preq(θP): the bits a pretrained model saves in coding the labels "
                    "of your text task, against the same architecture randomly initialised (θ0), with a "
                    "second random init as control (θ0') and TF-IDF + logistic regression as a "
                    "non-pretrained reference. Results are cached: a second run prints at once.")
    p.add_argument("--model", required=True,
                   help="a Hugging Face model directory (config, weights, tokenizer), 'minilm' "
                        "(all-MiniLM-L6-v2, installed) or body:<code|prose|c|…> (a body of the book)")
    p.add_argument("--data", required=True, help="CSV / TSV / JSONL / JSON / Parquet file or a saved `datasets` dir")
    p.add_argument("--text-col", default="text")
    p.add_argument("--label-col", default="label")
    p.add_argument("--mode", choices=("probe", "finetune"), default="probe",
                   help="probe: linear head on frozen features (CPU-friendly); finetune: the whole model")
    p.add_argument("--seeds", type=at_least(1), default=5, help="seeds (sample order, head and random inits), default 5")
    p.add_argument("--max-examples", type=at_least(1), default=1000, help="labels coded at most (default 1000)")
    _size_options(p)
    p.add_argument("--out", type=Path, default=None, help="write gain.json and gain.png here")
    p.add_argument("--force", action="store_true", help="recompute even when the store has the result")
    a = p.parse_args(argv)
    try:
        s = gain(a.model, a.data, force=a.force, text_col=a.text_col, label_col=a.label_col, mode=a.mode,
                 seeds=tuple(range(a.seeds)), max_examples=a.max_examples, max_len=a.max_len, n_test=a.n_test)
    except GainError as e:
        p.error(str(e))
    from decoupling.experiments.gain import table
    print(table(s))
    if a.out:
        _write(s, a.out)
        print(f"  wrote {a.out / 'gain.json'} and {a.out / 'gain.png'}")
    return 0


def main_score(argv=None) -> int:
    from decoupling import files
    from decoupling.experiments import gain as G
    p = Parser(
        prog="decoupling score",
        description="The generality score of a model: ΔL per label on each of the book's text targets "
                    f"({', '.join(G.book_targets())}), averaged over targets, with a 95% CI that resamples "
                    "targets, then seeds within them. Each target is one `decoupling gain` (cached alike).")
    p.add_argument("--model", required=True, help="as for `decoupling gain`")
    p.add_argument("--mode", choices=("probe", "finetune"), default="probe")
    p.add_argument("--seeds", type=at_least(1), default=3, help="seeds per target, default 3")
    p.add_argument("--max-examples", type=at_least(1), default=480,
                   help="labels coded per target at most (default 480; at least 32: the 8-class targets' "
                        "protocol needs two blocks of 16)")
    _size_options(p)
    p.add_argument("--out", type=Path, default=None, help="write score.json here (per target: ΔL, control, "
                                                           "reference, each with its 95%% CI; the score)")
    p.add_argument("--force", action="store_true", help="recompute even when the store has the results")
    a = p.parse_args(argv)
    try:
        sc = G.score(a.model, mode=a.mode, seeds=tuple(range(a.seeds)), max_examples=a.max_examples,
                     max_len=a.max_len, n_test=a.n_test, force=a.force)
    except GainError as e:
        p.error(str(e))
    for t, v in sc["targets"].items():
        d = v["dL"]
        print(f"  {t:<20} {v['n']:>5} labels  ΔL {d['per_label']:+.3f} bits/label  "
              f"[{d['per_label_lo']:+.3f}, {d['per_label_hi']:+.3f}]  control {v['control_verdict']}")
    c = sc["score"]
    print(f"generality score of {a.model}: {c['value']:+.3f} bits/label (95% CI {c['lo']:+.3f} … {c['hi']:+.3f}, "
          f"{c['targets']} targets, {a.seeds} seeds, {a.mode})")
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        files.write_json(a.out / "score.json", sc)
        print(f"  wrote {a.out / 'score.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main_gain())
