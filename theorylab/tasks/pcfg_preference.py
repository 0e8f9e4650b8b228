"""Preferences over sentences of a probabilistic grammar, with a reward read from the parse (task
``pcfg_preference``).

**The strings.**  Responses are symbol strings of the PCFG of Lubana et al.'s concept-percolation corpus
(Lubana, Kawaguchi, Dick and Tanaka, "A percolation model of emergence", ICLR 2025), at the symbol level:
:data:`theorylab.tasks.percolation.GRAMMAR` (imported, not copied), start rule ``S -> Ph NP VP End`` with
``Ph -> '[P]'`` and ``End -> '<eos>'``::

    NP -> subjectID 0.8 | NP Conj NP 0.2
    VP -> DescPreP descV 0.4 | relV RelPreP RelNP 0.4 | VP Conj VP 0.2
    RelNP -> objectID 0.7 | objectID Conj RelNP 0.3
    DescPreP -> is | has     RelPreP -> on | in | to     Conj -> and | or

The ``[P]`` symbol is not a token.  The tokens are the other 12 terminals, in the order of :data:`SYMBOLS`
(``subjectID = 0, objectID, relV, descV, is, has, on, in, to, and, or, <eos> = 11``), and ``BOS = 12``.  A
*response* is a row ``y [L]`` (``L = max_len``): a sentence up to and including its first ``<eos>``, every
later position holding ``<eos>`` too (the canonical form, :func:`canonical`).  A row without ``<eos>`` is a
valid tensor but not a sentence.  The model reads ``[BOS, y_1 .. y_{L-1}]`` and predicts ``y_1 .. y_L``
over the 12 output tokens (``d_vocab = 13``, ``d_vocab_out = 12``, ``n_ctx = L``).

**The reference data** are sentences drawn from the grammar itself (each nonterminal expanded by its rule
probabilities, :func:`theorylab.tasks.percolation.sample_symbols` with a numpy Generator); a draw longer than
``max_len`` tokens (``<eos>`` included) is discarded and drawn again, so the data is the grammar
**conditioned on length <= max_len**, not the grammar itself.  The grammar's sentences have 6.9 tokens on
average; 22% are longer than 8 tokens, 3.6% longer than 16, 0.2% longer than 32 and about 2 in 100,000 longer
than 64 (measured on a million draws), so at the default ``max_len = 16`` the conditioning is visible
(fewer predicates than the grammar's 4/3 on average) and at 64 it is negligible.

**The reward** is read from the Viterbi parse (NLTK's ViterbiParser over
:func:`theorylab.tasks.percolation.pcfg`) of ``('[P]',) + y`` up to its first ``<eos>``:

* ``reward = predicates``: the number of predicate phrases, the ``VP`` nodes whose children are not ``VP Conj
  VP`` (``subjectID is descV <eos>``: 1).  Each VP is one phrase with probability 0.8 and two VPs with
  probability 0.2, so under the unconditioned grammar ``E[N] = 0.8 + 0.4 E[N] = 4/3``.
* ``reward = depth``: the height of the parse tree, nltk's ``Tree.height()`` (a tree of one leaf below its
  root has height 2; ``subjectID is descV <eos>``: 4).  A chain of three or more conjoined VPs (or NPs) has
  several bracketings of equal probability; the depth is that of the tree the parser returns (its floating-
  point comparisons keep one, the same in every process).
* a string that does not parse, or has no ``<eos>``, gets ``invalid_reward`` (default -1).

Results are cached by the token tuple; strings the grammar's equivalent regular expression rejects
(:func:`theorylab.tasks.percolation.regular_match`) never reach the parser.

**Preference pairs** ``(y_1, y_2)`` are drawn from the reference data and labelled ``y_1 > y_2`` with
probability ``sigmoid(r(y_1) - r(y_2))`` (``labels = bt``, Bradley & Terry 1952, the preference model of
Rafailov et al. 2023's DPO) or by the larger reward (``labels = hard``, ties by a fair coin), with
:class:`theorylab.tasks.preference.PreferenceData`; ``n_pairs`` fixes a finite data set (per run seed), none draws
fresh pairs every step.  The task's own loss (next-token cross-entropy on reference sentences, nothing taken
after the first ``<eos>``) pretrains the reference model.

**No exact reference.**  Unlike ``ab_strings`` the task has no ``reference_log_prob``: a policy can put mass
on strings outside the grammar, where the grammar's probability is 0 and ``log pi_ref`` is minus infinity, so
a KL from the grammar itself is infinite.  The reference of the preference objectives
(:mod:`theorylab.runs.objectives`) is therefore always the pretrained parent model (``parent=RUN``; or none,
the reference-free variants); :meth:`PCFGPreferenceTask.sample_reference` draws from the data distribution
for importance sampling, and :meth:`PCFGPreferenceTask.heldout_pairs` is a reward model's test set.

**Evaluation** (:meth:`PCFGPreferenceTask.evaluate`): next-token metrics on held-out sentences, and the
validity, reward and length of ``n_eval_samples`` responses sampled from the model with a fixed generator.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from theorylab.errors import ConfigError
from theorylab.models.objectives import IGNORE
from theorylab.tasks import register_task
from theorylab.tasks.base import Batch, Task, TaskConfig, step_rng, token_metrics, torch_generator
from theorylab.tasks.percolation import TERMINALS, Uniforms, _parser, regular_match, sample_symbols
from theorylab.tasks.preference import PreferenceData

#: The token ids: ``SYMBOLS[i]`` is token ``i`` (every terminal of the grammar but ``[P]``, ``<eos>`` last).
SYMBOLS: tuple[str, ...] = ("subjectID", "objectID", "relV", "descV", "is", "has", "on", "in", "to", "and", "or",
                            "<eos>")
EOS = len(SYMBOLS) - 1  # 11
BOS = len(SYMBOLS)  # 12, an input-only token
TOKEN = {s: i for i, s in enumerate(SYMBOLS)}
if set(SYMBOLS) != TERMINALS - {"[P]"}:  # the grammar of percolation.py changed: this order must follow it
    raise ImportError(f"pcfg_preference: SYMBOLS {sorted(SYMBOLS)} are not the grammar's terminals "
                      f"{sorted(TERMINALS - {'[P]'})}")

SAMPLE_ROWS = 1024  # policy samples generated at a time in evaluation (fixed, so the numbers do not depend on eval_bs)
_VP_CONJ = ["VP", "Conj", "VP"]
#: (predicates, depth) of each token tuple read so far (None: not a sentence); see :func:`parse_properties`.
_PROPS: dict[tuple[int, ...], tuple[int, int] | None] = {}


class PCFGPreferenceConfig(TaskConfig):
    """Preferences over sentences of Lubana et al.'s PCFG with a reward read from the parse (module doc)."""

    name: Literal["pcfg_preference"] = "pcfg_preference"
    max_len: int = Field(16, ge=5, le=64, description="L, tokens per response, <eos> included (the data is the "
                                                      "grammar conditioned on sentences of at most L tokens)")
    beta: float = Field(0.5, gt=0, description="beta of max E[r] - beta KL(pi || pi_ref): the preference "
                                               "objectives' beta")
    reward: Literal["predicates", "depth"] = Field("predicates", description="predicates: VP nodes of the Viterbi "
                                                   "parse that are not VP Conj VP; depth: the parse tree's height "
                                                   "(nltk Tree.height)")
    invalid_reward: float = Field(-1.0, description="the reward of a string that does not parse (or has no <eos>)")
    labels: Literal["bt", "hard"] = Field("bt", description="pair labels: bt = Bradley-Terry draws, P(y_1 > y_2) "
                                                            "= sigmoid(r_1 - r_2); hard = the larger reward wins")
    n_pairs: int | None = Field(None, gt=0, le=10_000_000, description="a fixed preference data set of this many "
                                                                       "pairs (per run seed); none = fresh pairs "
                                                                       "every step")
    n_test: int = Field(512, gt=0, le=1_000_000, description="held-out grammar sentences for the language-model loss")
    n_eval_samples: int = Field(512, gt=0, le=1_000_000, description="responses sampled from the model in evaluation "
                                                                     "(validity, reward, length)")

    def model_defaults(self) -> dict[str, Any]:
        return {"d_vocab": BOS + 1, "d_vocab_out": EOS + 1, "n_ctx": self.max_len}

    def reward_model_defaults(self) -> dict[str, Any]:
        """The model fields of a reward model of this task: it reads :meth:`PCFGPreferenceTask.reward_model_inputs`
        (``L + 1`` tokens) and writes one number per position."""
        return {"n_ctx": self.max_len + 1, "d_vocab_out": 1}

    def rows_per_step(self) -> int:
        return 64

    def data_numbers(self) -> int:
        return 2 * (self.n_test + 2 * (self.n_pairs or 0) + self.n_eval_samples) * self.max_len


# --------------------------------------------------------------------------- strings


def _check_rows(y: Any, what: str, length: int | None = None) -> None:
    if not torch.is_tensor(y) or y.dim() != 2 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        shape = tuple(y.shape) if torch.is_tensor(y) else type(y).__name__
        raise ConfigError(f"{what}: needs responses as an [n, L] integer tensor (got {shape})")
    if length is not None and y.shape[1] != length:
        raise ConfigError(f"{what}: responses have {y.shape[1]} tokens; this task's are {length} (max_len)")


def after_eos(y: torch.Tensor) -> torch.Tensor:
    """Positions strictly after the first ``<eos>`` of each row of ``y [n, L]`` (bool ``[n, L]``; all False in a
    row without ``<eos>``).  Raises ConfigError unless ``y`` is a 2-d integer tensor."""
    _check_rows(y, "after_eos")
    e = (y == EOS).long()
    return (torch.cumsum(e, -1) - e) > 0


def canonical(y: torch.Tensor) -> torch.Tensor:
    """``y [n, L]`` (int64) with every position after the first ``<eos>`` set to ``<eos>`` (rows without one
    unchanged): the canonical form of a response, e.g. of what the sampler returns.  Raises ConfigError unless
    ``y`` is a 2-d integer tensor."""
    _check_rows(y, "canonical")
    return y.long().masked_fill(after_eos(y), EOS)


def model_inputs(y: torch.Tensor) -> torch.Tensor:
    """What the model reads for responses ``y [n, L]``: ``[BOS, y_1 .. y_{L-1}]`` (``[n, L]`` int64)."""
    bos = torch.full((y.shape[0], 1), BOS, dtype=torch.long, device=y.device)
    return torch.cat([bos, y[:, :-1].long()], dim=1)


def decode(row: torch.Tensor | list[int]) -> str:
    """A response as words, up to and including its first ``<eos>`` (ids outside the vocabulary as ``?``)."""
    ids = row.tolist() if torch.is_tensor(row) else list(row)
    if EOS in ids:
        ids = ids[:ids.index(EOS) + 1]
    return " ".join(SYMBOLS[i] if 0 <= i < len(SYMBOLS) else "?" for i in ids)


def encode(words: str | list[str], length: int) -> torch.Tensor:
    """A sentence written as words (``"subjectID is descV <eos>"``) as one canonical response ``[1, length]``
    (padded with ``<eos>``).  Raises ConfigError for an unknown word or more than ``length`` words."""
    ws = words.split() if isinstance(words, str) else list(words)
    bad = [w for w in ws if w not in TOKEN]
    if bad:
        raise ConfigError(f"encode: unknown words {bad}; the tokens are {', '.join(SYMBOLS)}")
    if len(ws) > length:
        raise ConfigError(f"encode: {len(ws)} words do not fit in {length} tokens")
    out = torch.full((1, length), EOS, dtype=torch.long)
    out[0, :len(ws)] = torch.tensor([TOKEN[w] for w in ws], dtype=torch.long)
    return out


def sample_sentences(rng: np.random.Generator, n: int, max_len: int | None = None) -> list[list[int]]:
    """``n`` sentences drawn from the grammar, as token-id lists ending with ``<eos>`` (``[P]`` dropped): each
    nonterminal expanded by its rule probabilities; with ``max_len``, draws longer than ``max_len`` tokens are
    discarded and drawn again (the grammar conditioned on length), with none the grammar itself (its sentences
    have 6.9 tokens on average, module doc).  Raises ConfigError for ``max_len < 4`` (the
    shortest sentence, ``subjectID is descV <eos>``)."""
    if max_len is not None and max_len < 4:
        raise ConfigError(f"sample_sentences: max_len {max_len} < 4, the shortest sentence")
    u = Uniforms(rng)
    limit = 1 << 62 if max_len is None else max_len + 1  # + 1: the [P] symbol is not a token
    out = []
    for _ in range(n):
        syms = sample_symbols(u, limit)
        while syms is None:
            syms = sample_symbols(u, limit)
        out.append([TOKEN[s] for s in syms[1:]])
    return out


def sample_strings(rng: np.random.Generator, n: int, max_len: int) -> torch.Tensor:
    """``n`` canonical responses ``[n, max_len]`` (int64) drawn from the grammar conditioned on length
    ``<= max_len`` (:func:`sample_sentences`)."""
    out = np.full((n, max_len), EOS, dtype=np.int64)
    for i, s in enumerate(sample_sentences(rng, n, max_len)):
        out[i, :len(s)] = s
    return torch.from_numpy(out)


# --------------------------------------------------------------------------- the reward


def parse_properties(ids: tuple[int, ...]) -> tuple[int, int] | None:
    """``(predicates, depth)`` of the Viterbi parse of ``('[P]',) + ids`` (token ids, ``<eos>`` last), or
    None when it is not a sentence (no parse, an id outside the 12 tokens, or no final ``<eos>``).  Cached."""
    key = tuple(int(i) for i in ids)
    if key in _PROPS:
        return _PROPS[key]
    props = None
    if key and key[-1] == EOS and all(0 <= i <= EOS for i in key):
        symbols = ("[P]", *(SYMBOLS[i] for i in key))
        if regular_match(symbols):
            tree = next(iter(_parser().parse(list(symbols))), None)
            if tree is not None:
                n_pred = sum(1 for t in tree.subtrees(lambda t: t.label() == "VP")
                             if [c.label() for c in t] != _VP_CONJ)
                props = (n_pred, tree.height())
    if len(_PROPS) < 500_000:
        _PROPS[key] = props
    return props


def properties(y: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For responses ``y [n, L]``: whether each is a sentence (bool ``[n]``), its number of predicates and its
    parse depth (int64 ``[n]``, 0 where not a sentence), read up to the first ``<eos>`` (:func:`parse_properties`).
    Raises ConfigError unless ``y`` is a 2-d integer tensor."""
    _check_rows(y, "properties")
    rows = y.detach().cpu().tolist()
    valid = np.zeros(len(rows), dtype=bool)
    pred = np.zeros(len(rows), dtype=np.int64)
    depth = np.zeros(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        if EOS not in row:
            continue
        p = parse_properties(tuple(row[:row.index(EOS) + 1]))
        if p is not None:
            valid[i], pred[i], depth[i] = True, p[0], p[1]
    return valid, pred, depth


def reward_of(y: torch.Tensor, cfg: PCFGPreferenceConfig) -> torch.Tensor:
    """The reward of responses ``y [n, L]`` (float64 ``[n]``, on the CPU): the parse's predicates or depth, or
    ``cfg.invalid_reward`` for a string that is not a sentence (module doc)."""
    valid, pred, depth = properties(y)
    r = np.where(valid, pred if cfg.reward == "predicates" else depth, cfg.invalid_reward).astype(np.float64)
    return torch.from_numpy(r)


def response_log_prob(model: torch.nn.Module, y: torch.Tensor) -> torch.Tensor:
    """``log pi(y)`` (float64 ``[n]``, nats) of responses ``y [n, L]`` under a model of this task: the sum of
    the next-token log-softmax over the positions up to and including the first ``<eos>`` (all ``L`` positions
    in a row without one), so the tokens after it do not count.  ``y`` is canonicalised first.
    Differentiable.  Raises ConfigError unless ``y`` is a 2-d integer tensor."""
    y = canonical(y)
    logits = model(model_inputs(y))
    lp = torch.log_softmax(logits.double(), dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
    return lp.masked_fill(after_eos(y), 0.0).sum(-1)


# --------------------------------------------------------------------------- the task


@register_task
class PCFGPreferenceTask(PreferenceData, Task):
    """Preferences over the PCFG's sentences with a reward read from the parse (module doc).  Its own loss
    pretrains the reference (the parent of the preference runs); the objectives of
    :mod:`theorylab.runs.objectives` read :meth:`preference_batch`, :meth:`prompt_batch`, :meth:`reward` and
    :meth:`response_log_prob`."""

    Config = PCFGPreferenceConfig
    BOS = BOS
    _PAIR_SALTS = (0x9CF7, 0x9CF8)

    def __init__(self, cfg: PCFGPreferenceConfig, seed: int = 0):
        super().__init__(cfg, seed)
        self.cfg: PCFGPreferenceConfig = cfg
        test = sample_strings(np.random.default_rng([self.seed, 0x9CF6]), cfg.n_test, cfg.max_len)
        self.test_strings = test
        self._test = Batch(tokens=model_inputs(test), targets=test.masked_fill(after_eos(test), IGNORE))
        self._init_pairs()
        self._reference_reward: float | None = None

    # ---------------------------------------------------------------- data
    def _draw(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        """``n`` grammar sentences ``[n, L]`` (int64, canonical): the reference distribution, the grammar
        conditioned on length ``<= max_len`` (for importance sampling; there is no exact log-probability)."""
        return sample_strings(rng, n, self.cfg.max_len)

    @staticmethod
    def _inputs(y: torch.Tensor) -> torch.Tensor:
        return model_inputs(y)

    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        """``batch_size`` (default 64) fresh grammar sentences for next-token training: ``tokens`` = ``[BOS,
        y_1 .. y_{L-1}]`` and ``targets`` = ``y`` with ``IGNORE`` after the first ``<eos>`` (``[B, L]`` each)."""
        y = self._draw(step_rng(self.seed, step), batch_size or 64)
        return Batch(tokens=model_inputs(y), targets=y.masked_fill(after_eos(y), IGNORE))

    @property
    def response_length(self) -> int:
        return self.cfg.max_len

    def reward(self, y: torch.Tensor) -> torch.Tensor:
        """The reward of responses ``y [n, L]`` (float64 ``[n]``, on ``y``'s device): :func:`reward_of`.
        Raises ConfigError unless ``y`` is ``[n, max_len]`` integer."""
        _check_rows(y, "reward", self.cfg.max_len)
        return reward_of(y, self.cfg).to(y.device)

    def response_log_prob(self, model: torch.nn.Module, y: torch.Tensor) -> torch.Tensor:
        """``log pi(y)`` of responses ``y [n, L]`` (float64 ``[n]``): :func:`response_log_prob`."""
        _check_rows(y, "response_log_prob", self.cfg.max_len)
        return response_log_prob(model, y)

    def reward_model_inputs(self, y: torch.Tensor) -> torch.Tensor:
        """What a reward model reads for responses ``y [n, L]``: ``[BOS, y_1 .. y_L]`` (``[n, L + 1]`` int64,
        ``y`` canonicalised; the model of :meth:`PCFGPreferenceConfig.reward_model_defaults`).  Raises
        ConfigError unless ``y`` is ``[n, max_len]`` integer."""
        _check_rows(y, "reward_model_inputs", self.cfg.max_len)
        y = canonical(y)
        bos = torch.full((y.shape[0], 1), BOS, dtype=torch.long, device=y.device)
        return torch.cat([bos, y], dim=1)

    # ---------------------------------------------------------------- evaluation
    def eval_sets(self) -> dict[str, Batch]:
        return {"test": self._test}

    @property
    def reference_reward(self) -> float:
        """The mean reward of the held-out grammar sentences (the reference data's reward)."""
        if self._reference_reward is None:
            self._reference_reward = float(reward_of(self.test_strings, self.cfg).mean())
        return self._reference_reward

    @torch.no_grad()
    def sample_policy(self, model: torch.nn.Module, device: Any = None, n: int | None = None) -> torch.Tensor:
        """``n`` (default ``n_eval_samples``) responses ``[n, L]`` (int64, canonical, on the CPU) sampled from
        ``model`` after BOS, with a generator fixed by the run seed (``torch_generator(seed, 7)``; on another
        device a generator there with the same seed), :data:`SAMPLE_ROWS` rows at a time: the same noise at
        every evaluation."""
        from theorylab.models.decoding import generate

        dev = torch.device(device) if device is not None else next(model.parameters()).device
        n = self.cfg.n_eval_samples if n is None else n
        gen = torch_generator(self.seed, 7)
        if dev.type != "cpu":
            gen = torch.Generator(device=dev).manual_seed(int(gen.initial_seed()))
        prompts = torch.full((n, 1), BOS, dtype=torch.long, device=dev)
        out = [generate(model, prompts[i:i + SAMPLE_ROWS], self.cfg.max_len, strategy="sample", generator=gen)[:, 1:]
               for i in range(0, n, SAMPLE_ROWS)]
        return canonical(torch.cat(out, 0).cpu())

    def policy_metrics(self, y: torch.Tensor) -> dict[str, float]:
        """The metrics of responses ``y [n, L]`` (module doc; keys without the ``policy/`` prefix): ``valid``
        (the fraction that are sentences) with its Clopper-Pearson 95% interval ``valid_lo``, ``valid_hi``;
        ``reward`` (mean, invalid strings at ``invalid_reward``) with the normal-approximation 95% interval
        ``reward_lo``/``reward_hi`` = mean -/+ 1.96 sd / sqrt(n); ``length`` (mean tokens up to and including
        the first ``<eos>``; ``L`` without one)."""
        valid, _, _ = properties(y)
        r = reward_of(y, self.cfg).numpy()
        n = len(r)
        if n == 0:
            raise ConfigError("policy_metrics: no responses to measure")
        from scipy.stats import binomtest

        ci = binomtest(int(valid.sum()), n).proportion_ci(confidence_level=0.95, method="exact")  # Clopper-Pearson
        lo, hi = float(ci.low), float(ci.high)
        mean = float(r.mean())
        half = 1.96 * float(r.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
        length = (~after_eos(y)).sum(-1).double().mean()
        return {"valid": float(valid.mean()), "valid_lo": lo, "valid_hi": hi, "reward": mean,
                "reward_lo": mean - half, "reward_hi": mean + half, "length": float(length)}

    @torch.no_grad()
    def heldout_metrics(self, model: torch.nn.Module, device: Any = None, dtype: Any = None,
                        rows: int = 512) -> dict[str, float]:
        """Next-token metrics on the held-out sentences, ``rows`` at a time: ``loss`` (nats) and ``accuracy``
        averaged over every target up to and including the first ``<eos>`` (chunks weighted by their targets,
        so the numbers do not depend on ``rows``), ``seq_accuracy`` over the sentences."""
        n_tok, loss, acc, seq = 0, 0.0, 0.0, 0.0
        for i in range(0, len(self._test), rows):
            part = self._test.index(slice(i, i + rows)).to(device or "cpu", dtype)
            m = self.metrics(model, part)
            k = int((part.targets != IGNORE).sum())
            n_tok += k
            loss, acc, seq = loss + m["loss"] * k, acc + m["accuracy"] * k, seq + m["seq_accuracy"] * len(part)
        return {"loss": loss / n_tok, "accuracy": acc / n_tok, "seq_accuracy": seq / len(self._test)}

    def evaluate(self, model: torch.nn.Module, device: Any, dtype: Any, eval_bs: int) -> dict[str, float]:
        """``test/loss``, ``test/accuracy``, ``test/seq_accuracy``: next-token metrics on the held-out grammar
        sentences (nothing after the first ``<eos>``); ``policy/valid``, ``policy/reward``, ``policy/length``
        and their intervals on ``n_eval_samples`` responses sampled from the model (:meth:`sample_policy`,
        :meth:`policy_metrics`); ``policy/reference_reward``: the held-out sentences' mean reward."""
        was = model.training
        model.eval()
        try:
            dev = next(model.parameters()).device if device is None else device
            out = {f"test/{k}": v for k, v in self.heldout_metrics(model, dev, dtype, max(1, eval_bs)).items()}
            out.update({f"policy/{k}": v for k, v in self.policy_metrics(self.sample_policy(model, dev)).items()})
            out["policy/reference_reward"] = self.reference_reward
        finally:
            model.train(was)
        return out

    @torch.no_grad()
    def metrics(self, model: torch.nn.Module, batch: Batch, out: torch.Tensor | None = None) -> dict[str, float]:
        if out is None:
            out = self.forward(model, batch)
        return token_metrics(out, batch.targets)


__all__ = ["BOS", "EOS", "SYMBOLS", "PCFGPreferenceConfig", "PCFGPreferenceTask", "after_eos", "canonical",
           "decode",
           "encode", "model_inputs", "parse_properties", "properties", "response_log_prob", "reward_of",
           "sample_sentences", "sample_strings"]
