"""Concept-based sparse-coding prompts for in-context classification, built from the
description of Bu, Huang, Han, Nitanda, Suzuki, Zhang & Wong (NeurIPS 2024, arXiv
2411.02199).  The paper's numeric settings were not available to us; every default below
is our own choice, stated here.

Dictionary.  ``4 K`` orthonormal directions of R^d (a seeded random rotation): for each
concept k a word-shared direction ``a_k``, a word label-splitting direction ``b_k``, a
label-shared ``q_k`` and a label-splitting ``r_k``.  The two word features of concept k
are ``mu_k^(+/-) = alpha a_k +/- beta b_k`` and its label features ``nu_k^(+/-) = alpha q_k
+/- beta r_k``: features within a concept have inner product ``alpha^2 - beta^2 > 0``,
features of different concepts are orthogonal.  Defaults: d = 32, K = 4, alpha = 1,
beta = 0.6.

Words.  A word of concept k and label y is ``mu_k^y`` plus ``n_poly`` task-irrelevant
features ``gamma mu_j^(s)`` of other concepts j (random j, random sign s; polysemy) plus
noise ``sigma xi``, ``xi ~ N(0, I_d)``.  Defaults: n_poly = 2, gamma = 1, sigma = 0.1
(low noise: the Bayes error below is about 1e-9).  With gamma = alpha a query word alone
does not say which of its concepts the task is about (in a pilot with gamma = 0.5 the
model solved the task from the query alone, switched label features changed nothing);
the demonstrations, which share only the task's concept, do.

Prompts.  One concept k per prompt, drawn from ``concept_probs`` (uniform by default);
``L`` demonstrations with labels y_l uniform in {-1, +1}; each demonstration is one
position holding ``[x_l ; nu_k^(y_l) + sigma xi']`` (width 2d); the query position holds
``[x_q ; 0]`` and the model predicts its label (class 0 = -1, class 1 = +1) at the last
position.  Default L = 8.

Bayes error.  Given the concept (which the demonstrations reveal), the label is the sign
of ``<x_q, b_k>``, whose noise is N(0, sigma^2) around ``y beta``: error ``Phi(-beta / sigma)``.

Out-of-distribution evaluation sets (``ood_*``): prompts of ``L // 2`` and ``2 L``
demonstrations; a skewed concept distribution (concept 0 with probability ``skew``, the
rest sharing the remainder); switched semantic features (every concept's label features
replaced by the next concept's, so labels must be read from the demonstrations).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from theorylab.tasks import register_task
from theorylab.tasks.base import Batch, Task, TaskConfig, step_rng


class ConceptsConfig(TaskConfig):
    name: Literal["concepts"] = "concepts"
    d: int = Field(32, gt=0, le=1024, description="ambient dimension (>= 4 K)")
    K: int = Field(4, ge=2, description="number of concepts")
    L: int = Field(8, ge=1, le=256, description="demonstrations per training prompt")
    alpha: float = Field(1.0, gt=0, description="shared-feature scale")
    beta: float = Field(0.6, gt=0, description="label-splitting scale (< alpha)")
    n_poly: int = Field(2, ge=0, description="task-irrelevant concept features per word")
    gamma: float = Field(1.0, ge=0, description="scale of the task-irrelevant features")
    sigma: float = Field(0.1, ge=0, description="noise std per coordinate")
    skew: float = Field(0.7, gt=0, lt=1, description="probability of concept 0 in the skewed OOD set")
    n_test: int = Field(512, gt=0, description="prompts in the test split and in each out-of-distribution set")

    @model_validator(mode="after")
    def _check(self) -> ConceptsConfig:
        if self.d < 4 * self.K:
            raise ValueError(f"d must be >= 4 K = {4 * self.K} (got {self.d})")
        if self.beta >= self.alpha:
            raise ValueError("beta must be < alpha (features within a concept need a positive inner product)")
        if self.n_poly > self.K - 1:
            raise ValueError(f"n_poly must be <= K - 1 = {self.K - 1}")
        return self

    def data_numbers(self) -> int:
        # the rotation and word tables; five evaluation sets of n_test prompts [L + 1, 2 d] (ood_long: 2 L + 1)
        return 2 * self.d**2 + 6 * self.n_test * (2 * self.L + 1) * 2 * self.d

    def model_defaults(self) -> dict[str, Any]:
        return {"input_dim": 2 * self.d, "d_vocab_out": 2, "n_ctx": 2 * self.L + 1, "d_vocab": None}


def bayes_error(cfg: ConceptsConfig) -> float:
    """Phi(-beta / sigma): the error of the sign of <x_q, b_k> (0 when sigma = 0)."""
    if cfg.sigma == 0:
        return 0.0
    return 0.5 * math.erfc(cfg.beta / cfg.sigma / math.sqrt(2))


@register_task
class ConceptsTask(Task):
    """In-context binary classification of polysemous words, one concept per prompt."""

    Config = ConceptsConfig
    cfg: ConceptsConfig

    def __init__(self, cfg: ConceptsConfig, seed: int = 0):
        super().__init__(cfg, seed)
        c = cfg
        rot, _ = np.linalg.qr(np.random.default_rng([self.seed, 0xC0C]).standard_normal((c.d, c.d)))
        dirs = rot[:, : 4 * c.K].T.reshape(4, c.K, c.d)  # a, b, q, r: [K, d] each
        self.a, self.b, self.q, self.r = dirs
        self._noise = rot[:, 4 * c.K:].T  # [d - 4K, d]: directions outside the dictionary
        self.word = np.stack([c.alpha * self.a - c.beta * self.b, c.alpha * self.a + c.beta * self.b], 1)  # [K,2,d]
        self.label = np.stack([c.alpha * self.q - c.beta * self.r, c.alpha * self.q + c.beta * self.r], 1)
        rng = np.random.default_rng([self.seed, 0x7E57])
        skewed = np.full(c.K, (1 - c.skew) / (c.K - 1))
        skewed[0] = c.skew
        self.sets = {
            "test": self.sample(c.n_test, rng),
            "ood_short": self.sample(c.n_test, rng, L=max(1, c.L // 2)),
            "ood_long": self.sample(c.n_test, rng, L=2 * c.L),
            "ood_skewed": self.sample(c.n_test, rng, probs=skewed),
            "ood_switched": self.sample(c.n_test, rng, switch=True),
        }

    def words(self, concept: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """[..., d]: words of the given concepts and labels (0/1), with polysemy and noise."""
        c = self.cfg
        x = self.word[concept, y]
        for _ in range(c.n_poly):
            # another concept than the word's own (a uniformly random offset); random sign
            other = (concept + rng.integers(1, c.K, size=concept.shape)) % c.K
            x = x + c.gamma * self.word[other, rng.integers(0, 2, size=concept.shape)]
        return x + c.sigma * rng.standard_normal(x.shape)

    def sample(self, n: int, rng: np.random.Generator, L: int | None = None, probs: np.ndarray | None = None,
               switch: bool = False) -> Batch:
        c = self.cfg
        L = c.L if L is None else L
        concept = rng.choice(c.K, size=n, p=probs)
        y = rng.integers(0, 2, size=(n, L + 1))  # class 0 = label -1, class 1 = label +1
        kk = np.repeat(concept[:, None], L + 1, 1)
        x = self.words(kk, y, rng)  # [n, L + 1, d]
        lab_concept = (kk + 1) % c.K if switch else kk
        lab = self.label[lab_concept[:, :L], y[:, :L]] + c.sigma * rng.standard_normal((n, L, c.d))
        seq = np.zeros((n, L + 1, 2 * c.d))
        seq[..., : c.d] = x
        seq[:, :L, c.d:] = lab
        f = lambda a: torch.from_numpy(a)  # noqa: E731
        return Batch(inputs=f(seq).float(), targets=f(y[:, -1]).long(),
                     extras={"concept": f(concept).long(), "demo_labels": f(y[:, :L]).long()})

    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        return self.sample(batch_size or 64, step_rng(self.seed, step))

    def eval_sets(self) -> dict[str, Batch]:
        return dict(self.sets)

    def forward(self, model, batch: Batch) -> torch.Tensor:
        return model(batch.inputs, positions=slice(-1, None))[:, -1]

    def loss(self, model, batch: Batch):
        logits = self.forward(model, batch)
        return torch.nn.functional.cross_entropy(logits, batch.targets), logits

    @torch.no_grad()
    def metrics(self, model, batch: Batch, out=None) -> dict[str, float]:
        logits = self.forward(model, batch) if out is None else out
        lp = torch.log_softmax(logits.double(), -1)
        err = (logits.argmax(-1) != batch.targets).double().mean()
        return {"loss": float(-lp.gather(-1, batch.targets[:, None]).mean()), "accuracy": float(1 - err),
                "error01": float(err)}

    def context_free_error(self, batch: Batch) -> float:
        """The 0-1 error of the best predictor that reads the query alone (the Bayes classifier of the query's
        label given only its word, marginalizing the prompt's concept, the query's polysemous features and
        their signs; Gaussian noise of std sigma), on the queries of ``batch``.

        A model below this error uses the demonstrations.  Exact posterior over the K * 2 * ((K - 1) * 2)^n_poly
        mixture components of the word model (288 at the defaults; concepts uniform as in training)."""
        import itertools

        c = self.cfg
        xq = batch.inputs[:, -1, : c.d].double().cpu().numpy()
        means, labels = [], []
        for k in range(c.K):
            for y in (0, 1):
                for offs in itertools.product(range(1, c.K), repeat=c.n_poly):
                    for signs in itertools.product((0, 1), repeat=c.n_poly):
                        m = self.word[k, y].copy()
                        for o, sg in zip(offs, signs):
                            m = m + c.gamma * self.word[(k + o) % c.K, sg]
                        means.append(m)
                        labels.append(y)
        means, labels = np.asarray(means), np.asarray(labels)
        ll = -((xq[:, None, :] - means[None]) ** 2).sum(-1) / (2 * max(c.sigma, 1e-12) ** 2)
        w = np.exp(ll - ll.max(1, keepdims=True))
        p1 = (w * (labels == 1)).sum(1) / w.sum(1)
        return float(((p1 > 0.5).astype(int) != batch.targets.cpu().numpy()).mean())

    def directions(self) -> dict[str, np.ndarray]:
        """The dictionary, as arrays ``[n, d]``: ``word_shared`` (a_k), ``word_concept`` (b_k, the word's
        label-splitting directions), ``label_shared`` (q_k), ``label_concept`` (r_k), and ``noise``, an
        orthonormal basis of the directions outside the dictionary (``[d - 4K, d]``)."""
        return {"word_shared": self.a, "word_concept": self.b, "label_shared": self.q, "label_concept": self.r,
                "noise": self._noise}
