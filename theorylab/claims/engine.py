"""The claims engine: run a claim's experiment over seeds, measure, decide, store.

``check(claim_id, tier, seeds, backend, store)`` does, in order:

1. validate every argument (nothing is written before that);
2. collect ``claim.experiment(tier, seed)`` for every seed;
3. execute them with a sweep (:func:`theorylab.sweep.run_sweep`) on the chosen backend, seeds
   stacked where asked (``stack``); finished runs are reused (``force=True`` retrains them).  A
   claim only declares its runs; it never trains them itself;
4. call ``claim.measure`` per seed on read-only :class:`RunView` handles; numbers
   become statistics over seeds (:func:`summarize`), anything else is kept in
   ``Evidence.series`` for figures;
5. apply ``claim.rule.decide``: premises seed by seed, then each criterion with its statistic; a proxy
   tier cannot refute;
6. save ``claim.figures(evidence)`` as PNG files under
   ``<store>/claims/<id>/<tier>/<stamp>/`` and the result in the store, with what ran: the
   backend, the number of workers, each run's stepper and the commit of the code that trained it.

The stored result (:class:`ClaimResult`) is what ``theorylab claims`` and
``theorylab report`` read; a report never recomputes a verdict.
"""

from __future__ import annotations

import math
import os
import platform
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from theorylab.claims import get_claim
from theorylab.claims.base import Claim, Evidence, Stat, summarize
from theorylab.errors import ConfigError, TheoryLabError
from theorylab.runs.threads import check_threads, set_threads
from theorylab.runs.view import RunView
from theorylab.store import Store, package_versions

BACKENDS = ("inprocess", "local", "ray")


@dataclass
class ClaimResult:
    """One check of one claim at one tier: the verdict and everything behind it."""

    claim_id: str
    tier: str
    seeds: list[int]
    verdict: str
    reasons: list[str]
    stats: dict[str, dict[str, Any]]  # quantity -> Stat.to_dict() (values, mean, sd, lo, hi, n)
    per_seed: dict[int, dict[str, float]]
    rule: str
    criteria: list[dict[str, Any]]  # per criterion: quantity, op, threshold, why, statistic, estimate, lo, hi, k, n,
    #                                 verdict, reason
    run_ids: dict[int, dict[str, str]]  # seed -> run name -> run id
    configs: dict[int, dict[str, dict[str, Any]]]  # seed -> run name -> RunConfig.to_dict()
    figures: dict[str, str]  # figure name -> PNG path
    title: str = ""
    # name -> {"columns": [...], "rows": [[...], ...], "note": str}: tables a claim builds (score tables)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    statement: str = ""
    citation: dict[str, Any] = field(default_factory=dict)
    decides: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    device: str = ""
    created: float = 0.0
    wall_seconds: float = 0.0
    backend: str = "inprocess"  # the backend that ran the runs ("inprocess" when none was trained)
    workers: int = 1
    steppers: list[str] = field(default_factory=list)  # the steppers that trained the runs used
    run_commits: dict[str, str | None] = field(default_factory=dict)  # run id -> commit of the code that trained it
    runs_trained: int = 0
    runs_reused: int = 0
    # per premise: name, quantity, op, bound, why, values {seed: value}, failed [seeds], met
    premises: list[dict[str, Any]] = field(default_factory=list)
    tier_faithful: bool = False  # the tier meets the paper's stated conditions (only such a tier may refute)
    tier_statement: str = ""  # the statement as a proxy tier tests it, when it differs from `statement`
    deviations: dict[str, str] = field(default_factory=dict)  # how the setup departs from the paper's
    seeds_default: list[int] = field(default_factory=list)  # the seeds the claim declares for the tier
    seeds_after_inconclusive: bool = False  # seeds were added after an inconclusive result at this tier
    result_id: int | None = None
    evidence: Evidence | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "evidence"}
        d["per_seed"] = {str(s): v for s, v in self.per_seed.items()}
        d["run_ids"] = {str(s): v for s, v in self.run_ids.items()}
        d["configs"] = {str(s): v for s, v in self.configs.items()}
        return _finite_json(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClaimResult:
        d = dict(d)
        for key in ("per_seed", "run_ids", "configs"):
            d[key] = {int(s): v for s, v in (d.get(key) or {}).items()}
        d["stats"] = {k: _unjson_stat(v) for k, v in (d.get("stats") or {}).items()}
        d["per_seed"] = {s: {k: _unjson_num(x) for k, x in v.items()} for s, v in d["per_seed"].items()}
        d["criteria"] = [{k: _unjson_num(x) for k, x in c.items()} for c in d.get("criteria") or []]
        d["premises"] = [{**p, "values": {int(s): _unjson_num(x) for s, x in (p.get("values") or {}).items()},
                          "bound": _unjson_num(p.get("bound"))} for p in d.get("premises") or []]
        known = set(cls.__dataclass_fields__) - {"evidence"}
        return cls(**{k: v for k, v in d.items() if k in known})

    def stat(self, name: str) -> Stat:
        s = self.stats[name]
        return Stat(name, list(s["values"]), s["mean"], s["sd"], s["lo"], s["hi"], s["n"])


# JSON has no NaN/inf: store them as strings and read them back.
def _finite_json(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return "nan" if math.isnan(o) else ("inf" if o > 0 else "-inf")
    if isinstance(o, dict):
        return {k: _finite_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite_json(v) for v in o]
    return o


def _unjson_num(x: Any) -> Any:
    if isinstance(x, str) and x in ("nan", "inf", "-inf"):
        return float(x)
    return x


def _unjson_stat(s: dict[str, Any]) -> dict[str, Any]:
    out = {k: _unjson_num(v) for k, v in s.items()}
    out["values"] = [_unjson_num(v) for v in s.get("values", [])]
    return out


# --------------------------------------------------------------------------- helpers


def resolve_seeds(claim: Claim, tier: str, seeds: int | Sequence[int] | None) -> list[int]:
    """None -> the claim's default count for the tier; N -> 0..N-1; a list -> those seeds."""
    if seeds is None:
        n = int(claim.seeds.get(tier, 3))
        return list(range(n))
    if isinstance(seeds, bool):
        raise ConfigError("seeds: must be a positive integer or a list of non-negative integers")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"seeds: {seeds} is not allowed; give a count >= 1 or a list of seeds")
        return list(range(seeds))
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ConfigError(f"seeds: {s!r} is not a non-negative integer")
        if s not in out:
            out.append(s)
    if not out:
        raise ConfigError("seeds: the list is empty; give at least one seed")
    return out


def _trained_on(store: Store, run_ids: Sequence[str]) -> list[str]:
    """The ``train.device`` each stored run was trained with (a reused run keeps the device it had)."""
    out = []
    for rid in run_ids:
        rec = store.get_run(rid)
        out.append((rec.config.get("train") or {}).get("device", "cpu") if rec is not None else "cpu")
    return out or ["cpu"]


def device_description(names: Sequence[str] = ("cpu",)) -> str:
    """The devices the runs were trained on (``train.device`` names, ``auto`` resolved), in words."""
    import torch

    from theorylab.runs.devices import resolve_device

    out = []
    for name in sorted(set(names)):
        try:
            dev = resolve_device(name)
        except TheoryLabError:
            out.append(name)
            continue
        if dev.type == "cuda":
            out.append(f"{dev}: {torch.cuda.get_device_name(dev)}")
        elif dev.type == "cpu":
            out.append(f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
        else:
            out.append(str(dev))
    return "; ".join(out)


def _is_number(v: Any) -> bool:
    import numbers

    if isinstance(v, numbers.Real):
        return True
    try:
        import numpy as np

        return isinstance(v, np.ndarray) and v.ndim == 0 and np.issubdtype(v.dtype, np.number)
    except ImportError:  # pragma: no cover
        return False


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("._") or "figure"


def evaluate(claim: Claim, tier: str, seeds: list[int], runs: dict[int, dict[str, RunView]],
             measured: dict[int, dict[str, Any]]) -> tuple[Evidence, str, list[str]]:
    """Split per-seed measurements into numbers and series, summarise, decide (premises first, then each
    criterion with its statistic; a proxy tier cannot refute).  ``Evidence.decision`` holds the details."""
    per_seed: dict[int, dict[str, float]] = {}
    series: dict[int, dict[str, Any]] = {}
    for s in seeds:
        vals = measured.get(s) or {}
        per_seed[s] = {k: float(v) for k, v in vals.items() if _is_number(v)}
        series[s] = {k: v for k, v in vals.items() if not _is_number(v)}
    ev = Evidence(claim.id, tier, list(seeds), per_seed, runs, series=series)
    names: list[str] = []
    for s in seeds:
        for k in per_seed[s]:
            if k not in names:
                names.append(k)
    ev.stats = {q: summarize(q, ev.values(q)) for q in names}
    ev.decision = claim.rule.decide(per_seed, faithful=claim.params(tier).faithful)
    return ev, ev.decision.verdict, ev.decision.reasons


# --------------------------------------------------------------------------- check


def check(claim_id: str, tier: str = "quick", seeds: int | Sequence[int] | None = None,
          backend: str = "inprocess", store: Store | None = None, force: bool = False, *,
          progress: bool = False, workers: int | None = None, save: bool = True,
          stack: bool | str = "auto", device: str | None = None, threads: int | None = None,
          trained_by: Any = None) -> ClaimResult:
    """Run claim ``claim_id`` at ``tier`` over ``seeds`` and return (and store) its result.

    ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``mps``, ``auto``) trains every run there (default: each
    config's ``train.device``, the CPU); measurements read the stored checkpoints on the CPU.

    ``backend`` executes the runs (``inprocess``, the default from Python, needs no ``__main__`` guard
    in a script; ``local`` is a process pool; ``ray``); ``stack`` stacks the seeds of each run
    (``"auto"``: on a CUDA device).  ``threads``: torch's CPU threads for the runs (each pool or Ray worker:
    default 1; ``inprocess``: default chosen by the loop) and for measuring here (default chosen from the
    largest run's work, :mod:`theorylab.runs.threads`).  Raises :class:`~theorylab.errors.ConfigError` on bad arguments
    (before anything is written) and :class:`~theorylab.errors.RunFailedError` when a run fails.
    """
    from theorylab.errors import RunFailedError
    from theorylab.sweep import run_sweep

    t0 = time.perf_counter()
    claim = get_claim(claim_id)
    claim.params(tier)  # validates the tier
    if backend not in BACKENDS:
        raise ConfigError(f"backend: {backend!r} is not allowed; allowed: {', '.join(BACKENDS)}")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers: {workers} is not allowed; give a count >= 1")
    check_threads(threads)
    seed_list = resolve_seeds(claim, tier, seeds)
    store = store if store is not None else Store()

    # 1. the experiment (configs are validated as they are built)
    experiment = {s: dict(claim.experiment(tier, s) or {}) for s in seed_list}
    named = [(s, name, cfg) for s in seed_list for name, cfg in experiment[s].items()]

    # 2. execute: the sweep trains what is not finished and says which run holds each config
    sweep = run_sweep([cfg for _, _, cfg in named], store=store, backend=backend, workers=workers,
                      progress=progress, force=force, label=f"{claim_id} [{tier}]", stack=stack, device=device,
                      threads=threads)
    if trained_by is not None:  # a shared sweep (check_many) trained them: it says what ran and where
        mine = set(sweep.run_ids)
        sweep.trained = [rid for rid in trained_by.trained if rid in mine] + [r for r in sweep.trained if r not in
                                                                              trained_by.trained]
        sweep.reused = [rid for rid in sweep.reused if rid not in sweep.trained]
        sweep.backend, sweep.workers = trained_by.backend, trained_by.workers
    if not sweep.ok:
        bad = {rid: st for rid, st in sweep.status.items() if st not in ("finished", "diverged")}
        raise RunFailedError(f"claim {claim_id}: runs did not finish: "
                             + ", ".join(f"{k} ({v}{': ' + sweep.errors[k] if k in sweep.errors else ''})"
                                         for k, v in bad.items()))
    run_of = {(s, name): rid for (s, name, _), rid in zip(named, sweep.config_run_ids)}

    # 3. measure per seed, with threads for the largest run's work (measuring evaluates those models here)
    set_threads(list(experiment[seed_list[0]].values()), threads)
    views = {s: {name: RunView(run_of[(s, name)], store) for name in experiment[s]} for s in seed_list}
    measured = {s: claim.measure(tier, s, views[s]) for s in seed_list}

    # 4. decide
    ev, verdict, reasons = evaluate(claim, tier, seed_list, views, measured)

    # 5. figures
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    fig_dir = store.root / "claims" / _slug(claim.id) / tier / stamp
    figures = save_figures(claim.figures(ev) or {}, fig_dir)

    used = sorted(set(sweep.run_ids))
    res = ClaimResult(
        claim_id=claim.id, tier=tier, seeds=seed_list, verdict=verdict, reasons=reasons,
        stats={k: v.to_dict() for k, v in ev.stats.items()}, per_seed=ev.per_seed,
        rule=claim.rule.describe(), criteria=ev.decision.criteria, premises=ev.decision.premises,
        tier_faithful=claim.params(tier).faithful, tier_statement=claim.params(tier).statement or "",
        deviations=dict(claim.deviations), seeds_default=resolve_seeds(claim, tier, None),
        seeds_after_inconclusive=_seeds_after_inconclusive(store, claim, tier, seed_list),
        run_ids={s: {n: v.run_id for n, v in views[s].items()} for s in seed_list},
        configs={s: {n: c.to_dict() for n, c in experiment[s].items()} for s in seed_list},
        figures=figures, tables=claim.tables(ev) or {}, title=claim.title, statement=claim.statement,
        citation={**claim.citation.__dict__, "short": claim.citation.short(), "full": claim.citation.full()},
        decides=claim.decides, versions=versions(),
        device=device_description(_trained_on(store, sweep.run_ids)), created=time.time(),
        backend=sweep.backend if sweep.trained else "inprocess", workers=sweep.workers if sweep.trained else 1,
        steppers=sorted(set(sweep.steppers.values())),
        run_commits={rid: store.get_run(rid).git_commit for rid in used},
        runs_trained=len(sweep.trained), runs_reused=len(sweep.reused), evidence=ev,
    )
    res.wall_seconds = time.perf_counter() - t0
    if save:
        res.result_id = store.save_claim_result(claim.id, tier, seed_list, verdict, res.to_dict())
    return res


def _seeds_after_inconclusive(store: Store, claim: Claim, tier: str, seeds: list[int]) -> bool:
    """True when these seeds are not the claim's declared ones for the tier and an earlier result of this
    claim at this tier was inconclusive: the verdict may have been chased with extra seeds."""
    if seeds == resolve_seeds(claim, tier, None) or not store.db_path.exists():
        return False
    return any(r["verdict"] == "inconclusive" for r in store.claim_results(claim.id, tier, latest=False))


def save_figures(figs: dict[str, Any], directory: Path) -> dict[str, str]:
    """Save each matplotlib figure as ``<directory>/<name>.png`` and close it."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    if not figs:
        return out
    directory.mkdir(parents=True, exist_ok=True)
    for name, fig in figs.items():
        if fig is None:
            continue
        path = directory / f"{_slug(str(name))}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        out[str(name)] = str(path)
    return out


def versions() -> dict[str, str]:
    v = dict(package_versions())
    for mod in ("scipy", "matplotlib", "pydantic"):
        try:
            v[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover
            pass
    from theorylab.store import git_commit, git_dirty

    c = git_commit()
    if c:
        v["git_commit"] = c
        dirty = git_dirty()
        if dirty is not None:
            v["git_dirty"] = dirty
    return v


def train_claims(claim_ids: Sequence[str], tier: str = "quick", seeds: int | Sequence[int] | None = None,
                 backend: str = "inprocess", store: Store | None = None, force: bool = False, *,
                 progress: bool = False, workers: int | None = None, stack: bool | str = "auto",
                 device: str | None = None, threads: int | None = None) -> Any:
    """Train the runs of several claims in one sweep (each run once, however many claims share it), the
    most expensive first (estimated FLOPs of a step times steps), so the workers stay busy across claims
    instead of waiting at the end of each claim; returns the :class:`~theorylab.sweep.SweepResult`.  A run
    that fails here is left to the claim's own check (which reports it)."""
    from theorylab.runs.threads import config_step_flops
    from theorylab.sweep import run_sweep

    cfgs = []
    for cid in claim_ids:
        claim = get_claim(cid)
        for s in resolve_seeds(claim, tier, seeds):
            cfgs.extend((claim.experiment(tier, s) or {}).values())
    cost = {id(c): config_step_flops(c) * c.train.steps for c in cfgs}
    cfgs.sort(key=lambda c: -cost[id(c)])
    return run_sweep(cfgs, store=store if store is not None else Store(), backend=backend, workers=workers,
                     progress=progress, force=force, label=f"{len(claim_ids)} claims [{tier}]", stack=stack,
                     device=device, threads=threads)


def check_many(claim_ids: Sequence[str], tier: str = "quick", seeds: int | Sequence[int] | None = None,
               backend: str = "inprocess", store: Store | None = None, force: bool = False, **kw: Any
               ) -> list[ClaimResult]:
    """Validate every id first, train every claim's runs in one sweep (:func:`train_claims`), then check
    each claim in turn (measuring and deciding; its runs are in the store)."""
    for cid in claim_ids:
        get_claim(cid).params(tier)
    store = store if store is not None else Store()
    shared = {k: kw[k] for k in ("progress", "workers", "stack", "device", "threads") if k in kw}
    sweep = train_claims(claim_ids, tier, seeds, backend, store, force, **shared)
    return [check(cid, tier, seeds, backend, store, False, trained_by=sweep, **kw) for cid in claim_ids]


# --------------------------------------------------------------------------- reading results


def results(store: Store | None = None, claim_id: str | None = None, tier: str | None = None,
            latest: bool = True) -> list[ClaimResult]:
    """Stored results (the latest per claim and tier by default), oldest first."""
    store = store if store is not None else Store()
    if not store.db_path.exists():
        return []
    out = []
    for row in store.claim_results(claim_id, tier, latest=latest):
        r = ClaimResult.from_dict(row["result"])
        r.result_id = row["id"]
        out.append(r)
    return out


def last_result(claim_id: str, store: Store | None = None) -> ClaimResult | None:
    """The most recent result of a claim at any tier."""
    rs = results(store, claim_id, latest=False)
    return max(rs, key=lambda r: r.created) if rs else None


__all__ = ["BACKENDS", "ClaimResult", "check", "check_many", "train_claims", "evaluate", "results", "last_result",
           "resolve_seeds", "save_figures"]
