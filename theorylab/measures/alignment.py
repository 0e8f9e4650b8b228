"""Alignment on problems with closed forms: the KL-regularised optimum, DPO and IPO at the population level,
the {a, b}-string frontier and best-of-n.

* **The optimum** of ``max_pi E_pi[r] - beta KL(pi || pi_ref)`` is ``pi* ∝ pi_ref exp(r / beta)``
  (:func:`kl_optimal_policy`; Rafailov et al. 2023, eq. 4, a standard result of KL-regularised control).
* **DPO at the population level** (:func:`population_preference_fit`): over a free softmax policy on K
  responses, with pairs weighted by ``w_ij`` and labelled by Bradley–Terry probabilities
  ``sigmoid(r_i - r_j)``, the expected DPO loss is minimised exactly at ``pi*`` when the pair graph is
  connected (Rafailov et al. 2023, Theorem 1 and §5); IPO's population optimum is the policy whose log-ratio
  margins regress onto ``(P_ij - 1/2) / beta`` (Azar et al. 2024, §5.2).
* **Deterministic preferences** (:func:`deterministic_pair_trajectory`): one pair with ``P(y_w > y_l) = 1``.
  DPO has no finite optimum: by gradient descent its loss falls like ``1/t`` for every beta, so the
  rejected answer's probability falls like ``t^(-1/beta)`` (its ``beta``-th power like ``1/t``); IPO stops at
  ``pi(y_w) = sigmoid(1 / (2 beta))`` for a uniform reference
  (:func:`ipo_fixed_point`; Azar et al. 2024, §4.2 and §5).
* **{a, b} strings** (:func:`ab_closed_form`): length-L strings, a reference that draws each token
  independently with ``P(a) = p_ref`` and the reward "count of a": ``pi*`` is i.i.d. with
  ``P*(a) = sigmoid(1/beta + logit(p_ref))``, ``E[r] = L P*(a)`` and ``KL = L KL(Bern(P*(a)) || Bern(p_ref))``.
* **Reward models** (:func:`fit_bradley_terry`): a linear Bradley–Terry reward fitted to labelled pairs by
  maximum likelihood.
* **Over-optimisation** (:func:`fit_overoptimization`): Gao et al. 2023's functional forms of the gold
  reward against ``d = sqrt(KL)``: ``d (alpha - beta d)`` for best-of-n and ``d (alpha - beta log d)`` for RL
  (their eqs. 1-2), with bootstrap intervals.
* **Best-of-n** (:func:`best_of_n_policy`, :func:`best_of_n_kl`): the exact distribution of the best of n
  samples from the reference, and its KL from the reference, which tends to ``log n - (n - 1) / n`` when
  no two outcomes tie (Stiennon et al. 2020, appendix; Gao et al. 2023, §2).

* **Monte Carlo** (:func:`monte_carlo_mean`, :func:`importance_sampled_optimum`): where the responses cannot
  be enumerated, a policy's reward and KL are sample means with normal 95% intervals, and ``pi*`` is estimated by
  self-normalised importance sampling from reference draws, with bootstrap intervals and its effective sample
  size.

Probabilities are float64 numpy arrays; KL in nats.  Every function raises ConfigError (one line) on bad input.
"""

from __future__ import annotations

import math

import numpy as np

from theorylab.errors import ConfigError

__all__ = ["fit_overoptimization", "OveroptimizationFit", "fit_bradley_terry", "kl_divergence", "kl_optimal_policy", "regularized_objective", "total_variation", "ipo_fixed_point",
           "ab_closed_form", "best_of_n_policy", "best_of_n_kl", "population_preference_fit",
           "deterministic_pair_trajectory", "tilted_policy", "frontier_reward", "monte_carlo_mean",
           "importance_sampled_optimum"]


def _dist(p, name: str) -> np.ndarray:
    a = np.asarray(p, dtype=np.float64)
    if a.ndim != 1 or a.size < 2 or not np.all(np.isfinite(a)) or np.any(a < 0) or abs(a.sum() - 1) > 1e-9:
        raise ConfigError(f"{name}: expected a probability vector [K >= 2] summing to 1")
    return a


def _beta(beta: float) -> float:
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
        raise ConfigError(f"beta: the KL coefficient must be a finite number > 0 (got {beta!r})")
    return float(beta)


def kl_divergence(p, q) -> float:
    """``KL(p || q) = sum p log(p / q)`` (nats) for probability vectors [K]; ``inf`` where ``q = 0 < p``."""
    p, q = _dist(p, "p"), _dist(q, "q")
    if p.shape != q.shape:
        raise ConfigError(f"p and q have {p.size} and {q.size} outcomes")
    m = p > 0
    with np.errstate(divide="ignore"):
        return float(np.sum(p[m] * (np.log(p[m]) - np.log(q[m]))))


def total_variation(p, q) -> float:
    """``(1/2) sum |p - q|`` for probability vectors [K]."""
    return 0.5 * float(np.abs(_dist(p, "p") - _dist(q, "q")).sum())


def kl_optimal_policy(pi_ref, r, beta: float) -> np.ndarray:
    """``pi* = pi_ref exp(r / beta) / Z``: the maximiser of ``E_pi[r] - beta KL(pi || pi_ref)`` ([K] in, [K]
    out; computed in log space)."""
    pi_ref, b = _dist(pi_ref, "pi_ref"), _beta(beta)
    r = np.asarray(r, dtype=np.float64)
    if r.shape != pi_ref.shape or not np.all(np.isfinite(r)):
        raise ConfigError(f"r: expected {pi_ref.size} finite rewards")
    with np.errstate(divide="ignore"):
        return _softmax(np.log(pi_ref) + r / b)


def regularized_objective(pi, pi_ref, r, beta: float) -> float:
    """``E_pi[r] - beta KL(pi || pi_ref)`` (reward units)."""
    pi = _dist(pi, "pi")
    return float(pi @ np.asarray(r, dtype=np.float64)) - _beta(beta) * kl_divergence(pi, pi_ref)


def tilted_policy(pi_ref, r, lam: float) -> np.ndarray:
    """``pi_lam ∝ pi_ref exp(lam r)`` ([K]): the KL-regularised optimum for ``beta = 1 / lam`` (``lam = 0``: the
    reference).  As ``lam`` grows from 0 it traces the exact reward-KL frontier (below)."""
    pi_ref = _dist(pi_ref, "pi_ref")
    if not (isinstance(lam, (int, float, np.floating)) and math.isfinite(lam) and lam >= 0):
        raise ConfigError(f"lam: a finite inverse temperature >= 0 (got {lam!r})")
    if lam == 0:
        return pi_ref.copy()
    return kl_optimal_policy(pi_ref, r, 1.0 / float(lam))


def frontier_reward(pi_ref, r, kl: float) -> float:
    """The largest expected reward of any policy within ``KL(pi || pi_ref) <= kl`` (nats): by the Lagrangian of
    the KL-regularised problem the maximiser is a tilted reference ``pi_lam`` (:func:`tilted_policy`) whose KL is
    ``kl`` (Rafailov et al. 2023, eq. 4; the frontier of their Figure 2), found by Brent's method on ``log lam``
    (scipy).  ``kl`` beyond the KL of the reward's argmax set gives that set's reward.  Raises ConfigError for a
    negative or non-finite ``kl``."""
    from scipy.optimize import brentq

    pi_ref = _dist(pi_ref, "pi_ref")
    r = np.asarray(r, dtype=np.float64)
    if r.shape != pi_ref.shape or not np.all(np.isfinite(r)):
        raise ConfigError(f"r: expected {pi_ref.size} finite rewards")
    if not (isinstance(kl, (int, float, np.floating)) and math.isfinite(kl) and kl >= 0):
        raise ConfigError(f"kl: a finite KL >= 0 in nats (got {kl!r})")
    if kl == 0:
        return float(pi_ref @ r)
    top = r >= r.max() - 1e-12 * max(1.0, abs(r.max()))
    kl_top = -math.log(float(pi_ref[top].sum()))
    if kl >= kl_top:
        return float(r.max())

    def gap(log_lam: float) -> float:
        return kl_divergence(tilted_policy(pi_ref, r, math.exp(log_lam)), pi_ref) - kl

    lo, hi = -20.0, 0.0
    while gap(hi) < 0 and hi < 60:
        hi += 5.0
    lam = math.exp(brentq(gap, lo, hi, xtol=1e-12))
    return float(tilted_policy(pi_ref, r, lam) @ r)


def ipo_fixed_point(beta: float) -> float:
    """IPO's optimum for one deterministic pair and a uniform reference over the two answers: the log-ratio
    margin ``log pi(y_w) - log pi(y_l) = logit pi(y_w)`` settles at ``1 / (2 beta)``, so
    ``pi(y_w) = sigmoid(1 / (2 beta))``: 0.99331 at beta 0.1, 0.73106 at 0.5, 0.62246 at 1."""
    return 1.0 / (1.0 + math.exp(-1.0 / (2.0 * _beta(beta))))


def ab_closed_form(L: int, beta: float, p_ref: float = 0.5) -> dict[str, float]:
    """The {a, b}-string problem's optimum: ``{"p_a", "reward", "kl"}`` with ``p_a = sigmoid(1/beta +
    logit(p_ref))`` (each token of pi* is i.i.d.), ``reward = L p_a`` (expected count of a) and
    ``kl = L [p_a log(p_a / p_ref) + (1 - p_a) log((1 - p_a) / (1 - p_ref))]`` (nats)."""
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 1:
        raise ConfigError(f"L: a positive string length (got {L!r})")
    if not 0 < p_ref < 1:
        raise ConfigError(f"p_ref: the reference's P(a) must lie in (0, 1) (got {p_ref!r})")
    u = 1.0 / _beta(beta) + math.log(p_ref / (1 - p_ref))
    p = 1.0 / (1.0 + math.exp(-u))
    kl = p * math.log(p / p_ref) + ((1 - p) * math.log((1 - p) / (1 - p_ref)) if p < 1 else 0.0)
    return {"p_a": p, "reward": L * p, "kl": L * kl}


def best_of_n_policy(pi_ref, r, n: int) -> np.ndarray:
    """The exact distribution of the highest-reward answer among ``n`` independent draws from ``pi_ref``
    ([K] each; ties go to the lower index): with outcomes sorted by reward and ``F`` the reference's CDF in
    that order, ``P(best = i) = F_i^n - F_{i-1}^n``."""
    pi_ref = _dist(pi_ref, "pi_ref")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n: a positive number of samples (got {n!r})")
    r = np.asarray(r, dtype=np.float64)
    if r.shape != pi_ref.shape:
        raise ConfigError(f"r: expected {pi_ref.size} rewards")
    order = np.lexsort((-np.arange(r.size), r))  # ascending reward; among ties the lower index counts as higher
    F = np.cumsum(pi_ref[order])
    F = np.minimum(F / F[-1], 1.0)
    prev = np.r_[0.0, F[:-1]]
    out = np.empty_like(F)
    out[order] = F**n - prev**n
    return out


def best_of_n_kl(n: int) -> float:
    """``log n - (n - 1) / n``: the KL (nats) of best-of-n from the reference when no two outcomes tie."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n: a positive number of samples (got {n!r})")
    return math.log(n) - (n - 1) / n


def _softmax(theta: np.ndarray) -> np.ndarray:
    z = theta - theta.max()
    e = np.exp(z)
    return e / e.sum()


def population_preference_fit(pi_ref, r, beta: float, loss: str = "dpo", weights=None,
                              preference=None) -> np.ndarray:
    """The policy (a free softmax over K answers) minimising the *expected* DPO or IPO loss over all ordered
    pairs ``(i, j)``, pair ``(i, j)`` weighted by ``weights[i, j]`` (default ``pi_ref_i pi_ref_j``) and labelled
    ``i > j`` with probability ``preference[i, j]`` (default Bradley–Terry, ``sigmoid(r_i - r_j)``).  Solved by
    L-BFGS (scipy, gradient in closed form, gtol 1e-13).  Returns [K].  With a connected pair graph the DPO
    optimum is ``pi*`` (:func:`kl_optimal_policy`; Rafailov et al. 2023, §5)."""
    from scipy.optimize import minimize

    pi_ref, b = _dist(pi_ref, "pi_ref"), _beta(beta)
    K = pi_ref.size
    r = np.asarray(r, dtype=np.float64)
    if loss not in ("dpo", "ipo"):
        raise ConfigError(f"loss: 'dpo' or 'ipo' (got {loss!r})")
    W = np.outer(pi_ref, pi_ref) if weights is None else np.asarray(weights, dtype=np.float64)
    P = 1.0 / (1.0 + np.exp(-(r[:, None] - r[None, :]))) if preference is None else np.asarray(preference, float)
    if W.shape != (K, K) or P.shape != (K, K):
        raise ConfigError(f"weights and preference must be [{K}, {K}]")
    np.fill_diagonal(W := W.copy(), 0.0)
    log_ref = np.log(pi_ref)

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        logp = theta - theta.max()
        logp = logp - math.log(np.exp(logp).sum())
        s = logp - log_ref
        h = s[:, None] - s[None, :]  # margin of i over j
        if loss == "dpo":
            z = b * h
            # P_ij * -log sig(z) + (1 - P_ij) * -log sig(-z)
            lsp, lsm = -np.logaddexp(0, -z), -np.logaddexp(0, z)
            val = -(W * (P * lsp + (1 - P) * lsm)).sum()
            dh = -W * b * (P * (1 - np.exp(lsp)) - (1 - P) * (1 - np.exp(lsm)))
        else:
            target = 1.0 / (2.0 * b)
            # labelled i > j with prob P: (h - t)^2; labelled j > i: (-h - t)^2
            val = (W * (P * (h - target) ** 2 + (1 - P) * (h + target) ** 2)).sum()
            dh = W * (2 * P * (h - target) + 2 * (1 - P) * (h + target))
        ds = dh.sum(1) - dh.sum(0)
        p = np.exp(logp)
        grad = ds - p * ds.sum()  # through log-softmax
        return float(val), grad

    res = minimize(f, np.log(pi_ref), jac=True, method="L-BFGS-B", options={"gtol": 1e-13, "ftol": 1e-16,
                                                                           "maxiter": 10_000})
    return _softmax(res.x)


def deterministic_pair_trajectory(beta: float, steps, loss: str = "dpo", lr: float | None = None) -> np.ndarray:
    """Gradient descent (step ``lr``; default 1 for DPO, 0.1 for IPO, whose squared loss diverges for steps
    above 1/2) on one pair with ``P(y_w > y_l) = 1``, a uniform reference over the two
    answers and a softmax policy started at the reference: ``pi(y_l)`` after each of ``steps`` (sorted step
    counts) as [len(steps)].  DPO has no finite optimum: its loss falls like 1/t and ``pi(y_l)`` like
    ``t^(-1/beta)``; IPO settles at ``1 - sigmoid(1 / (2 beta))``."""
    b = _beta(beta)
    if loss not in ("dpo", "ipo"):
        raise ConfigError(f"loss: 'dpo' or 'ipo' (got {loss!r})")
    lr = (1.0 if loss == "dpo" else 0.1) if lr is None else lr
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ConfigError(f"lr: a positive step size (got {lr!r})")
    marks = sorted(int(s) for s in steps)
    if not marks or marks[0] < 0:
        raise ConfigError("steps: non-negative step counts")
    d = 0.0  # theta_w - theta_l; the margin h = log pi_w - log pi_l = d (uniform reference)
    out, t = [], 0
    for m in marks:
        while t < m:
            if loss == "dpo":  # d/dd of -log sigmoid(b d), through d = theta_w - theta_l (gradient 2x on d)
                g = -b / (1.0 + math.exp(b * d))
            else:
                g = 2.0 * (d - 1.0 / (2.0 * b))
            d -= 2.0 * lr * g
            t += 1
        out.append(1.0 / (1.0 + math.exp(d)))
    return np.array(out)


def fit_bradley_terry(phi_w, phi_l, l2: float = 0.0) -> np.ndarray:
    """A linear reward ``r(y) = w . phi(y)`` fitted to pairs by maximum likelihood under Bradley–Terry,
    ``P(y_w > y_l) = sigmoid(w . (phi_w - phi_l))`` (logistic regression on feature differences; scipy
    L-BFGS, gradient in closed form; ``l2`` a ridge penalty).  ``phi_w``, ``phi_l``: [n, d] features of the
    preferred and the rejected answer.  Returns ``w`` [d] (a reward is identified only up to a constant, which
    the differences remove).  Raises ConfigError for mismatched or non-finite features."""
    from scipy.optimize import minimize

    a, b = np.asarray(phi_w, dtype=np.float64), np.asarray(phi_l, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ConfigError(f"phi_w and phi_l: expected two finite [n, d] arrays of one shape (got {a.shape}, {b.shape})")
    if a.shape[0] == 0:
        raise ConfigError("phi_w and phi_l: no pairs to fit")
    if not l2 >= 0:
        raise ConfigError(f"l2: a penalty >= 0 (got {l2!r})")
    x = a - b

    def f(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ w
        val = float(np.logaddexp(0, -z).sum() + 0.5 * l2 * w @ w)
        g = -(x * (1.0 / (1.0 + np.exp(z)))[:, None]).sum(0) + l2 * w
        return val, g

    return minimize(f, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B", options={"gtol": 1e-10}).x


class OveroptimizationFit:
    """:func:`fit_overoptimization`'s result: ``form`` ("bon" or "rl"), ``alpha``, ``beta``, their bootstrap
    95% intervals ``ci`` and ``predict(d)``; the peak ``d_star`` (``alpha / (2 beta)`` for best-of-n,
    ``exp(alpha / beta - 1)`` for RL) where the gold reward turns down."""

    def __init__(self, form: str, alpha: float, beta: float, ci: dict[str, tuple[float, float]]):
        self.form, self.alpha, self.beta, self.ci = form, alpha, beta, ci

    def predict(self, d) -> np.ndarray:
        d = np.asarray(d, dtype=np.float64)
        return d * (self.alpha - self.beta * (d if self.form == "bon" else np.log(d)))

    @property
    def d_star(self) -> float:
        if not self.beta > 0:
            return math.inf
        return self.alpha / (2 * self.beta) if self.form == "bon" else math.exp(self.alpha / self.beta - 1)

    def to_dict(self) -> dict:
        return {"form": self.form, "alpha": self.alpha, "beta": self.beta, "ci": {k: list(v) for k, v in
                                                                                  self.ci.items()},
                "d_star": self.d_star}


def fit_overoptimization(kl, gold, form: str = "bon", bootstrap: int = 200, seed: int = 0) -> OveroptimizationFit:
    """Gao et al. (2023, "Scaling Laws for Reward Model Overoptimization", eqs. 1-2): the gold reward gained
    over the reference against ``d = sqrt(KL(pi || pi_ref))``, ``R = d (alpha - beta d)`` (``form="bon"``,
    best-of-n) or ``R = d (alpha - beta log d)`` (``form="rl"``).  Both are linear in (alpha, beta) once divided
    by d, so the fit is least squares of ``R / d`` on ``(1, -d)`` or ``(1, -log d)``, weighted by ``d^2`` (so
    that it minimises the error in R itself); 95% percentile-bootstrap intervals over points.  ``kl``, ``gold``:
    [n] (KL in nats, >= 0; points at KL = 0, the reference itself, are left out: both forms pass through the
    origin).  Raises ConfigError for ``kl`` and ``gold`` of different lengths, non-finite values, a negative KL,
    fewer than 3 points with KL > 0, or an unknown form."""
    k, g = np.asarray(kl, dtype=np.float64).ravel(), np.asarray(gold, dtype=np.float64).ravel()
    if form not in ("bon", "rl"):
        raise ConfigError(f"form: 'bon' (best-of-n) or 'rl' (got {form!r})")
    if k.size != g.size:
        raise ConfigError(f"fit_overoptimization: kl and gold have different lengths ({k.size}, {g.size})")
    if not (np.all(np.isfinite(k)) and np.all(np.isfinite(g))) or np.any(k < 0):
        raise ConfigError("fit_overoptimization: KL and gold rewards must be finite, and KL >= 0")
    k, g = k[k > 0], g[k > 0]
    if k.size < 3:
        raise ConfigError("fit_overoptimization: needs 3 or more points with KL > 0")
    d = np.sqrt(k)

    def solve(idx: np.ndarray) -> tuple[float, float]:
        dd = d[idx]
        design = np.stack([dd, -dd * (dd if form == "bon" else np.log(dd))], 1)  # R = alpha d - beta d f(d)
        coef, *_ = np.linalg.lstsq(design, g[idx], rcond=None)
        return float(coef[0]), float(coef[1])

    alpha, beta = solve(np.arange(d.size))
    ci: dict[str, tuple[float, float]] = {}
    if bootstrap:
        rng = np.random.default_rng(seed)
        draws = np.array([solve(rng.integers(0, d.size, d.size)) for _ in range(int(bootstrap))])
        ci = {name: (float(np.quantile(draws[:, j], 0.025)), float(np.quantile(draws[:, j], 0.975)))
              for j, name in enumerate(("alpha", "beta"))}
    return OveroptimizationFit(form, alpha, beta, ci)


# --------------------------------------------------------------------------- Monte Carlo, where nothing enumerates

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile: two-sided 95% normal intervals


def monte_carlo_mean(values) -> tuple[float, float, float]:
    """The sample mean of ``values`` [n] (n >= 2) with its normal-approximation 95% interval, ``(mean, lo, hi)``
    = ``mean ± 1.96 s / sqrt(n)`` (the central limit theorem; ``s`` the sample standard deviation).  Used for a
    policy's expected reward and for ``KL(pi || pi_ref) = E_pi[log pi(y) - log pi_ref(y)]`` from samples
    ``y ~ pi``.  Raises ConfigError for fewer than 2 finite values."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size < 2 or not np.all(np.isfinite(v)):
        raise ConfigError("monte_carlo_mean: needs 2 or more finite values")
    m = float(v.mean())
    h = Z95 * float(v.std(ddof=1)) / math.sqrt(v.size)
    return m, m - h, m + h


def importance_sampled_optimum(rewards, beta: float, resamples: int = 200, seed: int = 0) -> dict[str, float]:
    """The KL-regularised optimum ``pi* ∝ pi_ref exp(r / beta)`` (Rafailov et al. 2023, eq. 4) estimated by
    self-normalised importance sampling from ``n`` draws ``y_i ~ pi_ref`` with rewards ``rewards [n]``: weights
    ``w_i = exp(r_i / beta)``, ``E*[r] ≈ sum w r / sum w``, ``log Z ≈ log mean w`` and
    ``KL(pi* || pi_ref) = E*[r] / beta - log Z`` (nats).  Returns ``reward``, ``kl`` with 95% percentile-bootstrap
    bounds (``reward_lo``/``_hi``, ``kl_lo``/``_hi``; ``resamples`` resamples of the draws, generator ``seed``) and
    the effective sample size ``ess = (sum w)^2 / sum w^2`` (Kong 1992): the estimate is trustworthy only when
    ``ess`` is a fair fraction of ``n`` (a large ``1/beta`` times the reward's spread makes it collapse).
    The estimated KL is that of the reweighted draws against the uniform distribution on them, so it can never
    exceed ``log n`` (6.24 nats at n = 512): for a small beta it levels off there whatever the true KL, and a
    small ``ess / n`` says so.  Raises ConfigError for fewer than 2 finite rewards or beta <= 0."""
    r = np.asarray(rewards, dtype=np.float64).ravel()
    b = _beta(beta)
    if r.size < 2 or not np.all(np.isfinite(r)):
        raise ConfigError("importance_sampled_optimum: needs 2 or more finite rewards")

    def estimate(x: np.ndarray) -> tuple[float, float]:
        lw = x / b
        top = lw.max()
        w = np.exp(lw - top)
        er = float((w * x).sum() / w.sum())
        log_z = float(top) + math.log(float(w.mean()))
        return er, er / b - log_z

    er, kl = estimate(r)
    w = np.exp(r / b - (r / b).max())
    out = {"reward": er, "kl": max(kl, 0.0), "ess": float(w.sum() ** 2 / (w ** 2).sum()), "n": float(r.size)}
    rng = np.random.default_rng(seed)
    draws = np.array([estimate(r[rng.integers(0, r.size, r.size)]) for _ in range(int(resamples))])
    for j, name in enumerate(("reward", "kl")):
        lo, hi = np.quantile(draws[:, j], [0.025, 0.975])
        out[f"{name}_lo"], out[f"{name}_hi"] = float(lo), float(hi)
    out["kl_lo"] = max(out["kl_lo"], 0.0)
    return out

