"""An order-k Markov source over ``vocab`` tokens with a closed-form entropy rate and an exact optimal loss.

The source (Shannon 1948, section 3; Cover & Thomas 2006, *Elements of Information Theory*, section 4.2):
the next token depends on the previous ``order`` tokens (the context ``c``) through a transition table
``P[c, x]``, ``vocab**order`` rows of ``vocab`` probabilities.  Each row is drawn from a symmetric
Dirichlet(``concentration``) by a numpy Generator seeded with ``chain_seed`` alone, so every run of a sweep
(every run seed) sees the same source; the run seed varies only the samples.

Closed forms (nats), with ``k = order``:

* ``pi``: the stationary distribution over contexts, the fixed point of the chain on contexts
  ``(x_1..x_k) -> (x_2..x_k, x)``, found by power iteration with a convergence check
  (:func:`stationary_contexts`);
* the entropy rate ``H = sum_c pi(c) H(P[c, :])`` (Cover & Thomas, Theorem 4.2.4): the best loss per token
  given the whole past;
* ``cond[j] = H(X_j | X_0 .. X_{j-1})`` for ``j < k``, from the marginals of ``pi`` on the first ``j + 1``
  tokens (``cond[j] = H(X_0..X_j) - H(X_0..X_{j-1})``); ``cond[k] = H``.

Every window of ``seq_len + 1`` tokens starts from ``pi`` (so it is a stationary stretch of the chain); the
model reads tokens ``0..T-1`` and predicts targets ``1..T`` (``T = seq_len``).  Target ``t`` has ``t`` tokens
of context, so its best expected loss is ``cond[min(t, k)]``, and the best expected loss of a window is

    window_optimum(T) = (sum_{t=1}^{T} cond[min(t, k)]) / T
                      = (H(X_1 | X_0) + (T - 1) H) / T          for k = 2,

which the metrics report as ``optimal_loss`` (``entropy_rate`` is ``H``; ``excess_loss = loss -
optimal_loss``).  The Bayes-optimal predictor (:meth:`MarkovTask.optimal_logits`) attains it in expectation.

Why ``concentration = 0.5`` by default: for a symmetric Dirichlet(a) row over V outcomes the expected
entropy is ``psi(V a + 1) - psi(a + 1)`` (:func:`expected_row_entropy`), 2.10 nats for V = 16 and a = 0.5
against log 16 = 2.77.  The default chain (``chain_seed`` 0) has H = 2.110 nats, H(X_1 | X_0) = 2.709 and
H(X_0) = 2.769: about 0.66 nats per token to learn, nearly all of it only from both context tokens (a
bigram model gains 0.06), while the rows stay spread enough that the chain mixes fast and no few contexts
dominate the windows.  Smaller values make the rows sparser (a = 0.1: H near 1.2 nats), larger ones
approach the uniform source (a = 5: near 2.68 nats, little to learn).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from theorylab.config import Seed
from theorylab.errors import ConfigError
from theorylab.models.objectives import bits, perplexity
from theorylab.tasks import register_task
from theorylab.tasks.base import Batch, Task, TaskConfig, step_rng, token_metrics

# The largest table (vocab ** (order + 1) numbers) a config may ask for: 4M float64 numbers, 32 MB, and a
# power iteration of a few seconds at most.
MAX_TABLE = 2**22


class MarkovConfig(TaskConfig):
    name: Literal["markov"] = "markov"
    vocab: int = Field(16, ge=2, description="tokens of the source")
    order: int = Field(2, ge=1, le=3, description="tokens of context the next token depends on (1..3)")
    concentration: float = Field(0.5, gt=0, description="Dirichlet concentration of each row of the transition "
                                 "table (small: peaked rows, low entropy rate; large: near uniform)")
    chain_seed: Seed = Field(0, description="seed of the transition table (0..2**63-1; shared by every run seed)")
    seq_len: int = Field(64, ge=1, description="tokens per training window (model context)")
    n_test: int = Field(256, gt=0, description="held-out windows")

    @model_validator(mode="after")
    def _check(self) -> MarkovConfig:
        if self.vocab ** (self.order + 1) > MAX_TABLE:
            raise ValueError(f"vocab**(order+1) = {self.vocab}**{self.order + 1} numbers in the transition table; "
                             f"at most {MAX_TABLE} (lower vocab or order)")
        return self

    def rows_per_step(self) -> int:
        return 32  # train_batch's default when train.batch_size is none

    def data_numbers(self) -> int:
        # the table, its cumulative sums and the conditional tables of shorter contexts; the test windows
        return 3 * self.vocab ** (self.order + 1) + 2 * self.n_test * (self.seq_len + 1)

    def model_defaults(self) -> dict[str, Any]:
        return {"d_vocab": self.vocab, "n_ctx": self.seq_len}


# --------------------------------------------------------------------------- closed forms


def markov_table(vocab: int, order: int, concentration: float, seed: int) -> np.ndarray:
    """The transition table ``P [vocab**order, vocab]`` (float64, rows summing to 1): row ``c`` is the
    distribution of the next token after the context whose tokens ``x_1..x_k`` (oldest first) have index
    ``c = sum_i x_i vocab**(k - i)``.  Rows are i.i.d. Dirichlet(``concentration``) draws from
    ``numpy.random.default_rng([seed, 0x3A2C])`` (the same table for every run seed).  Never raises for
    valid arguments (the config checks them)."""
    rng = np.random.default_rng([int(seed), 0x3A2C])
    return rng.dirichlet(np.full(vocab, float(concentration)), size=vocab**order)


def stationary_contexts(P: np.ndarray, order: int, tol: float = 1e-13, max_iter: int = 100_000) -> np.ndarray:
    """The stationary distribution ``pi [vocab**order]`` of the chain on contexts of an order-``order`` table
    ``P [vocab**order, vocab]``: ``pi'(x_2..x_k, x) = sum_{x_1} pi(x_1..x_k) P[x_1..x_k, x]``, iterated from
    the uniform distribution until the L1 change of an iteration is below ``tol`` (power iteration; Levin,
    Peres & Wilmer, *Markov Chains and Mixing Times*, section 4.3).  A Dirichlet table has every entry
    positive, so the chain is irreducible and aperiodic and ``pi`` unique.  Raises :class:`ConfigError` when
    it has not converged after ``max_iter`` iterations (a chain that mixes too slowly: raise the
    concentration)."""
    V = P.shape[1]
    P3 = P.reshape(V, V ** (order - 1), V)  # [x_1, (x_2..x_k), x]
    pi = np.full(P.shape[0], 1.0 / P.shape[0])
    for _ in range(max_iter):
        new = np.einsum("as,asx->sx", pi.reshape(V, -1), P3).reshape(-1)
        new /= new.sum()
        if np.abs(new - pi).sum() < tol:
            return new
        pi = new
    raise ConfigError(f"markov: the stationary distribution did not converge in {max_iter} iterations "
                      "(the chain mixes too slowly; raise task.concentration)")


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy (nats) along ``axis``, with 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis)


def conditional_entropies(P: np.ndarray, pi: np.ndarray, order: int) -> np.ndarray:
    """``cond [order + 1]`` (nats): ``cond[j] = H(X_j | X_0..X_{j-1})`` of the stationary chain for ``j <
    order`` (from the marginals of ``pi`` on the first ``j + 1`` tokens), and ``cond[order] = sum_c pi(c)
    H(P[c, :])``, the entropy rate (Cover & Thomas 2006, Theorem 4.2.4).  ``P [V**order, V]``, ``pi
    [V**order]``.  Never raises."""
    V = P.shape[1]
    joint = [0.0]  # H(X_0..X_{j-1}) for j = 0..order
    for j in range(1, order + 1):
        joint.append(float(_entropy(pi.reshape(V**j, -1).sum(1))))
    cond = [joint[j + 1] - joint[j] for j in range(order)]
    cond.append(float(pi @ _entropy(P)))
    return np.array(cond)


def window_optimum(cond: np.ndarray, T: int) -> float:
    """The best expected mean loss (nats) over the ``T`` targets of a window: target ``t`` (``1..T``) has the
    ``t`` tokens before it as context, so its best loss is ``cond[min(t, k)]`` (``k = len(cond) - 1``, the
    order); for order 2 this is ``(H(X_1 | X_0) + (T - 1) H) / T``.  ``cond`` from
    :func:`conditional_entropies`.  Raises :class:`ConfigError` for ``T < 1``."""
    if T < 1:
        raise ConfigError(f"a window has at least one target (got T={T})")
    k = len(cond) - 1
    short = min(k - 1, T)  # targets 1..k-1 see fewer than k tokens
    return float((sum(cond[t] for t in range(1, short + 1)) + (T - short) * cond[k]) / T)


def sample_windows(cum: np.ndarray, pi_cum: np.ndarray, order: int, n: int, length: int,
                   rng: np.random.Generator) -> np.ndarray:
    """``[n, length]`` int64 tokens: ``n`` stretches of the stationary chain, vectorised over the rows (one
    numpy step per time step).  ``cum [V**order, V]``: cumulative rows of the table with the last column
    ``inf``; ``pi_cum [V**order]``: cumulative stationary distribution.  The first ``order`` tokens are the
    digits of a context drawn from ``pi``; each later token is an inverse-CDF draw from its context's row
    (exact up to float64 uniforms).  A 32 x 65 batch of the default source takes about 0.45 ms on one CPU
    core (4-5 M tokens/s; 20 M tokens/s at 1024 rows).  Never raises for valid tables."""
    V = cum.shape[1]
    k = order
    u = rng.random((n, length))
    out = np.empty((n, length), dtype=np.int64)
    c = np.minimum(np.searchsorted(pi_cum, u[:, 0] * pi_cum[-1], side="right"), len(pi_cum) - 1)
    for i in range(min(k, length)):
        out[:, i] = (c // V ** (k - 1 - i)) % V
    base = V ** (k - 1)
    for t in range(k, length):
        x = (cum[c] <= u[:, t, None]).sum(1)
        out[:, t] = x
        c = (c % base) * V + x
    return out


def expected_row_entropy(vocab: int, concentration: float) -> float:
    """``E[H(p)]`` (nats) for ``p ~ Dirichlet(a, ..., a)`` over ``vocab`` outcomes: ``psi(vocab a + 1) -
    psi(a + 1)``, ``psi`` the digamma function (Wolpert & Wolf 1995, Phys. Rev. E 52, 6841, the prior mean
    entropy; derivation: each ``p_i ~ Beta(a, (vocab - 1) a)`` and ``-E[p_i log p_i] = (a / A)(psi(A + 1) -
    psi(a + 1))`` with ``A = vocab a``).  The entropy rate of a chain drawn at this concentration lies near
    it (the rows' entropies, weighted by ``pi``).  Raises :class:`ConfigError` for ``vocab < 1`` or a
    concentration that is not finite and positive."""
    if vocab < 1 or not concentration > 0 or not math.isfinite(concentration):
        raise ConfigError(f"need vocab >= 1 and a finite concentration > 0 (got {vocab}, {concentration})")
    from scipy.special import digamma

    return float(digamma(vocab * concentration + 1) - digamma(concentration + 1))


# --------------------------------------------------------------------------- the task


@register_task
class MarkovTask(Task):
    """Next-token prediction on an order-k Markov source; the entropy rate and the window optimum are exact.

    Attributes: ``table`` ``P [vocab**order, vocab]``, ``pi [vocab**order]`` (stationary over contexts),
    ``cond [order + 1]`` (``cond[j] = H(X_j | X_0..X_{j-1})``, nats), ``entropy_rate`` (``cond[order]``).
    """

    Config = MarkovConfig
    cfg: MarkovConfig

    def __init__(self, cfg: MarkovConfig, seed: int = 0):
        super().__init__(cfg, seed)
        V, k = cfg.vocab, cfg.order
        self.table = markov_table(V, k, cfg.concentration, cfg.chain_seed)  # [V**k, V]
        self.pi = stationary_contexts(self.table, k)  # [V**k]
        self.cond = conditional_entropies(self.table, self.pi, k)  # [k + 1]
        self.entropy_rate = float(self.cond[k])
        cum = np.cumsum(self.table, axis=1)
        cum[:, -1] = np.inf  # every uniform lands in a row: no rounding past the last token
        self._cum = cum
        self._pi_cum = np.cumsum(self.pi)
        # the conditional tables of the first k - 1 targets: P(x_j | x_0..x_{j-1}) [V**j, V], j = 1..k-1
        self._short = []
        for j in range(1, k):
            m = self.pi.reshape(V ** (j + 1), -1).sum(1).reshape(V**j, V)
            self._short.append(m / np.maximum(m.sum(1, keepdims=True), 1e-300))
        self.test_set = self._windows(cfg.n_test, np.random.default_rng([self.seed, 0x3A2C7E57]))

    def optimal_loss(self, T: int | None = None) -> float:
        """The exact best expected loss (nats) of a window of ``T`` targets (default ``seq_len``): see
        :func:`window_optimum`."""
        return window_optimum(self.cond, self.cfg.seq_len if T is None else T)

    def _windows(self, n: int, rng: np.random.Generator) -> Batch:
        w = torch.from_numpy(sample_windows(self._cum, self._pi_cum, self.cfg.order, n, self.cfg.seq_len + 1, rng))
        return Batch(tokens=w[:, :-1].contiguous(), targets=w[:, 1:].contiguous())

    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        return self._windows(batch_size or 32, step_rng(self.seed, step))

    def eval_sets(self) -> dict[str, Batch]:
        return {"test": self.test_set}

    @torch.no_grad()
    def optimal_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """The Bayes-optimal predictor's log-probabilities ``[B, T, V]`` (float64, on ``tokens``' device) for
        tokens ``[B, T]`` read from the start of a stationary window: position ``t`` predicts token ``t + 1``
        from tokens ``max(0, t - k + 1)..t`` (the true table, or for ``t < k - 1`` the stationary conditional
        of the shorter prefix).  Impossible tokens get ``log 1e-300``.  Raises :class:`ConfigError` for token
        ids outside the vocabulary."""
        V, k = self.cfg.vocab, self.cfg.order
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= V):
            raise ConfigError(f"token ids must lie in [0, {V})")
        dev = tokens.device
        B, T = tokens.shape
        out = torch.empty(B, T, V, dtype=torch.float64, device=dev)
        c = torch.zeros(B, dtype=torch.long, device=dev)
        tables = [torch.from_numpy(np.log(np.maximum(t, 1e-300))).to(dev) for t in [*self._short, self.table]]
        for t in range(T):
            c = (c % V ** (k - 1)) * V + tokens[:, t] if t >= k else c * V + tokens[:, t]
            out[:, t] = tables[min(t, k - 1)][c]
        return out

    @torch.no_grad()
    def metrics(self, model, batch: Batch, out=None) -> dict[str, float]:
        logits = self.forward(model, batch) if out is None else out
        m = token_metrics(logits, batch.targets)
        m.pop("seq_accuracy", None)
        opt = self.optimal_loss(int(batch.tokens.shape[1]))
        m.update({"loss_bits": bits(m["loss"]), "perplexity": perplexity(m["loss"]),
                  "entropy_rate": self.entropy_rate, "optimal_loss": opt, "optimal_loss_bits": bits(opt),
                  "excess_loss": m["loss"] - opt})
        return m

