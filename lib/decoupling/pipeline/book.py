"""A chapter's context inside its notebook: run experiments, draw figures, record claims.

    from decoupling.core import verdicts
    from decoupling.experiments import memory as E
    from decoupling.pipeline.book import Chapter

    ch = Chapter("memory", profile=profile, seed=seed)           # profile/seed injected by papermill
    res = ch.run(E.context_gating, ch.config(E.GATING, seeds=ch.seeds(E.GATING)))  # from the store if it can
    ch.figure(fig, "memory-gating")                                # PNG+SVG+sidecar, card under it
    ch.add(verdicts.Check("no-context-at-chance", statement="...", passed=..., value=...))
    ch.add(verdicts.Finding("gate-precision", essay="...", criterion="...", decision=...))

The chapter's summary module builds those Checks and Findings (`core.verdicts` decides them); the page
only adds them, e.g. `ch.add(S.findings["gate-precision"])`.

State goes to <build>/records/<chapter>.json after every call (atomically), so the rebuild can read the
claims and the status page even when a later cell fails.

A cell that starts with `%%gpu_part` shows results that a GPU computes at `full`. On a machine without
CUDA, when such a cell asks for a record nobody has computed (store.NeedsGPU), it and every later
`%%gpu_part` cell show one line saying so instead of failing the chapter, so that a `full` build on a CPU
still executes the rest of the page (the experiments that need no GPU, and every committed record).
"""
from __future__ import annotations

import inspect
import re
import time
from dataclasses import dataclass
from pathlib import Path

from decoupling import files, paths
from decoupling.pipeline import claims as _claims
from decoupling.pipeline import figures, store
from decoupling.profiles import check_profile, preset


class Chapter:
    """One chapter's runs, figures and claims.

    A figure names the runs it was drawn from, on its card and in its sidecar: each run's experiment
    function (linked to its source) and the first 12 hex digits of its config hash (the store's
    `logical` key over experiment, config and profile), so a reader goes from a figure to the code and
    the stored result behind it. By default these are the runs made since the previous figure or, when
    there were none (another figure drawn from results already shown), every run of the chapter so far.
    A figure drawn from some earlier runs, or from new and earlier ones together, names them:
    `ch.figure(fig, "id", runs=[res, ...])` with the values `ch.run` returned.
    """

    def __init__(self, name: str, profile: str = "smoke", seed: int = 0):
        self.name, self.profile, self.seed = name, check_profile(profile), int(seed)
        self.t0 = time.perf_counter()
        self.records: list[dict] = []   # meta of every ch.run
        self.figures: list[dict] = []
        self.claims: list[_claims.Claim] = []
        self._runs: list[_Run] = []     # every ch.run, in order
        self._pending: list[_Run] = []  # those since the last figure
        from decoupling.core import device
        self.device = device.name()
        self.gpu_missing: str = ""  # set by the first `%%gpu_part` cell whose records a GPU must compute
        _register_gpu_part(self)
        self._save()

    # -- experiments ------------------------------------------------------------------------------
    def config(self, presets: dict, **overrides):
        return preset(presets, self.profile, **overrides)

    def seeds(self, presets: dict) -> tuple[int, ...]:
        """The seeds of `presets` at this chapter's profile, shifted by the book's seed parameter (0 by
        default): `ch.config(E.TRANSFER, seeds=ch.seeds(E.TRANSFER))`. Chapters that read the same runs (the
        generality chapter and the leaderboard) derive them with this one rule, so they ask the results
        store for the same configs."""
        return tuple(self.seed + s for s in preset(presets, self.profile).seeds)

    def run(self, fn, cfg) -> dict:
        rec = store.run(fn, cfg, profile=self.profile)
        m = rec.meta
        self.records.append({k: m.get(k) for k in ("experiment", "logical", "cache_hit", "stale", "wall_time_s",
                                                    "device", "dtype", "commit", "seeds", "path")})
        run = _Run(rec.value, self.records[-1], _source_of(fn))
        self._runs.append(run)
        self._pending.append(run)
        self._save()
        return rec.value

    def declared(self, group: str) -> list:
        """This chapter's declared runs (`pipeline.plan`) of `group`, in order: what `decoupling compute`
        computes for it. Their configs are `.cfg`."""
        from decoupling.pipeline import plan
        out = [r for r in plan.runs(self.name, self.profile, self.seed) if r.group == group and not r.artifact]
        if not out:
            groups = sorted({r.group for r in plan.runs(self.name, self.profile, self.seed) if not r.artifact})
            raise KeyError(f"chapter {self.name!r} declares no runs {group!r} at {self.profile!r}; "
                           f"its groups: {', '.join(groups)}")
        return out

    def results(self, group: str) -> list[dict]:
        """The values of every declared run of `group`, through the results store (`run`)."""
        return [self.run(r.fn, r.cfg) for r in self.declared(group)]

    def result(self, group: str) -> dict:
        """The value of the one declared run of `group`."""
        (value,) = self.results(group)
        return value

    # -- figures ----------------------------------------------------------------------------------
    def figure(self, fig, fig_id: str, runs: list[dict] | None = None):
        """Save and show `fig` with its provenance card, naming the runs it was drawn from: `runs` (values
        `ch.run` returned), else those since the previous figure, else every run so far (class docstring)."""
        import matplotlib.pyplot as plt
        from IPython.display import HTML, Image, display
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", fig_id):
            raise ValueError(f"figure id {fig_id!r}: use lowercase letters, digits and dashes")
        used = self._runs_of(runs) if runs is not None else (self._pending or self._runs)
        metas = [r.meta for r in used]
        seeds = sorted({s for m in metas for s in (m.get("seeds") or [])})
        experiments = list({(m["experiment"], (m.get("logical") or "")[:12]): None for m in metas})  # once each
        side = figures.save(fig, fig_id, paths.BUILD_DIR / "figures", {
            "chapter": self.name, "profile": self.profile, "device": self._device_of(metas),
            "experiments": [{"experiment": e, "logical": k} for e, k in experiments],
            "seeds": seeds, "wall_time_s": round(sum(m.get("wall_time_s") or 0 for m in metas), 2),
            "records": len(metas), "cache_hits": sum(bool(m.get("cache_hit")) for m in metas),
            "stale": any(m.get("stale") for m in metas),
            "record_commits": sorted({m.get("commit") for m in metas if m.get("commit")}),
        })
        code = {r.meta["experiment"]: self._blob_url(*r.source, side) for r in used if r.source}
        png = (paths.BUILD_DIR / "figures" / f"{fig_id}.png").read_bytes()
        plt.close(fig)
        display(HTML(figures.anchor_html(fig_id)))  # `#fig-<id>`: the cell that drew it
        display(Image(png))
        display(HTML(figures.card_html(side, self._source_url(fig_id, side), code_urls=code)))
        self.figures.append(side)
        self._pending = []
        self._save()
        return _Sidecar(side)

    def _runs_of(self, values: list[dict]) -> list[_Run]:
        """The runs whose results are `values` (the very objects `ch.run` returned)."""
        out = []
        for v in values:
            run = next((r for r in self._runs if r.value is v), None)
            if run is None:
                raise ValueError("ch.figure(runs=...): pass the values this chapter's ch.run returned")
            out.append(run)
        return out

    def _device_of(self, metas):
        devs = sorted({m["device"] + (f", {m['dtype']}" if m.get("dtype") else "") for m in metas
                       if m.get("device")})
        return ", ".join(devs) if devs else self.device

    def _source_url(self, fig_id: str, side: dict) -> str | None:
        """Link to the line of the chapter's source that draws the figure."""
        src = paths.ROOT / "book" / f"{self.name}.md"
        if not src.exists():
            return None
        line = next((i for i, text in enumerate(src.read_text().splitlines(), 1) if f'"{fig_id}"' in text), None)
        return self._blob_url(src, line, side)

    @staticmethod
    def _blob_url(path: Path, line: int | None, side: dict) -> str | None:
        """Link to `path` (at `line`) in the repository (URL from _config.yml), at the figure's commit when
        the tree was committed there, else on the configured branch; None for a file outside the book."""
        repo, branch = _repo_url()
        if not repo:
            return None
        try:
            rel = Path(path).resolve().relative_to(paths.ROOT.resolve()).as_posix()
        except ValueError:
            return None
        ref = side["commit"] if side.get("commit", "unknown") != "unknown" and not side.get("dirty") else branch
        return f"{repo}/blob/{ref}/{rel}" + (f"#L{line}" if line else "")

    # -- claims -----------------------------------------------------------------------------------
    def check(self, name: str, passed: bool, value=None, statement: str = "", ci=None,
              applies_to=("smoke", "full"), detail: str = ""):
        """Something that must hold if the code is right; `applies_to`: the profiles where it is enforced."""
        c = _claims.Claim(self.name, name, "check", self.profile, tuple(applies_to), statement, _num(value),
                          _interval(ci), "pass" if bool(passed) else "fail", detail=detail)
        self._add(c)

    def finding(self, name: str, essay: str, value=None, verdict: str = "inconclusive", ci=None,
                anchor: str = "", applies_to=("smoke", "full"), detail: str = "", criterion: str = ""):
        """One of the essay's hypotheses: `essay` what it predicts (paraphrased), `criterion` the observation
        that makes it hold (shown before the value), `applies_to` the profiles that can decide it (elsewhere
        the value is shown as an illustration and its verdict is not compared with the snapshot)."""
        if verdict not in _claims.VERDICTS:
            raise ValueError(f"verdict must be one of {_claims.VERDICTS}, not {verdict!r}")
        warning = ""
        if not criterion.strip():
            if _claims.REQUIRE_CRITERION:
                raise ValueError(f"finding {name!r}: state its criterion (criterion=...): the observation that "
                                 "makes it hold, written before the value is known")
            warning = _claims.NO_CRITERION
        c = _claims.Claim(self.name, name, "finding", self.profile, tuple(applies_to), essay, _num(value),
                          _interval(ci), verdict, anchor, detail, criterion=criterion.strip(), warning=warning)
        self._add(c)

    def add(self, claim) -> None:
        """Record a `core.verdicts.Finding` or `Check` (decided by the library) and show its box: its
        verdict, value, interval (bounds and level) and, for a finding, the p-value of the test behind it."""
        from decoupling.core import verdicts
        if isinstance(claim, verdicts.Finding):
            self._add(_finding_claim(self, claim))
        elif isinstance(claim, verdicts.Check):
            iv = claim.interval
            self._add(_claims.Claim(self.name, claim.name, "check", self.profile, tuple(claim.applies_to),
                                    claim.statement, _num(claim.value), _bounds(iv), "pass" if claim.passed
                                    else "fail", detail=claim.detail, level=_level(iv)))
        else:
            raise TypeError(f"Chapter.add takes a verdicts.Finding or verdicts.Check, not {type(claim).__name__}")

    def _add(self, c) -> None:
        """Record the claim and show its box. Nothing is returned, so a cell that ends with a claim shows
        the box alone, not the claim's repr under it."""
        self.claims = [x for x in self.claims if x.name != c.name] + [c]
        self._save()
        from IPython.display import Markdown, display
        display(Markdown(_claims.box_md(c.to_dict())))

    # -- state --------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"chapter": self.name, "profile": self.profile, "seed": self.seed, "device": self.device,
                "wall_time_s": round(time.perf_counter() - self.t0, 2), "records": self.records,
                "figures": self.figures, "claims": [c.to_dict() for c in self.claims]}

    def _save(self):
        files.write_json(paths.BUILD_DIR / "records" / f"{self.name}.json", self.state())


def _register_gpu_part(ch: Chapter) -> None:
    """The `%%gpu_part` cell magic of the notebook this chapter runs in (see the module docstring). Outside
    IPython (a plain script, the notebook-free executor) there is nothing to register."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency of the book
        return
    ip = get_ipython()
    if ip is None:
        return

    def gpu_part(line, cell):
        from IPython.display import Markdown, display
        if ch.gpu_missing:
            display(Markdown(f"*Not shown at `{ch.profile}` on this machine: {ch.gpu_missing}*"))
            return
        inside[0] = True
        try:
            res = ip.run_cell(cell)
        finally:
            inside[0] = False
        err = res.error_in_exec
        if isinstance(err, store.NeedsGPU):
            ch.gpu_missing = (f"this part needs records computed on a GPU ({str(err).split(':')[0]} and "
                              "others); the reproducibility page says how to compute them.")
            display(Markdown(f"*Not shown at `{ch.profile}` on this machine: {ch.gpu_missing}*"))
        elif err is not None or res.error_before_exec is not None:
            raise RuntimeError("a %%gpu_part cell failed (traceback above)") from (err or res.error_before_exec)

    def needs_gpu(shell, etype, value, tb, tb_offset=None):
        # inside a %%gpu_part cell its one-line note replaces the traceback; anywhere else the error is
        # shown (and fails the page) as usual, with the store's message saying what to do
        if not inside[0]:
            shell.showtraceback((etype, value, tb), tb_offset=tb_offset)

    inside = [False]
    ip.register_magic_function(gpu_part, magic_kind="cell", magic_name="gpu_part")
    ip.set_custom_exc((store.NeedsGPU,), needs_gpu)


@dataclass(frozen=True, eq=False)
class _Run:
    """One ch.run: the value it returned (figures are given runs by it), its entry in `Chapter.records`,
    and where its experiment function is defined (file, first line), or None."""
    value: dict
    meta: dict
    source: tuple[Path, int] | None


def _source_of(fn) -> tuple[Path, int] | None:
    try:
        return Path(inspect.getsourcefile(fn)), fn.__code__.co_firstlineno
    except (TypeError, AttributeError):  # a builtin or a callable object: no line to point at
        return None


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


def _finding_claim(ch: Chapter, f) -> _claims.Claim:
    d = f.decision
    if d.verdict not in _claims.VERDICTS:
        raise ValueError(f"verdict must be one of {_claims.VERDICTS}, not {d.verdict!r}")
    if not f.criterion.strip():
        raise ValueError(f"finding {f.name!r}: state its criterion: the observation that makes it hold, "
                         "written before the value is known")
    p = None if d.p is None or d.p != d.p else float(d.p)  # NaN: no p
    return _claims.Claim(ch.name, f.name, "finding", ch.profile, tuple(f.applies_to), f.essay, _num(f.value),
                         _bounds(d.interval), d.verdict, f.anchor, f.detail, criterion=f.criterion.strip(),
                         p=p, level=_level(d.interval), rule=d.rule)


def _bounds(iv):
    """An Interval's (lo, hi), or None where it has none (one run, nothing measured)."""
    if iv is None or not all(x == x and abs(x) != float("inf") for x in (iv.lo, iv.hi)):
        return None
    return _interval(iv.ci)


def _level(iv):
    return None if _bounds(iv) is None else float(iv.level)


def _interval(ci):
    return None if ci is None else (float(ci[0]), float(ci[1]))
