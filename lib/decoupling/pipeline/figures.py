"""Figures with provenance: PNG + SVG + a JSON sidecar, and a one-line provenance card.

Every figure of the book goes through `save`. The sidecar says how it was made (commit and dirty flag,
profile, the experiment functions and config hashes behind it, seeds, device, torch/transformers versions,
wall time, cache hits, stale records) so a reader can cite a figure by its id and commit, find the code
that computed it, and tell a `full` GPU figure from a `smoke` one.
"""
from __future__ import annotations

import html
from pathlib import Path

from decoupling import files
from decoupling.pipeline import provenance


def save(fig, fig_id: str, out_dir: Path, meta: dict) -> dict:
    """Write <out_dir>/<fig_id>.{png,svg,json}; return the sidecar dict."""
    import io

    import matplotlib
    out_dir.mkdir(parents=True, exist_ok=True)
    for fmt, kw in (("png", {"dpi": 150}), ("svg", {})):
        buf = io.BytesIO()
        # metadata pinned, and the SVG's element ids salted with the figure id instead of a random uuid,
        # so the files are byte-identical across rebuilds of the same result (tests/test_determinism.py)
        md = {"Date": None} if fmt == "svg" else {"Software": None}
        with matplotlib.rc_context({"svg.hashsalt": fig_id}):
            fig.savefig(buf, format=fmt, bbox_inches="tight", metadata=md, **kw)
        files.atomic_write(out_dir / f"{fig_id}.{fmt}", buf.getvalue())
    commit, dirty = provenance.git_state()
    side = {"id": fig_id, "commit": commit, "dirty": dirty, **provenance.versions(), **meta,
            "files": [f"{fig_id}.png", f"{fig_id}.svg"]}
    files.write_json(out_dir / f"{fig_id}.json", side)
    return side


def anchor_html(fig_id: str) -> str:
    """An empty anchor shown just before the figure, in the cell that draws it: `#fig-<id>` links to it
    (jupyter-book gives cells no ids of their own)."""
    return f'<a id="fig-{html.escape(fig_id)}" class="figure-anchor"></a>'


def card_html(side: dict, source_url: str | None = None, static: str = "../_static/",
              code_urls: dict[str, str | None] | None = None) -> str:
    """The provenance card shown under a figure in the book: id, the experiments behind it (function and
    config hash, the function linked to its source through `code_urls`), profile, commit, device, seeds,
    compute time, cache hits/misses, links to the cell (in the page and in the source at that commit) and
    to the figure's SVG and sidecar, plus a warning when it was computed by code that has changed since.

    `static` is the page's way to the site's _static folder (chapters are pages under book/)."""
    e = lambda v: html.escape(str(v))  # noqa: E731
    code_urls = code_urls or {}
    fid = e(side["id"])
    seeds = ", ".join(str(s) for s in side.get("seeds", [])) or "–"
    commit = side.get("commit") or "unknown"
    commit_txt = commit[:10] + (" (dirty)" if side.get("dirty") else "")
    hits, n = side.get("cache_hits", 0), side.get("records", 0)
    links = [f'<a href="#fig-{fid}" title="the notebook cell that drew this figure">cell</a>']
    if source_url:
        links.append(f'<a href="{e(source_url)}" title="its source line">source</a>')
    links += [f'<a href="{e(static)}figures/{fid}.svg">svg</a>',
              f'<a href="{e(static)}figures/{fid}.json" title="provenance record">json</a>']

    by_fn: dict[str, list[str]] = {}  # experiment function -> its config hashes, in the order they ran
    for x in side.get("experiments", []):
        by_fn.setdefault(x["experiment"], []).append(x["logical"])
    runs = []
    for fn, hashes in by_fn.items():
        name = f"<code>{e(fn)}</code>"
        if code_urls.get(fn):
            name = f'<a href="{e(code_urls[fn])}" title="the experiment function">{name}</a>'
        runs.append(name + "".join(f' <code title="config hash: the results store’s logical key">{e(h)}</code>'
                                   for h in hashes))
    parts = [
        f"<b>Figure <code>{fid}</code></b>",
        (f"experiment{'' if len(runs) == 1 else 's'} " + ", ".join(runs)) if runs else "no experiment run",
        f"profile <code>{e(side.get('profile', '?'))}</code>",
        f'commit <code title="{e(commit)}">{e(commit_txt)}</code>',
        f"device {e(side.get('device', '?'))}",
        f"seeds {e(seeds)}",
        f"compute {float(side.get('wall_time_s') or 0):.1f} s",
        f"cache {hits} hit{'' if hits == 1 else 's'} / {n - hits} miss{'' if n - hits == 1 else 'es'}",
        " ".join(links),
    ]
    stale = ""
    if side.get("stale"):
        stale = ('<div class="provenance-stale" style="color:#b00;font-weight:bold">STALE: computed by '
                 "code that has changed since; rerun it at this profile to refresh</div>")
    return (f'<div class="provenance" id="prov-{fid}" data-figure="{fid}" data-commit="{e(commit)}" '
            f'style="font-size:0.8em;color:#555;border-top:1px solid #ddd;margin-top:2px">'
            + " · ".join(parts) + stale + "</div>")
