"""Preference data with exact answers: the {a, b}-string alignment problem and tabular preference problems.

**{a, b} strings** (:class:`ABStringsTask`, task ``ab_strings``).  Responses are strings ``y`` of length ``L``
over {a, b} after one prompt (a BOS token).  The *reference* ``pi_ref`` draws each token independently with
``P(a) = p_ref``; a model pretrained on this task's own data (its default loss: next-token cross-entropy on
reference strings) learns it.  The *reward* is read from the string:

* ``reward = count``: ``r(y) = #a(y)``, additive over tokens, so the optimum of ``max E[r] - beta KL(pi ||
  pi_ref)`` (``pi* ∝ pi_ref exp(r / beta)``, Rafailov et al. 2023, eq. 4) is again i.i.d., with
  ``P*(a) = sigmoid(1/beta + logit(p_ref))``; its reward and KL are closed forms
  (:func:`theorylab.measures.alignment.ab_closed_form`);
* ``reward = peaked``: ``r(y) = k - k^2 / (2 peak L)`` with ``k = #a(y)``, highest at ``k = peak L``: a true
  ("gold") reward that a reward model linear in the tokens gets wrong beyond the peak (Gao et al. 2023's
  over-optimisation, on a problem we can enumerate).

Pairs ``(y_1, y_2)`` are drawn from the reference and labelled ``y_1 > y_2`` with probability
``sigmoid(r(y_1) - r(y_2))`` (``labels = bt``, Bradley & Terry 1952) or by the larger reward (``labels =
hard``, ties by a fair coin): the deterministic preferences under which DPO has no finite optimum (Azar et
al. 2024, §4.2).  ``n_pairs`` fixes a finite preference data set (drawn once per run seed); none draws fresh
pairs every step (the population).

With ``L <= 14`` every one of the ``2^L`` strings is enumerated, so the evaluation is exact: the policy's
probability of each string (the product of its next-token probabilities), its expected reward, its KL from
the reference and its total-variation distance to ``pi*`` (metrics ``policy/...``).

Tokens: ``a = 0``, ``b = 1``, ``BOS = 2``; the model reads ``[BOS, y_1 .. y_{L-1}]`` and predicts ``y_1 ..
y_L`` over the two output tokens (``d_vocab = 3``, ``d_vocab_out = 2``, ``n_ctx = L``), so its outputs are a
distribution over {a, b}^L with no mass lost to other tokens.

**Tabular problems** (:func:`tabular_problem`, :func:`sample_pairs`): prompts with ``K`` responses each, a
reference policy and a true reward, for the population-level checks of
:mod:`theorylab.measures.alignment`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from theorylab.errors import ConfigError
from theorylab.tasks import register_task
from theorylab.tasks.base import Batch, Task, TaskConfig, step_rng, token_metrics

A, B, BOS = 0, 1, 2
MAX_ENUMERATED = 14  # 2^14 = 16384 strings: an exact evaluation in well under a second for a small model


class ABStringsConfig(TaskConfig):
    name: Literal["ab_strings"] = "ab_strings"
    length: int = Field(8, ge=1, le=MAX_ENUMERATED, description="L, tokens per response (every one of the 2^L "
                                                                  "strings is enumerated in evaluation)")
    p_ref: float = Field(0.5, gt=0, lt=1, description="the reference's P(a) per token (the pretraining data)")
    beta: float = Field(0.5, gt=0, description="beta of the problem max E[r] - beta KL(pi || pi_ref): the optimum "
                                               "the metrics compare with, and the preference objectives' beta")
    reward: Literal["count", "peaked"] = Field("count", description="count: r = #a; peaked: r = k - k^2 / "
                                                                      "(2 peak L), k = #a")
    peak: float = Field(0.7, gt=0, le=1, description="peaked reward only: the fraction of a where r is highest")
    labels: Literal["bt", "hard"] = Field("bt", description="pair labels: bt = Bradley-Terry draws, P(y_1 > y_2) "
                                                            "= sigmoid(r_1 - r_2); hard = the larger reward wins")
    n_pairs: int | None = Field(None, gt=0, description="a fixed preference data set of this many pairs (per run "
                                                        "seed); none = fresh pairs every step")
    n_test: int = Field(512, gt=0, description="held-out reference strings for the language-model loss")

    def model_defaults(self) -> dict[str, Any]:
        return {"d_vocab": 3, "d_vocab_out": 2, "n_ctx": self.length}

    def reward_model_defaults(self) -> dict[str, Any]:
        """A reward model reads ``[BOS, y_1 .. y_L]`` and its value head has one output."""
        return {"n_ctx": self.length + 1, "d_vocab_out": 1}

    def rows_per_step(self) -> int:
        return 64

    def data_numbers(self) -> int:
        return 2 * (self.n_test + 2 * (self.n_pairs or 0)) * self.length + 4 * 2**self.length * self.length


def strings(L: int) -> torch.Tensor:
    """Every string of length ``L`` over {a, b} as ``[2^L, L]`` int64 tokens (row ``i``: the binary digits of
    ``i``, most significant first, ``a = 0``)."""
    i = torch.arange(2**L).unsqueeze(1)
    return (i >> torch.arange(L - 1, -1, -1)) & 1


def reward_of(y: torch.Tensor, cfg: ABStringsConfig) -> torch.Tensor:
    """The true reward of responses ``y [n, L]`` (float64 ``[n]``): ``#a`` or the peaked reward (module doc)."""
    k = (y == A).sum(-1).double()
    if cfg.reward == "count":
        return k
    return k - k**2 / (2.0 * cfg.peak * cfg.length)


def reference_log_prob(y: torch.Tensor, p_ref: float) -> torch.Tensor:
    """``log pi_ref(y)`` (float64 ``[n]``) of responses ``y [n, L]`` under i.i.d. tokens with ``P(a) = p_ref``."""
    k = (y == A).sum(-1).double()
    return k * math.log(p_ref) + (y.shape[-1] - k) * math.log1p(-p_ref)


def first_wins(d: np.ndarray, u: np.ndarray, labels: str) -> np.ndarray:
    """Whether the first answer of each pair is preferred, given the reward gaps ``d = r_1 - r_2`` [n] and
    uniform draws ``u`` [n]: with probability ``sigmoid(d)`` (``bt``, Bradley & Terry 1952), or when ``d > 0``
    with ties by a fair coin (``hard``)."""
    if labels == "bt":
        return u < 1.0 / (1.0 + np.exp(-d))
    return (d > 0) | ((d == 0) & (u < 0.5))


def model_inputs(y: torch.Tensor) -> torch.Tensor:
    """What the model reads for responses ``y [n, L]``: ``[BOS, y_1 .. y_{L-1}]`` (``[n, L]`` int64)."""
    bos = torch.full((y.shape[0], 1), BOS, dtype=torch.long, device=y.device)
    return torch.cat([bos, y[:, :-1]], dim=1)


def reward_model_inputs(y: torch.Tensor) -> torch.Tensor:
    """A reward model's input ``[n, L + 1]``: BOS then the whole response ``y [n, L]``."""
    return torch.cat([torch.full_like(y[:, :1], BOS), y], 1)


def response_log_prob(model: torch.nn.Module, y: torch.Tensor) -> torch.Tensor:
    """``log pi(y)`` (``[n]``, float64) of responses ``y [n, L]`` under a model of this task: the sum of the
    next-token log-probabilities over the two output tokens.  Differentiable."""
    logits = model(model_inputs(y))
    lp = torch.log_softmax(logits.double(), dim=-1)
    return lp.gather(-1, y.unsqueeze(-1)).squeeze(-1).sum(-1)


class PreferenceData:
    """The preference data of a task whose responses come from a reference sampler: labelled pairs (fresh or a
    fixed set), held-out pairs and prompts, shared by :class:`ABStringsTask` and
    :class:`theorylab.tasks.pcfg_preference.PCFGPreferenceTask`.  A task using it provides ``_draw(rng, n)``
    (``n`` reference responses ``[n, L]``), ``reward(y)``, ``_inputs(y)`` (the model's inputs for responses),
    ``BOS``, the seed streams ``_PAIR_SALTS`` = (fixed set, held-out pairs), and config fields ``labels`` and
    ``n_pairs``; it calls :meth:`_init_pairs` in its constructor."""

    BOS: ClassVar[int]
    _PAIR_SALTS: ClassVar[tuple[int, int]]
    objectives: ClassVar[tuple[str, ...]] = ("dpo", "ipo", "rlhf", "reward_model")
    exact_outputs: ClassVar[bool] = True  # the evaluation reads the outputs as a distribution over responses

    def _init_pairs(self) -> None:
        n = self.cfg.n_pairs
        self._pairs = None if n is None else self._labelled_pairs(np.random.default_rng([self.seed,
                                                                                          self._PAIR_SALTS[0]]), n)

    def _labelled_pairs(self, rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` reference pairs as (chosen, rejected), each ``[n, L]``, labelled as ``cfg.labels`` says."""
        y1, y2 = self._draw(rng, n), self._draw(rng, n)
        d = (self.reward(y1) - self.reward(y2)).cpu().numpy()
        first = torch.from_numpy(first_wins(d, rng.random(n), self.cfg.labels)).unsqueeze(1)
        return torch.where(first, y1, y2), torch.where(first, y2, y1)

    def _pair_batch(self, w: torch.Tensor, lo: torch.Tensor) -> Batch:
        return Batch(tokens=self._inputs(w), targets=w, extras={"tokens_l": self._inputs(lo), "targets_l": lo})

    def preference_batch(self, step: int, batch_size: int | None) -> Batch:
        """Labelled pairs for step ``step``: ``tokens``/``targets`` of the chosen responses and ``extras``
        ``tokens_l``/``targets_l`` of the rejected ones (each ``[B, L]``; the targets are the responses): fresh
        pairs (``batch_size``, default 64), or a minibatch (all when ``batch_size`` is none) of the fixed set."""
        if self._pairs is None:
            w, lo = self._labelled_pairs(step_rng(self.seed, step, 1), batch_size or 64)
        else:
            w, lo = self._pairs
            if batch_size is not None and batch_size < len(w):
                idx = torch.from_numpy(np.sort(step_rng(self.seed, step, 1).choice(len(w), batch_size, replace=False)))
                w, lo = w[idx], lo[idx]
        return self._pair_batch(w, lo)

    def heldout_pairs(self, n: int = 1024) -> Batch:
        """``n`` labelled reference pairs never trained on (a seed stream of their own), in
        :meth:`preference_batch`'s layout: a reward model's test set."""
        return self._pair_batch(*self._labelled_pairs(np.random.default_rng([self.seed, self._PAIR_SALTS[1]]), n))

    def prompt_batch(self, step: int, batch_size: int | None) -> Batch:
        """``batch_size`` (default 64) prompts ``[B, 1]`` (the BOS token) for on-policy sampling at step
        ``step``; ``extras["step"]`` carries the step, from which the sampler's generator is derived."""
        n = batch_size or 64
        return Batch(tokens=torch.full((n, 1), self.BOS, dtype=torch.long), extras={"step": torch.full((n,), step)})

    def sample_reference(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        """``n`` responses ``[n, L]`` drawn from the task's reference distribution."""
        return self._draw(rng, n)


@register_task
class ABStringsTask(PreferenceData, Task):
    """The {a, b}-string alignment problem (module doc).  Its own loss pretrains the reference; the
    preference objectives (:mod:`theorylab.runs.objectives`) read :meth:`preference_batch`,
    :meth:`prompt_batch` and :meth:`reward`."""

    Config = ABStringsConfig
    BOS = BOS
    _PAIR_SALTS = (0xAB6, 0xAB7)

    def __init__(self, cfg: ABStringsConfig, seed: int = 0):
        super().__init__(cfg, seed)
        self.cfg: ABStringsConfig = cfg
        rng = np.random.default_rng([self.seed, 0xAB5])
        test = self._draw(rng, cfg.n_test)
        self._test = Batch(tokens=model_inputs(test), targets=test)
        self._init_pairs()
        self.all_strings = strings(cfg.length)
        self.all_rewards = reward_of(self.all_strings, cfg)
        self.ref_log_probs = reference_log_prob(self.all_strings, cfg.p_ref)
        logits = self.ref_log_probs + self.all_rewards / cfg.beta
        self.optimum = torch.softmax(logits, 0)  # pi* ∝ pi_ref exp(r / beta), Rafailov et al. 2023 eq. 4

    # ---------------------------------------------------------------- data
    def _draw(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        """``n`` reference strings ``[n, L]``."""
        return torch.from_numpy((rng.random((n, self.cfg.length)) >= self.cfg.p_ref).astype(np.int64))

    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        """``batch_size`` (default 64) fresh reference strings for next-token training."""
        y = self._draw(step_rng(self.seed, step), batch_size or 64)
        return Batch(tokens=model_inputs(y), targets=y)

    def reward_model_inputs(self, y: torch.Tensor) -> torch.Tensor:
        return reward_model_inputs(y)

    @staticmethod
    def _inputs(y: torch.Tensor) -> torch.Tensor:
        return model_inputs(y)

    @property
    def response_length(self) -> int:
        return self.cfg.length

    def reward(self, y: torch.Tensor) -> torch.Tensor:
        """The true reward of responses ``y [n, L]`` (float64 ``[n]``)."""
        return reward_of(y, self.cfg).to(y.device)

    def reference_log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """``log pi_ref(y)`` of the exact reference (float64 ``[n]``)."""
        return reference_log_prob(y, self.cfg.p_ref).to(y.device)

    def response_log_prob(self, model: torch.nn.Module, y: torch.Tensor) -> torch.Tensor:
        return response_log_prob(model, y)

    # ---------------------------------------------------------------- evaluation
    def eval_sets(self) -> dict[str, Batch]:
        return {"test": self._test}

    @torch.no_grad()
    def policy(self, model: torch.nn.Module, device: Any = None, rows: int = 4096) -> torch.Tensor:
        """The model's probability of every string (float64 ``[2^L]``, in :func:`strings` order; sums to 1)."""
        y = self.all_strings.to(device or "cpu")
        lp = torch.cat([response_log_prob(model, y[i:i + rows]) for i in range(0, len(y), rows)])
        return torch.exp(lp).cpu()

    def evaluate(self, model: torch.nn.Module, device: Any, dtype: Any, eval_bs: int,
                 extra_rewards: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        """Next-token metrics on held-out reference strings (``test/...``) and the exact policy metrics
        (``policy/reward``, ``policy/kl`` from the reference in nats, ``policy/tv_to_optimum``, ``policy/p_a``:
        the mean probability of a per token, and the optimum's ``policy/optimum_reward`` and
        ``policy/optimum_kl``); ``extra_rewards``: ``{name: [2^L] values}`` also averaged over the policy, as
        ``policy/<name>`` (a reward model's proxy reward)."""
        out = {f"test/{k}": v for k, v in self.metrics(model, self._test.to(device or "cpu")).items()}
        pi = self.policy(model, device, eval_bs)
        ref = torch.exp(self.ref_log_probs)
        logpi = torch.log(pi.clamp_min(1e-300))
        k = (self.all_strings == A).sum(-1).double()
        opt = self.optimum
        out.update({
            "policy/reward": float(pi @ self.all_rewards),
            "policy/kl": float((pi * (logpi - self.ref_log_probs)).sum()),
            "policy/tv_to_optimum": float(0.5 * (pi - opt).abs().sum()),
            "policy/p_a": float(pi @ k) / self.cfg.length,
            "policy/optimum_reward": float(opt @ self.all_rewards),
            "policy/optimum_kl": float((opt * (torch.log(opt) - self.ref_log_probs)).sum()),
            "policy/reference_reward": float(ref @ self.all_rewards),
        })
        for name, values in (extra_rewards or {}).items():
            out[f"policy/{name}"] = float(pi @ values.cpu().double())
        return out

    @torch.no_grad()
    def metrics(self, model: torch.nn.Module, batch: Batch, out: torch.Tensor | None = None) -> dict[str, float]:
        if out is None:
            out = self.forward(model, batch)
        return token_metrics(out, batch.targets)


# --------------------------------------------------------------------------- tabular problems


@dataclass
class TabularProblem:
    """``P`` prompts with ``K`` responses each: the reference ``pi_ref [P, K]`` (rows sum to 1) and the true
    reward ``r [P, K]``."""

    pi_ref: np.ndarray
    r: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.pi_ref.shape  # type: ignore[return-value]


def tabular_problem(rng: np.random.Generator, K: int = 6, prompts: int = 1, ref_scale: float = 1.0,
                    reward_scale: float = 1.0) -> TabularProblem:
    """A random tabular problem: ``pi_ref = softmax(ref_scale z)`` and ``r = reward_scale u`` with ``z, u``
    standard normal ``[prompts, K]`` (the setup of the population DPO check in ``SETUPS.md`` §6.2).  Raises
    ConfigError for ``K < 2`` or ``prompts < 1``."""
    if K < 2 or prompts < 1:
        raise ConfigError(f"tabular_problem: needs K >= 2 responses and >= 1 prompt (got K={K}, prompts={prompts})")
    z = ref_scale * rng.standard_normal((prompts, K))
    pi_ref = np.exp(z - z.max(1, keepdims=True))
    pi_ref /= pi_ref.sum(1, keepdims=True)
    return TabularProblem(pi_ref, reward_scale * rng.standard_normal((prompts, K)))


def ab_tabular(cfg: ABStringsConfig) -> TabularProblem:
    """The {a, b}-string problem as a tabular one: one prompt, every string of :func:`strings` a response, the
    exact reference and the true reward (``pi_ref``, ``r`` [1, 2^L])."""
    Y = strings(cfg.length)
    pi_ref = np.exp(reference_log_prob(Y, cfg.p_ref).numpy())
    return TabularProblem((pi_ref / pi_ref.sum())[None], reward_of(Y, cfg).numpy()[None])


def sample_pairs(problem: TabularProblem, n: int, rng: np.random.Generator, labels: str = "bt"
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` labelled pairs ``(prompt, chosen, rejected)`` (int arrays ``[n]``): a prompt uniformly, two
    distinct responses from the reference, labelled by Bradley–Terry (``bt``) or by the larger reward
    (``hard``; ties by a fair coin)."""
    if labels not in ("bt", "hard"):
        raise ConfigError(f"labels: {labels!r}; allowed: bt, hard")
    P, K = problem.shape
    x = rng.integers(0, P, n)
    i = np.array([rng.choice(K, p=problem.pi_ref[p]) for p in x])
    j = np.array([rng.choice(K, p=problem.pi_ref[p]) for p in x])
    same = i == j
    while same.any():
        j[same] = [rng.choice(K, p=problem.pi_ref[p]) for p in x[same]]
        same = i == j
    first = first_wins(problem.r[x, i] - problem.r[x, j], rng.random(n), labels)
    return x, np.where(first, i, j), np.where(first, j, i)


__all__ = ["ABStringsConfig", "ABStringsTask", "PreferenceData", "TabularProblem", "tabular_problem", "sample_pairs", "ab_tabular", "reward_model_inputs",
           "first_wins", "strings",
           "reward_of", "reference_log_prob", "response_log_prob", "model_inputs"]
