"""A chapter's context inside its notebook: run experiments, draw figures, record claims.

    ch = Chapter("generality", profile=profile, seed=seed)     # profile/seed injected by papermill
    res = ch.run(generality.transfer_grid, ch.config(generality.PRESETS))
    ch.figure(fig, "gen-heatmap")                               # PNG+SVG+sidecar, card under it
    ch.check("seed-vs-seed", passed=..., value=..., statement="...")
    ch.finding("generality-code", essay="...", value=..., ci=..., verdict=...)

State goes to <build>/records/<chapter>.json after every call (atomically), so the rebuild can read the
claims and the status page even when a later cell fails.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

from decoupling.pipeline import claims as _claims
from decoupling import paths
from decoupling.pipeline import figures, store
from decoupling.profiles import check_profile, preset


class Chapter:
    def __init__(self, name: str, profile: str = "smoke", seed: int = 0):
        self.name, self.profile, self.seed = name, check_profile(profile), int(seed)
        self.t0 = time.perf_counter()
        import warnings  # tqdm.auto's notice when ipywidgets is absent: not ours to show in the book
        warnings.filterwarnings("ignore", message="IProgress not found")
        self.records: list[dict] = []   # meta of every ch.run
        self.figures: list[dict] = []
        self.claims: list[_claims.Claim] = []
        self._pending: list[store.Record] = []  # records since the last figure
        from decoupling.core import device
        self.device = device.name()
        self._save()

    # -- experiments ------------------------------------------------------------------------------
    def config(self, presets: dict, **overrides):
        return preset(presets, self.profile, **overrides)

    def run(self, fn, cfg) -> dict:
        rec = store.run(fn, cfg, profile=self.profile)
        m = rec.meta
        self.records.append({k: m.get(k) for k in ("experiment", "cache_hit", "stale", "wall_time_s", "device",
                                                    "commit", "seeds", "path")})
        self._pending.append(rec)
        self._save()
        return rec.value

    # -- figures ----------------------------------------------------------------------------------
    def figure(self, fig, fig_id: str, records: list | None = None):
        """Save and show `fig` with its provenance card. Records default to the runs since the last figure
        (or all runs so far when there were none)."""
        import matplotlib.pyplot as plt
        from IPython.display import HTML, Image, display
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", fig_id):
            raise ValueError(f"figure id {fig_id!r}: use lowercase letters, digits and dashes")
        recs = records if records is not None else (self._pending or [])
        metas = [r.meta for r in recs] if recs else [r for r in self.records]
        seeds = sorted({s for m in metas for s in (m.get("seeds") or [])})
        side = figures.save(fig, fig_id, paths.BUILD_DIR / "figures", {
            "chapter": self.name, "profile": self.profile, "device": self._device_of(metas),
            "seeds": seeds, "wall_time_s": round(sum(m.get("wall_time_s") or 0 for m in metas), 2),
            "records": len(metas), "cache_hits": sum(bool(m.get("cache_hit")) for m in metas),
            "stale": any(m.get("stale") for m in metas),
            "record_commits": sorted({m.get("commit") for m in metas if m.get("commit")}),
        })
        png = (paths.BUILD_DIR / "figures" / f"{fig_id}.png").read_bytes()
        plt.close(fig)
        display(HTML(figures.anchor_html(fig_id)))  # `#fig-<id>`: the cell that drew it
        display(Image(png))
        display(HTML(figures.card_html(side, self._source_url(fig_id, side))))
        self.figures.append(side)
        self._pending = []
        self._save()
        return _Sidecar(side)

    def _device_of(self, metas):
        devs = sorted({m.get("device") for m in metas if m.get("device")})
        return ", ".join(devs) if devs else self.device

    def _source_url(self, fig_id: str, side: dict) -> str | None:
        """Link to the line of the chapter's source that draws the figure (repository URL from _config),
        at the figure's commit when the source is committed there, else on the configured branch."""
        src = paths.ROOT / "book" / f"{self.name}.md"
        repo, branch = _repo_url()
        if not src.exists() or not repo:
            return None
        ref = side["commit"] if side.get("commit", "unknown") != "unknown" and not side.get("dirty") else branch
        url = f"{repo}/blob/{ref}/book/{self.name}.md"
        for i, line in enumerate(src.read_text().splitlines(), 1):
            if f'"{fig_id}"' in line:
                return f"{url}#L{i}"
        return url

    # -- claims -----------------------------------------------------------------------------------
    def check(self, name: str, passed: bool, value=None, statement: str = "", ci=None,
              applies_to=("smoke", "full"), detail: str = ""):
        c = _claims.Claim(self.name, name, "check", self.profile, tuple(applies_to), statement,
                          _num(value), _ci(ci), "pass" if bool(passed) else "fail", "", detail)
        return self._add(c)

    def finding(self, name: str, essay: str, value=None, verdict: str = "inconclusive", ci=None,
                anchor: str = "", applies_to=("smoke", "full"), detail: str = ""):
        if verdict not in _claims.VERDICTS:
            raise ValueError(f"verdict must be one of {_claims.VERDICTS}, not {verdict!r}")
        c = _claims.Claim(self.name, name, "finding", self.profile, tuple(applies_to), essay,
                          _num(value), _ci(ci), verdict, anchor, detail)
        return self._add(c)

    def _add(self, c):
        self.claims = [x for x in self.claims if x.name != c.name] + [c]
        self._save()
        from IPython.display import Markdown, display
        mark = {"pass": "✅ check", "fail": "❌ CHECK FAILED", "holds": "🟢 finding holds",
                "does not hold": "🔴 finding does not hold", "inconclusive": "🟡 finding inconclusive"}[c.verdict]
        ci = f" (95% CI {_fmt(c.ci[0])} … {_fmt(c.ci[1])})" if c.ci else ""
        enforced = "" if c.enforced else f" — recorded only; enforced at {', '.join(c.applies_to)}"
        display(Markdown(f"> **{mark}** `{c.name}`: {c.statement} — measured **{_fmt(c.value)}**{ci}"
                         + (f"; published: {c.anchor}" if c.anchor else "") + enforced))
        return c

    # -- state --------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"chapter": self.name, "profile": self.profile, "seed": self.seed, "device": self.device,
                "wall_time_s": round(time.perf_counter() - self.t0, 2), "records": self.records,
                "figures": self.figures, "claims": [c.to_dict() for c in self.claims]}

    def _save(self):
        out = paths.BUILD_DIR / "records" / f"{self.name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            json.dump(self.state(), f, indent=1, default=str)
        os.replace(tmp, out)


class _Sidecar(dict):
    """A figure's sidecar as `Chapter.figure` returns it: already shown as the card, so a cell that ends
    with `ch.figure(...)` does not print it again as a dict."""

    def _ipython_display_(self):
        pass


def _repo_url() -> tuple[str | None, str]:
    """(repository URL, branch) from _config.yml."""
    import yaml
    cfg = paths.ROOT / "_config.yml"
    repo = ((yaml.safe_load(cfg.read_text()) or {}).get("repository") or {}) if cfg.exists() else {}
    url = repo.get("url")
    return (url.rstrip("/") if url else None), repo.get("branch") or "main"


def _num(v):
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, float):
        return round(v, 6)
    return v


def _ci(ci):
    return None if ci is None else (float(ci[0]), float(ci[1]))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)
