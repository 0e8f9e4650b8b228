"""Emergence: is a jump in a metric over a scale axis sharp, smooth, or made by the metric?  And the
random-graph order parameters that percolation stories of emergence predict (layer 1).

Three tools:

* **Smooth against sharp** (:func:`compare_fits`).  Over a sweep axis ``x`` (parameters, tokens, steps;
  positive), a metric ``y`` is fitted two ways: *smooth*, the better by AIC of a line in ``log10 x`` (2
  parameters; a power law in ``x`` for a metric that is a log-loss) and a power-law approach to a limit,
  ``c + a x^-b`` (3 parameters; an error rate or a loss falling as a power of the scale), and *sharp*, a
  logistic step in ``log10 x`` (4 parameters: floor, ceiling, midpoint ``x0``, width in decades).  The fits are compared by AIC with Gaussian errors
  (``n log(SSE/n) + 2k``; Akaike 1974) and by whether the smooth fit of the smaller scales predicts held-out
  points at the large end of the axis (Wei et al. 2022's definition of emergence: "not predictable by
  extrapolating" the smaller scales).
  The transition point ``x0`` comes with a bootstrap interval (points resampled).
* **Metric mirages** (:func:`mirage`; Schaeffer, Miranda and Koyejo 2023, "Are Emergent Abilities of Large
  Language Models a Mirage?", NeurIPS, §2): exact match on an answer of ``L`` tokens is about ``p^L`` when
  each token is right with probability ``p``.  A jump is *metric-induced* when exact match looks sharp, the
  per-token accuracy does not, and ``p^L`` predicts the exact match.
* **Giant components** (Erdős and Rényi 1960; the bipartite threshold as Lubana et al. 2025, "A
  percolation model of emergence", arXiv 2408.12578, use it): the fraction ``S`` of nodes in the giant
  component of G(n, c/n) solves ``S = 1 - exp(-c S)`` (0 for ``c <= 1``; :func:`er_giant_fraction`); a
  bipartite random graph with parts of sizes ``a`` and ``b`` and edge density ``p`` percolates at
  ``p_c = 1 / sqrt(a b)`` (:func:`bipartite_critical_density`); :func:`largest_component_fraction` is the
  order parameter of any graph (networkx), e.g. the entity-property graph a model has learned.

Every function raises :class:`~theorylab.errors.ConfigError` (one line) on bad input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from theorylab.errors import ConfigError
from theorylab.measures.scaling import one_blas_thread

__all__ = ["SmoothFit", "SharpFit", "EmergenceFit", "fit_smooth", "fit_sharp", "compare_fits", "MirageResult",
           "mirage", "er_giant_fraction", "er_graph", "bipartite_critical_density", "bipartite_graph",
           "largest_component_fraction", "graph_from_edges", "read_columns"]

# A difference in AIC of more than 10 is "essentially no support" for the worse model (Burnham and Anderson
# 2002, §2.6): the sharp fit must win by that much to call a curve sharp.
AIC_MARGIN = 10.0
# Wei et al.'s "not predictable by extrapolating smaller models", made a number: the smooth fit of the smaller
# scales misses a held-out larger scale by more than a tenth of the metric's range over the sweep (a tenth:
# far above the sampling error of an accuracy on a few thousand test items, about 0.01, and small enough that
# a plain power-law curve extrapolated one point further stays inside it).
UNPREDICTABLE = 0.1
MIN_BOOTSTRAP = 20  # fewer usable resamples give no interval (the 2.5% and 97.5% quantiles need some)


def _xy(x, y, name: str = "y") -> tuple[np.ndarray, np.ndarray]:
    try:
        xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected numbers for x and {name}") from None
    if xa.ndim > 1 or ya.ndim > 1:
        raise ConfigError(f"{name}: x and {name} must be 1-D sequences (got shapes {xa.shape} and {ya.shape})")
    xa, ya = xa.ravel(), ya.ravel()
    if xa.size != ya.size:
        raise ConfigError(f"{name}: x has {xa.size} values and {name} has {ya.size}")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise ConfigError(f"{name}: x and {name} must be finite")
    if np.any(xa <= 0):
        raise ConfigError("x: the scale axis (parameters, tokens, steps) must be > 0")
    return xa, ya


def _sigmoid(u: np.ndarray, lo: float, hi: float, u0: float, w: float) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(+large) = inf gives the floor exactly
        return lo + (hi - lo) / (1.0 + np.exp(-(u - u0) / w))


@dataclass
class SmoothFit:
    """A smooth curve over the scale axis, one of two families (the better by AIC, :func:`fit_smooth`):

    * ``kind = "log_linear"``: ``y = a + b log10 x`` (2 parameters; a power law in ``x`` for a metric that is
      a log-loss);
    * ``kind = "power_law"``: ``y = c + a x^(-b)`` with ``b > 0`` (3 parameters): a power-law approach to the
      limit ``c``, e.g. an accuracy whose error falls as a power of the scale (``a < 0``) or a loss or edit
      distance falling towards a floor (``a > 0``).
    """

    a: float
    b: float
    sse: float
    n: int
    k: int = 2
    kind: str = "log_linear"
    c: float = math.nan

    def predict(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "power_law":
            return self.c + self.a * x ** (-self.b)
        return self.a + self.b * np.log10(x)

    @property
    def aic(self) -> float:
        return _aic(self.sse, self.n, self.k)

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": self.kind, "a": self.a, "b": self.b}
        if self.kind == "power_law":
            d["c"] = self.c
        return d


@dataclass
class SharpFit:
    """``y = lo + (hi - lo) / (1 + exp(-(log10 x - log10 x0) / width))``: a step at ``x0`` over ``width``
    decades."""

    lo: float
    hi: float
    x0: float
    width: float
    sse: float
    n: int
    k: int = 4

    def predict(self, x) -> np.ndarray:
        return _sigmoid(np.log10(np.asarray(x, dtype=np.float64)), self.lo, self.hi, math.log10(self.x0), self.width)

    @property
    def aic(self) -> float:
        return _aic(self.sse, self.n, self.k)


def _aic(sse: float, n: int, k: int) -> float:
    return n * math.log(max(sse, 1e-300) / n) + 2 * k


def _fit_log_linear(xa: np.ndarray, ya: np.ndarray) -> SmoothFit:
    b, a = np.polyfit(np.log10(xa), ya, 1)
    sse = float(np.sum((ya - (a + b * np.log10(xa))) ** 2))
    return SmoothFit(float(a), float(b), sse, int(xa.size))


def _fit_power_law(xa: np.ndarray, ya: np.ndarray) -> SmoothFit:
    """``y = c + a x^-b``: for each exponent ``b`` the best ``(c, a)`` is linear least squares; ``b`` is chosen
    on a grid over (0, 4] and refined by bounded scalar minimisation (scipy)."""
    from scipy.optimize import minimize_scalar

    u = np.log10(xa) - float(np.log10(xa).mean())  # x^-b at a centred scale, for conditioning

    def solve(b: float) -> tuple[float, float, float]:
        design = np.stack([np.ones_like(u), 10.0 ** (-b * u)], 1)
        coef, *_ = np.linalg.lstsq(design, ya, rcond=None)
        return float(np.sum((design @ coef - ya) ** 2)), float(coef[0]), float(coef[1])

    grid = np.geomspace(1e-3, 4.0, 60)
    costs = [solve(b)[0] for b in grid]
    i = int(np.argmin(costs))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    b = float(minimize_scalar(lambda t: solve(t)[0], bounds=(lo, hi), method="bounded").x) if hi > lo else grid[i]
    sse, c, a_centred = solve(b)
    a = a_centred * 10.0 ** (b * float(np.log10(xa).mean()))  # back to y = c + a x^-b
    return SmoothFit(a, b, sse, int(xa.size), k=3, kind="power_law", c=c)


def fit_smooth(x, y) -> SmoothFit:
    """The better smooth curve by AIC: ``y = a + b log10 x`` (numpy.polyfit) or, with 4 points or more, the
    power-law approach ``y = c + a x^-b`` (``b`` in (0, 4]).  ``x``, ``y``: [n] (n >= 3).  Raises ConfigError."""
    xa, ya = _xy(x, y)
    if xa.size < 3 or np.unique(xa).size < 2:
        raise ConfigError("smooth fit: needs at least 3 points at 2 or more distinct x")
    best = _fit_log_linear(xa, ya)
    if xa.size >= 4 and np.unique(xa).size >= 3:
        pl = _fit_power_law(xa, ya)
        if pl.aic < best.aic:
            best = pl
    return best


@one_blas_thread
def fit_sharp(x, y, start: SharpFit | None = None) -> SharpFit:
    """Least squares of a logistic step in ``log10 x`` (scipy.optimize.least_squares from a grid of 21
    midpoints and widths, the best; from ``start`` and two neighbours of its midpoint when given, as the
    bootstrap does).  ``x``, ``y``: [n] (n >= 5).  ``width`` is bounded below by 1e-3 decades or a hundredth
    of the axis's span, whichever is smaller (a step between two neighbouring points is as sharp as the data
    can say).  Raises ConfigError for too few points or a fit scipy cannot start."""
    from scipy.optimize import least_squares

    xa, ya = _xy(x, y)
    if xa.size < 5 or np.unique(xa).size < 3:
        raise ConfigError("sharp fit: a logistic step has 4 parameters and needs at least 5 points at 3 or more "
                          "distinct x")
    u = np.log10(xa)
    span = float(u.max() - u.min())
    yr = max(float(ya.max() - ya.min()), 1e-9 * max(1.0, float(np.abs(ya).max())))
    w_lo = min(1e-3, span / 100)
    lower = [ya.min() - yr, ya.min() - yr, u.min() - span, w_lo]
    upper = [ya.max() + yr, ya.max() + yr, u.max() + span, 10 * span]
    if start is not None:
        u_s = math.log10(start.x0)
        starts = [(start.lo, start.hi, u_s + d, start.width) for d in (0.0, -span / 10, span / 10)]
    else:
        starts = [(ya.min(), ya.max(), u0, w) for u0 in np.linspace(u.min(), u.max(), 7)
                  for w in (span / 50, span / 10, span / 3)]
    best = None
    for t0 in starts:
        t0 = np.clip(np.array(t0, dtype=np.float64), lower, upper)
        t0[3] = min(max(t0[3], w_lo * 1.0001), upper[3] * 0.9999)
        try:
            r = least_squares(lambda t: _sigmoid(u, *t) - ya, t0, bounds=(lower, upper))
        except ValueError as exc:
            raise ConfigError(f"sharp fit: cannot fit a step to these values ({exc})") from None
        if best is None or r.cost < best.cost:
            best = r
    lo, hi, u0, w = (float(v) for v in best.x)
    return SharpFit(lo, hi, 10.0 ** u0, w, float(2 * best.cost), int(xa.size))


@dataclass
class EmergenceFit:
    """:func:`compare_fits`'s result: both fits, their AIC, held-out errors, the verdict and the transition."""

    smooth: SmoothFit
    sharp: SharpFit
    delta_aic: float  # smooth AIC - sharp AIC (> 0 favours the step)
    holdout_error_smooth: float  # max |y - prediction| on the held-out large-x points, fits without them
    holdout_error_sharp: float
    sharp_wins: bool
    x0_ci: tuple[float, float] = (math.nan, math.nan)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"sharp_wins": self.sharp_wins, "delta_aic": self.delta_aic, "x0": self.sharp.x0,
                "x0_ci": list(self.x0_ci), "width_decades": self.sharp.width, "step": self.sharp.hi - self.sharp.lo,
                "holdout_error_smooth": self.holdout_error_smooth, "holdout_error_sharp": self.holdout_error_sharp,
                "smooth": self.smooth.to_dict(), "notes": self.notes}


def compare_fits(x, y, *, holdout: int = 2, bootstrap: int = 200, seed: int = 0,
                 aic_margin: float = AIC_MARGIN, unpredictable: float = UNPREDICTABLE,
                 min_step: float = 0.0) -> EmergenceFit:
    """Smooth (:func:`fit_smooth`: a line in log10 x or a power-law approach to a limit) against sharp (a
    logistic step in log10 x) for a metric ``y`` over a scale axis ``x`` ([n] each, x > 0).

    ``sharp_wins`` when the step's AIC is lower by more than ``aic_margin`` (10: Burnham and Anderson's
    "essentially no support" for the other) AND the smooth curve fitted without the ``holdout`` points of
    largest ``x`` misses one of them by more than ``unpredictable`` (0.1) times the metric's range: the trend
    of the smaller scales does not extrapolate to the larger ones (Wei et al. 2022's "cannot be predicted by
    extrapolating").  The step's own held-out error is reported beside it (a step fitted before its ceiling
    is seen cannot know the ceiling either, so it is not required to do better).  A metric that moves by less
    than ``min_step`` over the sweep (in its own units: e.g. a few standard errors of an accuracy) is never a
    step, nor is a constant one, nor one whose held-out comparison cannot be made (too few distinct x).  ``x0_ci``: a 95% percentile-bootstrap interval of the step's midpoint
    (points resampled, ``numpy.random.default_rng(seed)``; each resample refitted from the full fit), or none
    with fewer than 20 usable resamples.  Raises ConfigError for too few points or bad thresholds."""
    xa, ya = _xy(x, y)
    if xa.size < 5 + holdout:
        raise ConfigError(f"compare_fits: needs at least {5 + holdout} points (5 to fit a step, {holdout} held out); "
                          f"got {xa.size}")
    if bootstrap < 0 or holdout < 1:
        raise ConfigError("compare_fits: bootstrap >= 0 and holdout >= 1")
    for name, v in (("aic_margin", aic_margin), ("unpredictable", unpredictable), ("min_step", min_step)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ConfigError(f"compare_fits: {name} must be a finite number >= 0 (got {v!r})")
    smooth, sharp = fit_smooth(xa, ya), fit_sharp(xa, ya)
    span = float(ya.max() - ya.min())
    notes: list[str] = []
    if span <= 1e-9 * max(1.0, float(np.abs(ya).max())):
        notes.append("the metric is constant over the sweep: nothing rises, so nothing is a step")
        return EmergenceFit(smooth, sharp, 0.0, 0.0, 0.0, False, (math.nan, math.nan), notes)
    order = np.argsort(xa, kind="stable")
    kept, held = order[:-holdout], order[-holdout:]
    try:
        hs = float(np.max(np.abs(fit_smooth(xa[kept], ya[kept]).predict(xa[held]) - ya[held])))
        hh = float(np.max(np.abs(fit_sharp(xa[kept], ya[kept]).predict(xa[held]) - ya[held])))
    except ConfigError as err:
        hs = hh = math.nan
        notes.append(f"held-out comparison not made, so no step is called: {err}")
    delta = smooth.aic - sharp.aic
    wins = bool(delta > aic_margin and math.isfinite(hs) and hs > unpredictable * span and span >= min_step)
    if delta > aic_margin and span < min_step:
        notes.append(f"the metric moves by {span:.4g} over the sweep, less than min_step = {min_step:g}: too small "
                     "to call a step")
    ci = (math.nan, math.nan)
    if bootstrap:
        rng = np.random.default_rng(seed)
        mids = []
        for _ in range(int(bootstrap)):
            i = rng.integers(0, xa.size, xa.size)
            if np.unique(xa[i]).size < 3:
                continue
            mids.append(math.log10(fit_sharp(xa[i], ya[i], start=sharp).x0))
        if len(mids) >= MIN_BOOTSTRAP:
            ci = (10 ** float(np.quantile(mids, 0.025)), 10 ** float(np.quantile(mids, 0.975)))
        else:
            notes.append(f"no interval for x0: {len(mids)} usable resamples, fewer than {MIN_BOOTSTRAP}")
    return EmergenceFit(smooth, sharp, float(delta), hs, hh, wins, ci, notes)


@dataclass
class MirageResult:
    """:func:`mirage`'s result."""

    exact: EmergenceFit
    per_token: EmergenceFit
    predicted_error: float  # max |exact match - per_token ** L| over the sweep
    metric_induced: bool

    def to_dict(self) -> dict[str, Any]:
        return {"metric_induced": self.metric_induced, "predicted_error": self.predicted_error,
                "exact": self.exact.to_dict(), "per_token": self.per_token.to_dict()}


def mirage(x, per_token, exact, L: int, *, tol: float = 0.05, **kw: Any) -> MirageResult:
    """Is a jump in exact match made by the metric?  ``x``: [n] scale axis; ``per_token``: [n] per-token
    accuracy in [0, 1]; ``exact``: [n] exact match on answers of ``L`` tokens.  ``metric_induced`` when exact
    match is sharp (:func:`compare_fits`), per-token accuracy is not, and ``per_token ** L`` predicts exact
    match within ``tol`` at every x (Schaeffer et al. 2023, §2: exact match ~ p^L).  ``kw`` go to
    :func:`compare_fits`.  Raises ConfigError for values outside [0, 1] or ``L < 1``."""
    xa, p = _xy(x, per_token, "per_token")
    _, e = _xy(x, exact, "exact")
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 1:
        raise ConfigError(f"L: the answer length in tokens must be a positive integer; got {L!r}")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ConfigError(f"tol: the largest |exact - p^L| still 'predicted' must lie in (0, 1) (got {tol!r})")
    for name, v in (("per_token", p), ("exact", e)):
        bad = np.nonzero((v < 0) | (v > 1))[0]
        if bad.size:
            raise ConfigError(f"{name} must be an accuracy in [0, 1]; value {v[bad[0]]:g} at point {bad[0] + 1} "
                              "is not")
    fe, fp = compare_fits(xa, e, **kw), compare_fits(xa, p, **kw)
    err = float(np.max(np.abs(e - p ** L)))
    return MirageResult(fe, fp, err, bool(fe.sharp_wins and not fp.sharp_wins and err <= tol))


def read_columns(path, columns) -> dict[str, np.ndarray]:
    """The named numeric ``columns`` of a CSV file with a header row (names matched case-insensitively,
    surrounding spaces ignored), as ``{name: [n] float64}`` in file order; blank lines skipped.  Raises
    ConfigError (one line): missing or unreadable file, no header, a missing column (listing those present),
    a cell that is not a finite number (naming the file line)."""
    from theorylab.measures.scaling import read_table

    header, rows = read_table(path)
    names = [h.strip().lower() for h in header]
    out: dict[str, np.ndarray] = {}
    for col in columns:
        if col.strip().lower() not in names:
            raise ConfigError(f"{path} has no {col!r} column (columns: {', '.join(h.strip() for h in header)})")
        j = names.index(col.strip().lower())
        vals = []
        for line, r in rows:
            if j >= len(r):
                raise ConfigError(f"{path} line {line}: the row has {len(r)} cells and no {col!r} value")
            try:
                v = float(r[j])
            except ValueError:
                raise ConfigError(f"{path} line {line}: column {col!r} is {r[j]!r}, not a number") from None
            if not math.isfinite(v):
                raise ConfigError(f"{path} line {line}: column {col!r} is not finite ({v})")
            vals.append(v)
        out[col] = np.array(vals, dtype=np.float64)
    return out


# --------------------------------------------------------------------------------- random graphs


def er_giant_fraction(c: float) -> float:
    """The fraction of nodes in the giant component of G(n, c/n) as n -> infinity: the root of
    ``S = 1 - exp(-c S)`` in (0, 1] for mean degree ``c > 1``, and 0 for ``c <= 1`` (Erdős and Rényi 1960).
    ``c = 2`` gives 0.7968.  Raises ConfigError for ``c < 0``."""
    from scipy.optimize import brentq

    if not (isinstance(c, (int, float)) and math.isfinite(c) and c >= 0):
        raise ConfigError(f"c: the mean degree must be a finite number >= 0; got {c!r}")
    if c <= 1:
        return 0.0
    # s + expm1(-c s) keeps its precision for small s (just above c = 1, S ~ 2 (c - 1)); it is negative at
    # s = (c - 1) / c (below the root) and positive at 1
    return float(brentq(lambda s: s + math.expm1(-c * s), (c - 1) / c / 2, 1.0, xtol=1e-15))


def bipartite_critical_density(n_left: int, n_right: int) -> float:
    """Edge density at which a bipartite random graph with parts of ``n_left`` and ``n_right`` nodes grows a
    giant component: ``1 / sqrt(n_left n_right)`` (the branching process alternates sides, with mean
    offspring ``p n_right`` then ``p n_left``; their product crosses 1 there).  Raises ConfigError."""
    for n in (n_left, n_right):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"part sizes must be positive integers; got {n_left!r}, {n_right!r}")
    return 1.0 / math.sqrt(n_left * n_right)


def er_graph(n: int, c: float, rng: np.random.Generator):
    """G(n, p = c / (n - 1)) as a networkx Graph, drawn with a seed taken from ``rng``."""
    import networkx as nx

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ConfigError(f"n: at least 2 nodes; got {n!r}")
    if not (isinstance(c, (int, float)) and 0 <= c <= n - 1):
        raise ConfigError(f"c: the mean degree must lie in [0, n - 1]; got {c!r}")
    return nx.fast_gnp_random_graph(int(n), c / (n - 1), seed=int(rng.integers(2**31)))


def bipartite_graph(n_left: int, n_right: int, p: float, rng: np.random.Generator):
    """A bipartite random graph (each of the ``n_left * n_right`` edges present with probability ``p``) as a
    networkx Graph; left nodes 0..n_left-1, right nodes after them."""
    import networkx as nx

    bipartite_critical_density(n_left, n_right)  # checks the sizes
    if not (isinstance(p, (int, float)) and 0 <= p <= 1):
        raise ConfigError(f"p: an edge density in [0, 1]; got {p!r}")
    g = nx.Graph()
    g.add_nodes_from(range(n_left + n_right))
    a, b = np.nonzero(rng.random((n_left, n_right)) < p)
    g.add_edges_from(zip(a.tolist(), (b + n_left).tolist()))
    return g


def graph_from_edges(n_nodes: int, edges) -> Any:
    """An undirected networkx Graph on ``n_nodes`` nodes from ``edges`` ([m, 2] pairs of node ids): e.g. the
    facts a model answers correctly, as the graph whose order parameter is tracked along training."""
    import networkx as nx

    if isinstance(n_nodes, bool) or not isinstance(n_nodes, (int, np.integer)) or n_nodes < 1:
        raise ConfigError(f"n_nodes: a positive integer; got {n_nodes!r}")
    e = np.asarray(list(edges) if not isinstance(edges, np.ndarray) else edges, dtype=np.int64).reshape(-1, 2)
    if e.size and (e.min() < 0 or e.max() >= n_nodes):
        raise ConfigError(f"edges: node ids must lie in 0..{n_nodes - 1}")
    g = nx.Graph()
    g.add_nodes_from(range(int(n_nodes)))
    g.add_edges_from(e.tolist())
    return g


def largest_component_fraction(g) -> float:
    """The order parameter of a graph: the share of its nodes in its largest connected component (weakly
    connected for a directed graph); 0 for an empty graph.  ``g``: a networkx graph."""
    import networkx as nx

    if not isinstance(g, nx.Graph):
        raise ConfigError(f"expected a networkx graph, got {type(g).__name__}")
    n = g.number_of_nodes()
    if n == 0:
        return 0.0
    comps = nx.weakly_connected_components(g) if g.is_directed() else nx.connected_components(g)
    return max(len(c) for c in comps) / n
