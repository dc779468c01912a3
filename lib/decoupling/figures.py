"""Figures with provenance: PNG + SVG + a JSON sidecar, and a one-line provenance card.

Every figure of the book goes through `save`. The sidecar says how it was made (commit and dirty flag,
profile, seeds, device, torch/transformers versions, wall time, cache hits, stale records) so a reader
can cite a figure by its id and commit, and a re-runner can tell a `full` GPU figure from a `smoke` one.
"""
from __future__ import annotations

import html
import json
import os
import tempfile
from pathlib import Path

from decoupling import provenance


def _atomic_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def save(fig, fig_id: str, out_dir: Path, meta: dict) -> dict:
    """Write <out_dir>/<fig_id>.{png,svg,json}; return the sidecar dict."""
    import io
    out_dir.mkdir(parents=True, exist_ok=True)
    for fmt, kw in (("png", {"dpi": 150}), ("svg", {})):
        buf = io.BytesIO()
        # metadata pinned so the files are byte-identical across rebuilds of the same result
        md = {"Date": None} if fmt == "svg" else {"Software": None}
        fig.savefig(buf, format=fmt, bbox_inches="tight", metadata=md, **kw)
        _atomic_bytes(out_dir / f"{fig_id}.{fmt}", buf.getvalue())
    commit, dirty = provenance.git_state()
    side = {"id": fig_id, "commit": commit, "dirty": dirty, **provenance.versions(), **meta,
            "files": [f"{fig_id}.png", f"{fig_id}.svg"]}
    _atomic_bytes(out_dir / f"{fig_id}.json", json.dumps(side, indent=1, sort_keys=True).encode())
    return side


def card_html(side: dict, source_url: str | None = None) -> str:
    """The provenance card shown under a figure in the book (one line, plus a stale warning)."""
    seeds = ",".join(str(s) for s in side.get("seeds", [])) or "–"
    commit = side["commit"][:10] + (" (dirty)" if side.get("dirty") else "")
    hits, n = side.get("cache_hits", 0), side.get("records", 0)
    parts = [
        f"<b>Figure {html.escape(side['id'])}</b>",
        f"profile <code>{side['profile']}</code>",
        f"commit <code>{html.escape(commit)}</code>",
        f"device {html.escape(str(side.get('device', '?')))}",
        f"seeds {seeds}",
        f"compute {side.get('wall_time_s', 0):.1f} s",
        f"cache {hits}/{n} hit",
    ]
    if source_url:
        parts.append(f'<a href="{html.escape(source_url)}">cell</a>')
    stale = ""
    if side.get("stale"):
        stale = (' <span class="provenance-stale" style="color:#b00;font-weight:bold">STALE: '
                 "computed at an older commit; the code that produced it has changed since</span>")
    return (f'<div class="provenance" id="prov-{html.escape(side["id"])}" '
            f'style="font-size:0.8em;color:#555;border-top:1px solid #ddd;margin-top:2px">'
            + " · ".join(parts) + stale + "</div>")
