"""Scaling-law fitters: Chinchilla Approach 3 (parametric), Approach 2 (IsoFLOP) and Kaplan's laws (layer 1).

Units throughout: ``N`` parameters, ``D`` training tokens, ``C`` training FLOP (``C = 6 N D``, Kaplan et al.
2020, section 2.1), ``loss`` in nats per token.  Every array is 1-D float64; every function raises
:class:`~theorylab.errors.ConfigError` (one line naming the problem) on bad input.

Approach 3 (Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", arXiv 2203.15556,
section 3.3 and appendix D.2; as replicated by Besiroglu, Erdil, Barnett, You 2024, "Chinchilla Scaling:
A replication attempt", arXiv 2404.10102, section 2)
    ``L(N, D) = E + A / N^alpha + B / D^beta``, fitted in log space as
    ``log L = LSE(a - alpha log N, b - beta log D, e)`` with ``A = e^a, B = e^b, E = e^e``, a Huber loss
    (``delta = 1e-3``) on the log residuals SUMMED over points, L-BFGS-B from the 4,500-start grid
    ``alpha, beta in {0, 0.5, .., 2}``, ``e in {-1, -0.5, .., 1}``, ``a, b in {0, 5, .., 25}``.
    Here the grid's objective is evaluated at once (numpy, vectorised) and only the best ``refine`` starts
    are refined with analytic gradients; on the public Chinchilla points the best 64 starts reach the same
    optimum as refining all 4,500 (``tests/test_scaling_fit.py``, slow test; ``benchmarks/bench_scaling_fit.py``).
    Compute-optimal allocation under ``C = 6 N D``: Hoffmann et al. eq. 4,
    ``N_opt = G (C/6)^(beta/(alpha+beta))``, ``D_opt = (C/6) / N_opt``, ``G = (alpha A / (beta B))^(1/(alpha+beta))``.

Approach 2 (Hoffmann et al. 2022, section 3.2; the snapping of the public points follows
Open-Athena/scaling-law-analysis ``src/scaling_law_analysis/data/extract.py``; the noise-free bias is Czech,
Xu, Elmatad, Wang, Held 2026, "Problems with Chinchilla Approach 2", arXiv 2603.22339)
    Group points by compute budget, fit ``loss = p (log10 N)^2 + q log10 N + r`` per budget, take the vertex
    ``N* = 10^(-q / 2p)`` and ``D* = C / (6 N*)``, then regress ``log10 N*`` and ``log10 D*`` on ``log10 C``.

Kaplan et al. 2020 ("Scaling Laws for Neural Language Models", arXiv 2001.08361, eqs. 1.1 and 1.5)
    ``L(N) = (N_c / N)^alpha_N`` and ``L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D``.

Uncertainty everywhere is a nonparametric bootstrap (resample points with replacement and refit; Efron &
Tibshirani 1993): percentile 95% intervals and the standard deviation of the resampled estimates as the
standard error, from ``numpy.random.default_rng(seed)`` so results repeat exactly.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import least_squares, minimize

from theorylab.errors import ConfigError

__all__ = [
    "Points", "read_table", "read_points", "points", "drop_highest_loss", "chinchilla_loss",
    "Approach3Fit", "fit_approach3", "huber_objective", "approach3_grid",
    "Approach2Fit", "snap_to_budgets", "group_by_compute", "fit_approach2",
    "isoflop_surface", "optimal_allocation", "law_functions",
    "KaplanFit", "fit_kaplan_n", "fit_kaplan_nd", "fit_scaling_law", "APPROACHES",
    "CHINCHILLA_BUDGETS", "DEFAULT_BOOTSTRAP", "CHINCHILLA_CSV", "chinchilla_points",
]

# The 9 IsoFLOP budgets of Hoffmann et al. 2022, Figure 3 (as listed in Open-Athena/scaling-law-analysis,
# ``CHINCHILLA_ISOFLOP_BUDGETS``), in FLOP.
CHINCHILLA_BUDGETS = (6e18, 1e19, 3e19, 6e19, 1e20, 3e20, 6e20, 1e21, 3e21)

# Bootstrap resamples a command-line fit uses by default: fit + 1,000 resamples + Approach 2 on the public
# 240 points take about 4.4 s on an idle 2-core machine (benchmarks/bench_scaling_fit.py; docs/BENCHMARKS.md).
DEFAULT_BOOTSTRAP = 1000

_PARAMS3 = ("E", "A", "B", "alpha", "beta")

# The public Chinchilla points (Besiroglu et al. 2024, epoch-research/analyzing-chinchilla
# ``data/svg_extracted_data.csv``, 245 rows), shipped beside this module (see data/README.md there).
CHINCHILLA_CSV = Path(__file__).resolve().parent / "data" / "chinchilla_svg_extracted_data.csv"


# --------------------------------------------------------------------------------------------- points


@dataclass
class Points:
    """Training runs: ``N`` parameters, ``D`` tokens, ``C`` FLOP, final ``loss`` (nats/token).

    All four are float64 arrays of the same length ``n``; build them with :func:`points` or
    :func:`read_points`, which validate.
    """

    N: np.ndarray
    D: np.ndarray
    C: np.ndarray
    loss: np.ndarray

    def __len__(self) -> int:
        return int(self.N.shape[0])

    def take(self, idx) -> Points:
        """The points at ``idx`` (an index array or boolean mask), as a new :class:`Points`."""
        return Points(self.N[idx], self.D[idx], self.C[idx], self.loss[idx])


def _column(name: str, x, where=None) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be numbers ({exc})") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ConfigError(f"{name} must be a 1-D array of numbers, got shape {arr.shape}")
    where = where or (lambda i: f"index {i}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ConfigError(f"{name} is {arr[bad[0]]} (not a finite number) at {where(int(bad[0]))}")
    bad = np.flatnonzero(arr <= 0)
    if bad.size:
        raise ConfigError(f"{name} must be > 0; it is {arr[bad[0]]:g} at {where(int(bad[0]))}")
    return arr


def points(N, loss, D=None, C=None, *, _where=None) -> Points:
    """Validated :class:`Points` from arrays.

    Args: ``N`` (parameters), ``loss`` (nats/token) and at least one of ``D`` (tokens) or ``C`` (FLOP), each
    a 1-D array of length ``n`` (a scalar counts as length 1).  ``D = C / (6 N)`` when ``D`` is absent and
    ``C = 6 N D`` when ``C`` is absent (both given: kept as given, unchecked) (Kaplan et al. 2020, section 2.1; Besiroglu et al. 2024, section 2).

    Raises ConfigError: neither ``D`` nor ``C`` given, lengths differ, no points, or any value NaN, infinite
    or <= 0.
    """
    if D is None and C is None:
        raise ConfigError("points need tokens D or compute C (C = 6 N D); neither was given")
    Na = _column("N", N, _where)
    La = _column("loss", loss, _where)
    Da = _column("D", D, _where) if D is not None else None
    Ca = _column("C", C, _where) if C is not None else None
    sizes = {"N": Na.size, "loss": La.size, **({"D": Da.size} if Da is not None else {}),
             **({"C": Ca.size} if Ca is not None else {})}
    if len(set(sizes.values())) != 1:
        raise ConfigError("points arrays differ in length: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    if Na.size == 0:
        raise ConfigError("points: no data (0 rows)")
    if Da is None:
        Da = Ca / (6.0 * Na)
    if Ca is None:
        Ca = 6.0 * Na * Da
    return Points(Na, Da, Ca, La)


def drop_highest_loss(p: Points, k: int) -> Points:
    """Drop the ``k`` highest-loss points as Besiroglu et al. (2024, section 2) do: keep ``loss < sorted(loss)[-k]``.

    With ties at the threshold this drops more than ``k`` (exactly as Epoch's notebook does).  ``k = 0``
    returns ``p``.  Raises ConfigError unless ``0 <= k < len(p)``.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0 or k >= len(p):
        raise ConfigError(f"drop_highest must be an integer in [0, {len(p) - 1}] (fewer than the {len(p)} points); got {k!r}")
    if k == 0:
        return p
    threshold = np.sort(p.loss)[-k]
    return p.take(p.loss < threshold)


_ALIASES = {
    "N": ("n", "model size", "params", "parameters"),
    "D": ("d", "tokens"),
    "C": ("c", "training flop", "flop", "flops", "compute"),
    "loss": ("loss",),
}


def read_table(path, what: str = "file") -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A CSV file with a header row: ``(header, [(file line, cells)])``, blank lines skipped (lines numbered
    from 2, the first after the header).  ``what`` names the file in errors.  Raises ConfigError (one line)
    for a path that is not a path, a missing or unreadable file, or one without a header row."""
    if not isinstance(path, (str, Path)):
        raise ConfigError(f"{what}: expected a path, got {type(path).__name__}")
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: a byte-order mark (Excel) is not a name
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = list(reader)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from None
    if not header:
        raise ConfigError(f"{what} {path} is empty (no header row)")
    return header, [(i, r) for i, r in enumerate(rows, start=2) if any(cell.strip() for cell in r)]


def read_points(path, drop_highest: int = 0) -> Points:
    """Read :class:`Points` from a CSV file with a header row.

    Columns (case-insensitive, surrounding spaces ignored): ``N`` (aliases ``Model Size``, ``params``),
    ``loss``, and ``D`` (alias ``tokens``) or ``C`` (aliases ``Training FLOP``, ``flops``); other columns are
    ignored.  So the public Chinchilla file (Besiroglu et al. 2024, ``data/svg_extracted_data.csv``; columns
    ``Model Size``, ``Training FLOP``, ``loss``) reads as is, with ``D = C / (6 N)``.  ``drop_highest = k``
    then drops the ``k`` highest losses (:func:`drop_highest_loss`; Epoch's main fit uses 5: 245 -> 240 rows).

    Raises ConfigError: missing or unreadable file, no header, missing column, a cell that is not a number,
    NaN or a value <= 0 (naming the line), or a bad ``drop_highest``.
    """
    path = Path(path) if isinstance(path, (str, Path)) else path
    header, numbered = read_table(path, "points file")
    names = [h.strip().lower() for h in header]
    cols: dict[str, int] = {}
    for key, aliases in _ALIASES.items():
        for alias in aliases:
            if alias in names:
                cols[key] = names.index(alias)
                break
    for key in ("N", "loss"):
        if key not in cols:
            raise ConfigError(f"points file {path} has no {key!r} column (columns: {', '.join(header)})")
    if "D" not in cols and "C" not in cols:
        raise ConfigError(f"points file {path} has neither a 'D' (tokens) nor a 'C' (FLOP) column "
                          f"(columns: {', '.join(header)})")
    if not numbered:
        raise ConfigError(f"points file {path} has a header but no data rows")
    values: dict[str, list[float]] = {k: [] for k in cols}
    for line, row in numbered:
        for key, j in cols.items():
            cell = row[j].strip() if j < len(row) else ""
            try:
                values[key].append(float(cell))
            except ValueError:
                raise ConfigError(f"points file {path}, line {line}: column {header[j].strip()!r} is "
                                  f"{cell!r}, not a number") from None
    p = points(values["N"], values["loss"], values.get("D"), values.get("C"),
               _where=lambda i: f"line {numbered[i][0]} of {path}")
    return drop_highest_loss(p, drop_highest)


def chinchilla_points(drop_highest: int = 5) -> Points:
    """The public Chinchilla points (:data:`CHINCHILLA_CSV`), by default as Besiroglu et al. 2024 fit them.

    Hoffmann et al. 2022, Figure 4 (left), reconstructed from the SVG by Besiroglu et al. 2024 (arXiv 2404.10102,
    section 2): 245 rows; ``drop_highest = 5`` (their main fit) leaves 240; ``0`` keeps all 245 (as Approach 2
    on the 9 budgets wants).  ``D = C / (6 N)``.  Raises ConfigError if the file is missing.
    """
    return read_points(CHINCHILLA_CSV, drop_highest=drop_highest)


def chinchilla_loss(N, D, E, A, B, alpha, beta) -> np.ndarray:
    """``E + A / N^alpha + B / D^beta`` (Hoffmann et al. 2022, eq. 2), in nats/token.

    ``N`` (parameters) and ``D`` (tokens) broadcast against each other; returns a float64 array of their
    broadcast shape.
    """
    N = np.asarray(N, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64)
    return E + A / N**alpha + B / D**beta


def optimal_allocation(E, A, B, alpha, beta, C) -> tuple[np.ndarray, np.ndarray]:
    """Compute-optimal ``(N_opt, D_opt)`` at budgets ``C`` (FLOP) under ``C = 6 N D``.

    Hoffmann et al. 2022, eq. 4 (appendix D.2): ``G = (alpha A / (beta B))^(1/(alpha+beta))``,
    ``N_opt = G (C/6)^(beta/(alpha+beta))``, ``D_opt = (C/6) / N_opt``.  ``E`` does not enter (kept so the
    five parameters pass together).  ``C``: scalar or array (any shape); returns two float64 arrays of that
    shape (parameters, tokens).  Raises ConfigError for ``C <= 0`` or non-positive ``A, B, alpha, beta``.
    """
    C = np.asarray(C, dtype=np.float64)
    if not np.all(np.isfinite(C)) or np.any(C <= 0):
        raise ConfigError("optimal_allocation: compute C must be finite and > 0")
    if min(A, B, alpha, beta) <= 0:
        raise ConfigError(f"the compute-optimal allocation is undefined: it needs A, B, alpha, beta > 0 (loss that "
                          f"falls with both N and D); the fit has A={A:g} B={B:g} alpha={alpha:g} beta={beta:g}")
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    N_opt = G * (C / 6.0) ** (beta / (alpha + beta))
    return N_opt, (C / 6.0) / N_opt


def law_functions(E, A, B, alpha, beta):
    """The fitted law as two callables for figures and predictions: ``predict(N, D)`` (loss, nats/token;
    :func:`chinchilla_loss`) and ``allocation(C)`` (``(N_opt, D_opt)``; :func:`optimal_allocation`), or
    ``None`` for ``allocation`` where it is undefined (an exponent or coefficient at or below 0)."""
    def predict(N, D):
        return chinchilla_loss(N, D, E, A, B, alpha, beta)

    def allocation(C):
        return optimal_allocation(E, A, B, alpha, beta, C)

    return predict, (allocation if min(A, B, alpha, beta) > 0 else None)


# ---------------------------------------------------------------------------------------- bootstrap


def _summarise(samples: np.ndarray, names) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
    """Percentile 95% intervals and standard errors of the columns of ``samples`` [n_boot, k]."""
    if samples.shape[0] < 2:
        return {}, {}
    lo, hi = np.percentile(samples, [2.5, 97.5], axis=0)
    sd = samples.std(axis=0, ddof=1)
    return ({k: (float(lo[i]), float(hi[i])) for i, k in enumerate(names)},
            {k: float(sd[i]) for i, k in enumerate(names)})


MIN_BOOTSTRAP = 20  # fewer resamples cannot give a 95% percentile interval (its 2.5% tail is less than half a draw)


def _check_points(p) -> None:
    if not isinstance(p, Points):
        raise ConfigError(f"expected Points (theorylab.measures.scaling.points(N, loss, D=..., C=...) or "
                          f"read_points(path)), got {type(p).__name__}")


def _check_bootstrap(bootstrap, seed) -> None:
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise ConfigError(f"bootstrap must be an integer >= 0 (resamples); got {bootstrap!r}")
    if 0 < bootstrap < MIN_BOOTSTRAP:
        raise ConfigError(f"bootstrap: {bootstrap} resamples cannot give a 95% interval; give 0 (none) or at least "
                          f"{MIN_BOOTSTRAP}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be an integer; got {seed!r}")


def _entry(value: float, ci: dict, se: dict, key: str) -> dict[str, Any]:
    return {"value": float(value), "ci": list(ci[key]) if key in ci else None,
            "se": se.get(key)}


# ---------------------------------------------------------------------------------------- Approach 3


def approach3_grid() -> np.ndarray:
    """The 4,500 initialisations of Hoffmann et al. 2022 (appendix D.2) / Besiroglu et al. 2024 (section 2).

    Returns float64 [4500, 5], columns ``(a, b, e, alpha, beta)``: ``alpha, beta in {0, 0.5, .., 2}``,
    ``e in {-1, -0.5, .., 1}``, ``a, b in {0, 5, .., 25}``.
    """
    ab = np.arange(0.0, 30.0, 5.0)
    e = np.arange(-1.0, 1.01, 0.5)
    al = np.arange(0.0, 2.01, 0.5)
    g = np.meshgrid(ab, ab, e, al, al, indexing="ij")
    return np.stack([x.ravel() for x in g], axis=1)


def _lse3(u1, u2, u3):
    """log(e^u1 + e^u2 + e^u3) and the three softmax weights (broadcasting)."""
    m = np.maximum(np.maximum(u1, u2), u3)
    e1, e2, e3 = np.exp(u1 - m), np.exp(u2 - m), np.exp(u3 - m)
    s = e1 + e2 + e3
    return m + np.log(s), e1 / s, e2 / s, e3 / s


def _huber(r, delta):
    ar = np.abs(r)
    return np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))


def huber_objective(params, logN, logD, logL, delta) -> float:
    """Summed Huber loss of the log residuals ``log L - LSE(a - alpha log N, b - beta log D, e)``.

    ``params``: ``(a, b, e, alpha, beta)`` with ``A = e^a``, ``B = e^b``, ``E = e^e`` (Epoch's order);
    ``logN, logD, logL``: natural logs of parameters, tokens and loss, float arrays [n]; ``delta``: the Huber
    threshold (1e-3 in Hoffmann et al. 2022, appendix D.2).  Huber(r) = r^2/2 for |r| <= delta, else
    delta (|r| - delta/2) (scipy.special.huber's convention).  Returns the SUM over points (Besiroglu et al.
    2024, section 2, show that a mean with default tolerances stops early).
    """
    a, b, e, alpha, beta = (float(x) for x in params)
    lse = _lse3(a - alpha * logN, b - beta * logD, e)[0]
    return float(np.sum(_huber(logL - lse, delta)))


def _objective_grad(x, logN, logD, logL, delta):
    a, b, e, alpha, beta = x
    lse, w1, w2, w3 = _lse3(a - alpha * logN, b - beta * logD, e)
    r = logL - lse
    ar = np.abs(r)
    inner = ar <= delta
    f = np.sum(np.where(inner, 0.5 * r * r, delta * (ar - 0.5 * delta)))
    g = -np.clip(r, -delta, delta)  # d huber / d lse
    gw1, gw2 = g * w1, g * w2
    grad = np.array([gw1.sum(), gw2.sum(), (g * w3).sum(), -(gw1 * logN).sum(), -(gw2 * logD).sum()])
    return f, grad


def _grid_objective(grid, logN, logD, logL, delta, chunk=500) -> np.ndarray:
    """The summed Huber objective at every row of ``grid`` [k, 5] at once; returns [k]."""
    out = np.empty(grid.shape[0])
    for s in range(0, grid.shape[0], chunk):
        g = grid[s:s + chunk]
        lse = _lse3(g[:, 0:1] - g[:, 3:4] * logN, g[:, 1:2] - g[:, 4:5] * logD, g[:, 2:3])[0]
        out[s:s + chunk] = _huber(logL - lse, delta).sum(axis=1)
    return out


def one_blas_thread(fn):
    """Run ``fn`` with BLAS/LAPACK limited to one thread (threadpoolctl).  The fits here are thousands of tiny
    L-BFGS-B steps on 5 numbers; a multi-threaded BLAS spin-waits on every one, and on a busy 2-core machine
    that made a fit of 25 points take 41 s instead of 1.3 s (measured)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            return fn(*args, **kwargs)

    return wrapper


_LBFGS = {"maxiter": 5000, "maxfun": 20000, "ftol": 1e-15, "gtol": 1e-12, "maxcor": 20}
# Box for (a, b, e, alpha, beta): far outside any fitted law (A, B up to e^60, E from 1e-6 nats, exponents in
# [0, 10]), so no interior optimum is touched; it stops a fit whose optimum is at infinity (E -> 0 as e -> -inf,
# which a bootstrap resample of a sweep that never levels off can have) at the box instead of after 5,000
# iterations.  Besiroglu et al.'s fit is unbounded; on the public points both give the same optimum (tests).
_BOUNDS = [(-30.0, 60.0), (-30.0, 60.0), (math.log(1e-6), 10.0), (0.0, 10.0), (0.0, 10.0)]


def _refine(starts, logN, logD, logL, delta) -> tuple[np.ndarray, float]:
    """L-BFGS-B (scipy, analytic gradient) from each row of ``starts``; the best ``(x, objective)``."""
    best_x, best_f = None, math.inf
    for x0 in starts:
        res = minimize(_objective_grad, np.clip(x0, [b[0] for b in _BOUNDS], [b[1] for b in _BOUNDS]),
                       args=(logN, logD, logL, delta), jac=True, method="L-BFGS-B", bounds=_BOUNDS,
                       options=_LBFGS)
        if np.isfinite(res.fun) and res.fun < best_f and np.all(np.isfinite(res.x)):
            best_x, best_f = res.x, float(res.fun)
    if best_x is None:
        raise ConfigError("Approach 3: L-BFGS-B found no finite optimum from any start (check the data)")
    return best_x, best_f


@dataclass
class Approach3Fit:
    """Result of :func:`fit_approach3`: ``L(N, D) = E + A / N^alpha + B / D^beta`` (loss in nats/token).

    ``objective``: the summed Huber loss at the optimum; ``ci``: 95% percentile bootstrap intervals and
    ``se``: bootstrap standard errors of ``E, A, B, alpha, beta`` (both empty when ``n_bootstrap`` is 0);
    ``samples``: the bootstrap estimates [n_bootstrap, 5] in the fit's own coordinates
    ``(log A, log B, log E, alpha, beta)`` (Epoch's ``a, b, e, alpha, beta``), or None without bootstrap.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float
    n_points: int
    delta: float
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    se: dict[str, float] = field(default_factory=dict)
    n_bootstrap: int = 0
    n_refined: int = 0
    samples: np.ndarray | None = field(default=None, repr=False)

    def predict(self, N, D) -> np.ndarray:
        """Predicted loss (nats/token) at ``N`` parameters and ``D`` tokens (broadcast arrays)."""
        return chinchilla_loss(N, D, self.E, self.A, self.B, self.alpha, self.beta)

    def optimal_allocation(self, C) -> tuple[np.ndarray, np.ndarray]:
        """``(N_opt, D_opt)`` at compute ``C`` (FLOP) under ``C = 6 N D`` (Hoffmann et al. 2022, eq. 4)."""
        return optimal_allocation(self.E, self.A, self.B, self.alpha, self.beta, C)

    def tokens_per_parameter(self, C) -> np.ndarray:
        """``D_opt / N_opt`` at compute ``C`` (FLOP); Besiroglu et al. 2024 get ~18 at 5.76e23, ~21 at 1e21."""
        N_opt, D_opt = self.optimal_allocation(C)
        return D_opt / N_opt

    @property
    def exponents(self) -> tuple[float, float]:
        """``(a, b)`` with ``N_opt ∝ C^a``, ``D_opt ∝ C^b``: ``a = beta/(alpha+beta)``, ``b = alpha/(alpha+beta)``."""
        s = self.alpha + self.beta
        return self.beta / s, self.alpha / s

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``E, A, B, alpha, beta`` each ``{"value", "ci": [lo, hi] or None, "se"}``, the allocation
        exponents ``a, b`` likewise (under ``"exponents"``), ``n_points``, ``objective``, ``delta``,
        ``n_bootstrap``, ``n_refined``."""
        out: dict[str, Any] = {k: _entry(getattr(self, k), self.ci, self.se, k) for k in _PARAMS3}
        a, b = self.exponents
        ex_ci: dict = {}
        ex_se: dict = {}
        if self.samples is not None and len(self.samples) >= 2:
            s = self.samples[:, 3] + self.samples[:, 4]
            ex_ci, ex_se = _summarise(np.stack([self.samples[:, 4] / s, self.samples[:, 3] / s], axis=1), ("a", "b"))
        out["exponents"] = {"a": _entry(a, ex_ci, ex_se, "a"), "b": _entry(b, ex_ci, ex_se, "b")}
        out.update(n_points=self.n_points, objective=self.objective, delta=self.delta,
                   n_bootstrap=self.n_bootstrap, n_refined=self.n_refined)
        return out


@one_blas_thread
def fit_approach3(p: Points, *, delta: float = 1e-3, bootstrap: int = 0, seed: int = 0,
                  refine: int | None = 64, bootstrap_starts: int = 0) -> Approach3Fit:
    """Fit ``L = E + A/N^alpha + B/D^beta`` by Hoffmann et al.'s Approach 3 as Besiroglu et al. 2024 replicate it.

    Objective: :func:`huber_objective` (Huber ``delta`` on log residuals, summed over the ``n`` points of
    ``p``).  Starts: :func:`approach3_grid` (4,500 rows), all scored at once; L-BFGS-B (scipy, analytic
    gradient, tight tolerances) from the ``refine`` best of them (``None``: all 4,500, as Epoch did;
    Hoffmann et al. 2022, appendix D.2; Besiroglu et al. 2024, section 2).  The best refined optimum wins.

    Bootstrap (``bootstrap`` resamples, ``numpy.random.default_rng(seed)``): resample the points with
    replacement and refit from the full-data optimum plus the ``bootstrap_starts`` best grid starts on the
    resample (default 0: on the public points, 100 resamples refitted with 1 or 3 extra grid starts gave the
    same estimates to ~1e-6 relative at 10-100x the time); ``ci`` are percentile 95% intervals and ``se`` standard deviations of ``E, A, B, alpha, beta``
    (Besiroglu et al. used 4,000 resamples: their SEs E 0.026, A 124, B 1293, alpha 0.015, beta 0.021).

    Raises ConfigError: fewer than 5 points (the law has 5 parameters), ``delta <= 0``, bad ``refine``,
    ``bootstrap`` or ``seed``.
    """
    _check_points(p)
    if len(p) < 5:
        raise ConfigError(f"Approach 3 fits 5 parameters and needs at least 5 points; got {len(p)}")
    if not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta > 0):
        raise ConfigError(f"delta (the Huber threshold) must be a number > 0; got {delta!r}")
    if refine is not None and (isinstance(refine, bool) or not isinstance(refine, (int, np.integer)) or refine < 1):
        raise ConfigError(f"refine must be a positive integer (starts to refine) or None (all); got {refine!r}")
    if isinstance(bootstrap_starts, bool) or not isinstance(bootstrap_starts, (int, np.integer)) or bootstrap_starts < 0:
        raise ConfigError(f"bootstrap_starts must be an integer >= 0; got {bootstrap_starts!r}")
    _check_points(p)
    _check_bootstrap(bootstrap, seed)
    logN, logD, logL = np.log(p.N), np.log(p.D), np.log(p.loss)
    grid = approach3_grid()

    def best_starts(lN, lD, lL, k):
        if k >= grid.shape[0]:
            return grid
        if k == 0:
            return grid[:0]
        f = _grid_objective(grid, lN, lD, lL, delta)
        idx = np.argpartition(f, k - 1)[:k]
        return grid[idx[np.argsort(f[idx], kind="stable")]]

    k = grid.shape[0] if refine is None else int(refine)
    x, obj = _refine(best_starts(logN, logD, logL, k), logN, logD, logL, delta)

    def natural(v):  # (a, b, e, alpha, beta) -> (E, A, B, alpha, beta)
        with np.errstate(over="ignore"):
            return np.stack([np.exp(v[..., 2]), np.exp(v[..., 0]), np.exp(v[..., 1]), v[..., 3], v[..., 4]], axis=-1)

    est = natural(x)
    samples = None
    ci: dict = {}
    se: dict = {}
    if bootstrap:
        rng = np.random.default_rng(seed)
        n = len(p)
        rows = []
        for _ in range(int(bootstrap)):
            i = rng.integers(0, n, size=n)
            lN, lD, lL = logN[i], logD[i], logL[i]
            starts = np.vstack([x[None, :], best_starts(lN, lD, lL, bootstrap_starts)])
            try:
                xb, _ = _refine(starts, lN, lD, lL, delta)
            except ConfigError:
                continue
            rows.append(xb)
        samples = np.array(rows).reshape(-1, 5)
        nat = natural(samples)
        keep = np.all(np.isfinite(nat), axis=1)
        samples = samples[keep]
        ci, se = _summarise(nat[keep], _PARAMS3)
    return Approach3Fit(*(float(v) for v in est), objective=obj, n_points=len(p), delta=float(delta), ci=ci,
                        se=se, n_bootstrap=int(bootstrap), n_refined=k, samples=samples)


# ---------------------------------------------------------------------------------------- Approach 2


def _budgets_array(budgets) -> np.ndarray:
    b = _column("budgets", budgets)
    if b.size == 0:
        raise ConfigError("budgets: give at least one compute budget (FLOP)")
    if np.unique(b).size != b.size:
        raise ConfigError("budgets must be distinct")
    return b


def snap_to_budgets(p: Points, budgets, tol: float = 0.10) -> tuple[Points, np.ndarray]:
    """Assign each point to the nearest compute budget, as Open-Athena do for the public Chinchilla points.

    (Open-Athena/scaling-law-analysis, ``src/scaling_law_analysis/data/extract.py``, ``fetch_epochai_chinchilla``.)
    ``N`` and ``C`` are first rounded to integers; a point's budget is the one with the smallest relative
    error ``|C / budget - 1|``, kept if that error is below ``tol`` (else the point is dropped); of several
    points with the same rounded ``N`` and budget only the one with the smallest error is kept.

    Args: ``p`` [n points], ``budgets`` (FLOP, any order), ``tol`` relative.  Returns the kept points (their
    original values, in their original order) [m] and their budgets [m] (FLOP).  On the public file
    (245 rows) with the 9 Chinchilla budgets and tol 0.10 this keeps 123 points.
    Raises ConfigError for non-positive or repeated budgets or ``tol`` outside (0, 1).
    """
    b = _budgets_array(budgets)
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ConfigError(f"tol (relative snap tolerance) must be in (0, 1); got {tol!r}")
    n_r = np.round(p.N)
    c_r = np.round(p.C)
    rel = np.abs(c_r[:, None] / b[None, :] - 1.0)
    j = np.argmin(rel, axis=1)
    err = rel[np.arange(len(p)), j]
    best: dict[tuple[float, int], int] = {}
    for i in np.flatnonzero(err < tol):
        key = (float(n_r[i]), int(j[i]))
        if key not in best or err[i] < err[best[key]]:
            best[key] = int(i)
    keep = np.array(sorted(best.values()), dtype=int)
    return p.take(keep), b[j[keep]]


def group_by_compute(p: Points, gap: float = 0.1) -> tuple[Points, np.ndarray]:
    """Group points into compute budgets when none are given: cluster ``log10 C``.

    Sort ``log10 C`` and start a new group wherever two consecutive values differ by more than ``gap``
    decades (0.1 decade = a factor 1.26); a group's budget is the geometric mean of its ``C``.  Suits sweeps
    whose runs sit on a few well-separated IsoFLOP budgets (each run's C within ~25% of its budget);
    a continuum of C values becomes one group.  Returns all points (original order) [n] and their group's
    budget [n] (FLOP).  Raises ConfigError for ``gap <= 0``.
    """
    if not (isinstance(gap, (int, float)) and gap > 0):
        raise ConfigError(f"gap (decades of C between IsoFLOP groups) must be > 0; got {gap!r}")
    lc = np.log10(p.C)
    order = np.argsort(lc, kind="stable")
    label = np.empty(len(p), dtype=int)
    label[order] = np.concatenate([[0], np.cumsum(np.diff(lc[order]) > gap)])
    centre = np.array([lc[label == g].mean() for g in range(label.max() + 1)])
    for g in range(label.max() + 1):
        span = lc[label == g].max() - lc[label == g].min()
        if span > 3 * gap:
            lo, hi = 10 ** lc[label == g].min(), 10 ** lc[label == g].max()
            raise ConfigError(f"Approach 2: the points do not fall into separate compute budgets ({int((label == g).sum())} "
                              f"of them span {lo:.3g}..{hi:.3g} FLOP without a gap of {gap:g} decades); give the "
                              "budgets (--budgets) so that each point snaps to one")
    return p, 10.0 ** centre[label]


@dataclass
class Approach2Fit:
    """Result of :func:`fit_approach2`: ``log10 N* = a0 + a log10 C``, ``log10 D* = b0 + b log10 C``.

    ``budgets``: the budgets (FLOP) whose parabola entered the fit; ``vertices``: per budget a dict with
    ``C``, ``N_star``, ``D_star``, ``n_points``, the parabola ``p, q, r`` (loss = p x^2 + q x + r, x = log10 N),
    ``loss_star`` (the parabola's minimum) and ``N_range``; ``dropped``: budgets left out and why;
    ``n_points``: points in the budgets used; ``grouping``: how points were grouped, in words; ``ci``/``se``:
    bootstrap 95% percentile intervals / standard errors of ``a, b, a0, b0`` (empty without bootstrap).
    """

    a: float
    a0: float
    b: float
    b0: float
    budgets: list[float]
    vertices: list[dict]
    n_points: int
    grouping: str
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    se: dict[str, float] = field(default_factory=dict)
    n_bootstrap: int = 0
    dropped: list[dict] = field(default_factory=list)
    n_bootstrap_failed: int = 0

    def optimal_N(self, C) -> np.ndarray:
        """``N*(C) = 10^(a0 + a log10 C)`` (parameters) at compute ``C`` (FLOP)."""
        return 10.0 ** (self.a0 + self.a * np.log10(np.asarray(C, dtype=np.float64)))

    def optimal_D(self, C) -> np.ndarray:
        """``D*(C) = 10^(b0 + b log10 C)`` (tokens) at compute ``C`` (FLOP)."""
        return 10.0 ** (self.b0 + self.b * np.log10(np.asarray(C, dtype=np.float64)))

    def tokens_per_parameter(self, C) -> np.ndarray:
        """``D*(C) / N*(C)`` extrapolated from the two regressions."""
        return self.optimal_D(C) / self.optimal_N(C)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``a, b, a0, b0`` each ``{"value", "ci": [lo, hi] or None, "se"}``, ``n_points``,
        ``budgets``, ``vertices``, ``grouping``, ``dropped``, ``n_bootstrap``, ``n_bootstrap_failed``."""
        out: dict[str, Any] = {k: _entry(getattr(self, k), self.ci, self.se, k) for k in ("a", "b", "a0", "b0")}
        out.update(n_points=self.n_points, budgets=[float(c) for c in self.budgets],
                   vertices=[dict(v) for v in self.vertices], grouping=self.grouping,
                   dropped=[dict(d) for d in self.dropped], n_bootstrap=self.n_bootstrap,
                   n_bootstrap_failed=self.n_bootstrap_failed)
        return out


def _parabola(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float] | str:
    """``(p, q, r)`` of ``y = p x^2 + q x + r`` or the reason there is no vertex."""
    if np.unique(x).size < 3:
        return f"{np.unique(x).size} distinct model sizes (< 3)"
    p, q, r = np.polyfit(x, y, 2)
    if not p > 0:
        return f"parabola opens downward (p = {p:.3g})"
    return float(p), float(q), float(r)


def _lines(logC: np.ndarray, logN: np.ndarray) -> tuple[float, float, float, float]:
    """``(a, a0, b, b0)``: slopes and intercepts of log10 N* and log10 D* = log10(C/6) - log10 N* on log10 C."""
    a, a0 = np.polyfit(logC, logN, 1)
    b, b0 = np.polyfit(logC, logC - math.log10(6.0) - logN, 1)
    return float(a), float(a0), float(b), float(b0)


@one_blas_thread
def fit_approach2(p: Points, budgets=None, *, tol: float = 0.10, bootstrap: int = 0, seed: int = 0,
                  gap: float = 0.1) -> Approach2Fit:
    """IsoFLOP fit (Hoffmann et al. 2022, section 3.2, Approach 2).

    Grouping: with ``budgets`` (FLOP), :func:`snap_to_budgets` (relative ``tol``); without,
    :func:`group_by_compute` (``gap`` decades).  Per budget ``C``: ``numpy.polyfit(log10 N, loss, 2)``;
    the vertex ``N* = 10^(-q / 2p)``, ``D* = C / (6 N*)`` with ``C`` the budget value.  A budget with fewer
    than 3 distinct ``N`` or a parabola that opens downward is dropped (recorded in ``dropped``).  Then
    ``polyfit(log10 C, log10 N*, 1)`` gives ``(a, a0)`` and ``polyfit(log10 C, log10 D*, 1)`` gives
    ``(b, b0)``; so ``b = 1 - a`` and ``b0 = -log10 6 - a0``.  Even on noise-free data the intercepts are
    biased unless alpha = beta (Czech et al. 2026); the exponents are not.

    Bootstrap: resample points with replacement within each budget, refit; a budget without a vertex in a
    resample is left out of that resample, and a resample with fewer than 2 budgets is skipped
    (``n_bootstrap_failed``).  On the public Chinchilla points with the 9 budgets: 123 points, a = 0.4951.

    Returns :class:`Approach2Fit`.  Raises ConfigError: bad budgets/tol/gap, or fewer than 2 budgets with a
    vertex.
    """
    _check_points(p)
    _check_bootstrap(bootstrap, seed)
    if budgets is None:
        q, cb = group_by_compute(p, gap)
        grouping = (f"clustered log10 C where consecutive sorted values differ by more than {gap:g} decade: "
                    f"{np.unique(cb).size} groups, budget = geometric mean of each group's C; {len(q)} points")
    else:
        q, cb = snap_to_budgets(p, budgets, tol)
        grouping = (f"snapped C to the nearest of {np.size(budgets)} budgets within {tol:.0%} (relative), "
                    f"N and C rounded to integers, one point per (N, budget): {len(q)} of {len(p)} points kept")
    x_all = np.log10(q.N)
    groups = []
    vertices = []
    dropped = []
    for c in np.unique(cb):
        idx = np.flatnonzero(cb == c)
        fit = _parabola(x_all[idx], q.loss[idx])
        if isinstance(fit, str):
            dropped.append({"C": float(c), "n_points": int(idx.size), "reason": fit})
            continue
        pp, qq, rr = fit
        xs = -qq / (2 * pp)
        n_star = 10.0 ** xs
        groups.append((float(c), idx))
        vertices.append({"C": float(c), "N_star": float(n_star), "D_star": float(c / (6.0 * n_star)),
                         "n_points": int(idx.size), "p": pp, "q": qq, "r": rr,
                         "loss_star": float(rr - qq * qq / (4 * pp)),
                         "N_range": [float(q.N[idx].min()), float(q.N[idx].max())]})
    if len(vertices) < 2:
        raise ConfigError(f"Approach 2 needs at least 2 compute budgets with a parabola vertex; got {len(vertices)}"
                          + (" (dropped: " + "; ".join(f"{d['C']:.3g}: {d['reason']}" for d in dropped) + ")"
                             if dropped else ""))
    logC = np.log10([v["C"] for v in vertices])
    a, a0, b, b0 = _lines(logC, np.log10([v["N_star"] for v in vertices]))
    ci: dict = {}
    se: dict = {}
    failed = 0
    if bootstrap:
        rng = np.random.default_rng(seed)
        rows = []
        for _ in range(int(bootstrap)):
            lc, ln = [], []
            for c, idx in groups:
                i = idx[rng.integers(0, idx.size, size=idx.size)]
                fit = _parabola(x_all[i], q.loss[i])
                if not isinstance(fit, str):
                    lc.append(math.log10(c))
                    ln.append(-fit[1] / (2 * fit[0]))
            if len(lc) < 2:
                failed += 1
                continue
            rows.append(_lines(np.array(lc), np.array(ln)))
        ci, se = _summarise(np.array(rows).reshape(-1, 4), ("a", "a0", "b", "b0"))
    return Approach2Fit(a=a, a0=a0, b=b, b0=b0, budgets=[v["C"] for v in vertices], vertices=vertices,
                        n_points=int(sum(v["n_points"] for v in vertices)), grouping=grouping, ci=ci, se=se,
                        n_bootstrap=int(bootstrap), dropped=dropped, n_bootstrap_failed=failed)


def isoflop_surface(budgets, E, A, B, alpha, beta, n_per_budget: int = 15, width: float = 16.0) -> Points:
    """Noise-free IsoFLOP grid on ``L = E + A/N^alpha + B/D^beta`` (Czech et al. 2026, "Problems with Chinchilla
    Approach 2", arXiv 2603.22339; their code's ``N_POINTS = 15``, ``LOG_RANGE = log10(16)``).

    Per budget ``C`` (FLOP): ``N = numpy.logspace(log10(N*/width), log10(N* width), n_per_budget)`` around the
    TRUE compute-optimal ``N*(C)`` (:func:`optimal_allocation`), ``D = C / (6N)``, exact loss.  Returns
    :class:`Points` of ``len(budgets) * n_per_budget`` rows, budgets in the given order, ``C`` exactly the
    budget.  Raises ConfigError for bad budgets, ``n_per_budget < 3`` or ``width <= 1``.
    """
    b = _budgets_array(budgets)
    if isinstance(n_per_budget, bool) or not isinstance(n_per_budget, (int, np.integer)) or n_per_budget < 3:
        raise ConfigError(f"n_per_budget must be an integer >= 3; got {n_per_budget!r}")
    if not (isinstance(width, (int, float)) and width > 1):
        raise ConfigError(f"width (the grid spans N*/width .. N*·width) must be > 1; got {width!r}")
    n_star, _ = optimal_allocation(E, A, B, alpha, beta, b)
    N = np.concatenate([np.logspace(math.log10(ns / width), math.log10(ns * width), n_per_budget) for ns in n_star])
    C = np.repeat(b, n_per_budget)
    D = C / (6.0 * N)
    return Points(N, D, C, chinchilla_loss(N, D, E, A, B, alpha, beta))


# ------------------------------------------------------------------------------------------- Kaplan


@dataclass
class KaplanFit:
    """Result of :func:`fit_kaplan_n` (``form = "N"``: ``L = (N_c/N)^alpha_N``) or :func:`fit_kaplan_nd`
    (``form = "ND"``: ``L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D``); Kaplan et al. 2020, eqs. 1.1, 1.5.

    ``N_c`` parameters, ``D_c`` tokens (None for the N form); ``rmse_log``: root mean square residual of
    log loss; ``ci``/``se``: bootstrap 95% percentile intervals / standard errors of the fitted constants.
    """

    form: str
    N_c: float
    alpha_N: float
    D_c: float | None = None
    alpha_D: float | None = None
    n_points: int = 0
    rmse_log: float = float("nan")
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    se: dict[str, float] = field(default_factory=dict)
    n_bootstrap: int = 0

    @property
    def names(self) -> tuple[str, ...]:
        return ("N_c", "alpha_N") if self.form == "N" else ("N_c", "alpha_N", "D_c", "alpha_D")

    def predict(self, N, D=None) -> np.ndarray:
        """Predicted loss (nats/token) at ``N`` parameters (and ``D`` tokens for the joint form)."""
        N = np.asarray(N, dtype=np.float64)
        if self.form == "N":
            return (self.N_c / N) ** self.alpha_N
        if D is None:
            raise ConfigError("the joint Kaplan law L(N, D) needs D (tokens) to predict")
        return np.exp(_kaplan_nd_log(np.array([math.log(self.N_c), math.log(self.D_c), self.alpha_N, self.alpha_D]),
                                     np.log(N), np.log(np.asarray(D, dtype=np.float64))))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: each constant as ``{"value", "ci": [lo, hi] or None, "se"}``, plus ``form``,
        ``n_points``, ``rmse_log``, ``n_bootstrap``."""
        out: dict[str, Any] = {k: _entry(getattr(self, k), self.ci, self.se, k) for k in self.names}
        out.update(form=self.form, n_points=self.n_points, rmse_log=self.rmse_log, n_bootstrap=self.n_bootstrap)
        return out


def _kaplan_n_fit(lN, lL) -> tuple[float, float] | None:
    if np.unique(lN).size < 2:
        return None
    slope, icept = np.polyfit(lN, lL, 1)
    alpha = -slope
    if alpha == 0:
        return None
    return math.exp(icept / alpha), float(alpha)


@one_blas_thread
def fit_kaplan_n(N, loss, bootstrap: int = 0, seed: int = 0) -> KaplanFit:
    """Fit ``L(N) = (N_c / N)^alpha_N`` (Kaplan et al. 2020, eq. 1.1): least squares of ``log L`` on ``log N``.

    ``log L = alpha_N log N_c - alpha_N log N``, so ``alpha_N = -slope``, ``N_c = exp(intercept / alpha_N)``.
    ``N`` (parameters; Kaplan count non-embedding ones) and ``loss`` (nats/token): 1-D arrays [n].
    Bootstrap over points (``bootstrap`` resamples, ``default_rng(seed)``).  Kaplan's values on WebText2:
    alpha_N 0.076, N_c 8.8e13.  Raises ConfigError: bad arrays (as :func:`points`), fewer than 2 points or
    fewer than 2 distinct N.
    """
    _check_bootstrap(bootstrap, seed)
    Na = _column("N", N)
    La = _column("loss", loss)
    if Na.size != La.size:
        raise ConfigError(f"N and loss differ in length ({Na.size} and {La.size})")
    if Na.size < 2:
        raise ConfigError(f"L(N) = (N_c/N)^alpha_N has 2 parameters and needs at least 2 points; got {Na.size}")
    lN, lL = np.log(Na), np.log(La)
    est = _kaplan_n_fit(lN, lL)
    if est is None:
        raise ConfigError("L(N) fit needs at least 2 distinct N and a loss that changes with N")
    resid = lL - est[1] * (math.log(est[0]) - lN)
    ci: dict = {}
    se: dict = {}
    if bootstrap:
        rng = np.random.default_rng(seed)
        rows = []
        for _ in range(int(bootstrap)):
            i = rng.integers(0, Na.size, size=Na.size)
            r = _kaplan_n_fit(lN[i], lL[i])
            if r is not None:
                rows.append(r)
        ci, se = _summarise(np.array(rows).reshape(-1, 2), ("N_c", "alpha_N"))
    return KaplanFit("N", est[0], est[1], n_points=int(Na.size), rmse_log=float(np.sqrt(np.mean(resid**2))),
                     ci=ci, se=se, n_bootstrap=int(bootstrap))


def _kaplan_nd_log(theta, lN, lD):
    lNc, lDc, aN, aD = theta
    return aD * np.logaddexp((aN / aD) * (lNc - lN), lDc - lD)


def _kaplan_nd_resid(theta, lN, lD, lL):
    return lL - _kaplan_nd_log(theta, lN, lD)


def _kaplan_nd_jac(theta, lN, lD, lL):
    lNc, lDc, aN, aD = theta
    s1 = (aN / aD) * (lNc - lN)
    s2 = lDc - lD
    S = np.logaddexp(s1, s2)
    w1 = np.exp(s1 - S)
    w2 = np.exp(s2 - S)
    return -np.stack([aN * w1, aD * w2, w1 * (lNc - lN), S - w1 * s1], axis=1)


def _kaplan_nd_fit(lN, lD, lL, starts):
    best, best_cost = None, math.inf
    lo = [-np.inf, -np.inf, 1e-4, 1e-4]
    hi = [np.inf, np.inf, 10.0, 10.0]
    for x0 in starts:
        try:
            r = least_squares(_kaplan_nd_resid, x0, jac=_kaplan_nd_jac, args=(lN, lD, lL), bounds=(lo, hi),
                              method="trf", x_scale="jac", xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=2000)
        except (ValueError, FloatingPointError):
            continue
        if np.isfinite(r.cost) and r.cost < best_cost:
            best, best_cost = r.x, float(r.cost)
    return best


def _kaplan_nd_starts(lN, lD, lL) -> list[np.ndarray]:
    starts = []
    for aN in (0.05, 0.1, 0.3):
        for aD in (0.05, 0.1, 0.3):
            # L^(1/alpha) is each term's size when it dominates: N_c ~ N L^(1/alpha_N), D_c ~ D L^(1/alpha_D).
            starts.append(np.array([np.median(lN + lL / aN), np.median(lD + lL / aD), aN, aD]))
    return starts


_LOG_MAX = math.log(np.finfo(np.float64).max)


@one_blas_thread
def fit_kaplan_nd(p: Points, bootstrap: int = 0, seed: int = 0) -> KaplanFit:
    """Fit Kaplan's joint law ``L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D`` (Kaplan et al. 2020, eq. 1.5).

    Least squares on log loss (``scipy.optimize.least_squares``, trust-region reflective, analytic
    Jacobian) in ``(log N_c, log D_c, alpha_N, alpha_D)``, alpha's bounded to [1e-4, 10], from 9 starts
    (alpha_N, alpha_D in {0.05, 0.1, 0.3}, ``log N_c``, ``log D_c`` from the medians of
    ``log N + log L / alpha_N`` and ``log D + log L / alpha_D``); the lowest cost wins.  ``p``: [n] points
    (N parameters, D tokens, loss nats/token).  Bootstrap over points, each refit from the full-data optimum.
    Kaplan's values: alpha_N 0.076, alpha_D 0.095, N_c 8.8e13, D_c 5.4e13.
    Raises ConfigError: fewer than 4 points, or no start converged.
    """
    _check_points(p)
    _check_bootstrap(bootstrap, seed)
    if len(p) < 4:
        raise ConfigError(f"the joint Kaplan law has 4 parameters and needs at least 4 points; got {len(p)}")
    lN, lD, lL = np.log(p.N), np.log(p.D), np.log(p.loss)
    x = _kaplan_nd_fit(lN, lD, lL, _kaplan_nd_starts(lN, lD, lL))
    if x is None:
        raise ConfigError("the joint Kaplan fit found no finite optimum from any start (check the data)")
    resid = _kaplan_nd_resid(x, lN, lD, lL)
    ci: dict = {}
    se: dict = {}
    if bootstrap:
        rng = np.random.default_rng(seed)
        rows = []
        for _ in range(int(bootstrap)):
            i = rng.integers(0, len(p), size=len(p))
            xb = _kaplan_nd_fit(lN[i], lD[i], lL[i], [x])
            if xb is not None and max(xb[0], xb[1]) < _LOG_MAX:  # N_c, D_c beyond float range: a diverged refit
                rows.append([math.exp(xb[0]), xb[2], math.exp(xb[1]), xb[3]])
        ci, se = _summarise(np.array(rows).reshape(-1, 4), ("N_c", "alpha_N", "D_c", "alpha_D"))
    if max(x[0], x[1]) >= _LOG_MAX:
        raise ConfigError("the joint Kaplan fit diverged (N_c or D_c beyond float range): the data do not follow "
                          "the law's form")
    return KaplanFit("ND", math.exp(x[0]), float(x[2]), math.exp(x[1]), float(x[3]), n_points=len(p),
                     rmse_log=float(np.sqrt(np.mean(resid**2))), ci=ci, se=se, n_bootstrap=int(bootstrap))


# ----------------------------------------------------------------------------------------- dispatch

APPROACHES = ("approach3", "approach2", "kaplan_n", "kaplan_nd")
_ALIAS_APPROACH = {"3": "approach3", "2": "approach2", "kaplan": "kaplan_n"}


def fit_scaling_law(p: Points, approach: str, **kwargs):
    """Fit ``p`` by the named approach: ``approach3`` (or ``3``; :func:`fit_approach3`), ``approach2`` (or ``2``;
    :func:`fit_approach2`), ``kaplan_n`` (or ``kaplan``; :func:`fit_kaplan_n` on ``p.N, p.loss``) or
    ``kaplan_nd`` (:func:`fit_kaplan_nd`); ``kwargs`` go to that function.  Raises ConfigError for any
    other name."""
    name = _ALIAS_APPROACH.get(str(approach).strip().lower(), str(approach).strip().lower())
    if name == "approach3":
        return fit_approach3(p, **kwargs)
    if name == "approach2":
        return fit_approach2(p, **kwargs)
    if name == "kaplan_n":
        return fit_kaplan_n(p.N, p.loss, **kwargs)
    if name == "kaplan_nd":
        return fit_kaplan_nd(p, **kwargs)
    raise ConfigError(f"unknown scaling-law approach {approach!r}; choose one of {', '.join(APPROACHES)}")
