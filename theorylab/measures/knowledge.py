"""Knowledge stored in a model trained on synthetic biographies (task ``bios``), in bits.

Allen-Zhu & Li, "Physics of Language Models: Part 3.3, Knowledge Capacity Scaling Laws" (arXiv 2404.05405)
measure how many bits of the biographies' random facts a model holds and find about 2 bits per parameter after
1,000 exposures per person (about 1 after 100).  Their bit-complexity bound also credits partial knowledge of
the names; ours, stated here (SETUPS §5.3), counts the attributes only:

    bits = sum over attributes a of  N * (log2 K_a - CE_a),

where ``K_a`` is the size of attribute a's pool (a birth date: ``n_years * 12 * 28``), ``CE_a`` the model's
cross-entropy in bits on a's value tokens (a date's month, day and year) inside a person's biography,
teacher-forced, so given the name and the text before the value, averaged over people, and ``N`` the number
of people.  A model that knows every value exactly stores ``N * attribute_bits`` (46.59 bits a person at the
paper's pools); one that guesses uniformly within each pool stores 0; a model worse than uniform gives a
negative term (kept: it is what the cross-entropy says).  The company city is left out: it follows from the
employer, so it carries no bits of its own.  With a fixed attribute order (no ``permute``) the sum is, by the
chain rule, the information about all attributes jointly given the name.

**Where the knowledge sits** (Part 3.1, §5): linear probes on the final residual stream (after the final layer
norm), trained on the ``p_train`` half of the people and scored on the ``p_test`` half, predict each attribute's
first value token (the month of a birth date; the city, university, major, employer, company city).

* P-probing (:func:`p_probe`): inside the person's first biography, at the token just before each attribute's
  value (where the model must already hold the value to write it).  Allen-Zhu & Li find that without
  augmentation an attribute becomes decodable only there, and with it already at the name.
* Q-probing (:func:`q_probe`): from the name alone (``<bos> first middle last``), at its last token: what a
  question about the person can read.  Every biography opens with the full name, so in a causal model this is
  also the P-probe at the name.  Their Q-probes also train a rank-16 update of the embeddings; ours are linear
  only.

A probe is multinomial logistic regression with a small ridge, fitted by scipy's L-BFGS on standardised
features (:func:`linear_probe_accuracy`).

**Chance levels.**  A claim compares an accuracy with what an answer that knows nobody reaches:
:func:`guess_accuracy` for retrieval questions, :func:`verdict_guess` for the yes/no manipulation questions of
Part 3.2 (arXiv 2309.14402 §4) and :func:`probe_chance` for the probes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from theorylab.errors import ConfigError
from theorylab.tasks.bios import pool_sizes

STORED = ("birth_date", "birth_city", "university", "major", "employer")  # pool_sizes' keys: no company city


@torch.no_grad()
def value_cross_entropy(model: torch.nn.Module, task: Any, people=None, bio: int = 0, rows: int = 256,
                        device: Any = None) -> dict[str, np.ndarray]:
    """The model's cross-entropy in bits on each attribute's value tokens inside biography ``bio`` of each of
    ``people`` (default: everyone), teacher-forced: ``{attribute: [n_people]}`` for every attribute of
    :data:`theorylab.tasks.bios.ATTRIBUTES`.  Raises ConfigError for a task that is not ``bios``."""
    from theorylab.tasks.bios import ATTRIBUTES, BiosTask

    if not isinstance(task, BiosTask):
        raise ConfigError(f"knowledge measures read a bios task (got {type(task).__name__})")
    p = np.arange(len(task.world)) if people is None else np.asarray(people, dtype=np.int64)
    if p.ndim != 1 or not len(p):
        raise ConfigError("people: give one or more people to measure")
    out = {a: np.zeros(len(p)) for a in ATTRIBUTES}
    for i in range(0, len(p), rows):
        part = task.bio_rows(p[i:i + rows], np.full(len(p[i:i + rows]), bio), tags=True).to(device or "cpu")
        lp = torch.log_softmax(task.forward(model, part).double(), -1)
        tgt = part.targets
        nll = -lp.gather(-1, tgt.clamp_min(0).unsqueeze(-1)).squeeze(-1) / math.log(2)
        tag = part.extras["value_attr"]
        for k, a in enumerate(ATTRIBUTES):
            out[a][i:i + rows] = (nll * (tag == k)).sum(-1).cpu().numpy()
    return out


def bits_stored(model: torch.nn.Module, task: Any, people=None, bio: int = 0, rows: int = 256,
                device: Any = None) -> dict[str, float]:
    """Bits of the attributes the model stores (module doc): ``bits`` (total), ``bits/<attribute>``, ``bound``
    (``N * attribute_bits``, all of them), ``fraction`` (bits / bound) and ``n_measured``.  With a subset of
    ``people`` the cross-entropies are their mean and ``N`` is still everyone: an estimate for the whole world.
    Raises ConfigError for a task that is not ``bios``."""
    ce = value_cross_entropy(model, task, people, bio, rows, device)
    n = len(task.world)
    out: dict[str, float] = {}
    total = bound = 0.0
    for a, k in pool_sizes(task.cfg).items():
        b = n * (math.log2(k) - float(ce[a].mean()))
        out[f"bits/{a}"] = b
        total += b
        bound += n * math.log2(k)
    out.update({"bits": total, "bound": bound, "fraction": total / bound, "n_measured": float(len(ce[STORED[0]]))})
    return out


def bits_per_parameter(bits: float, model: torch.nn.Module, non_embedding: bool = False) -> float:
    """``bits`` over the model's parameter count (all of them, as Allen-Zhu & Li count; or without the
    embeddings)."""
    n = model.num_params(non_embedding) if hasattr(model, "num_params") else sum(p.numel() for p in
                                                                                 model.parameters())
    return bits / n


def linear_probe_accuracy(x_train, y_train, x_test, y_test, l2: float = 1e-3) -> float:
    """Test accuracy of a multinomial logistic-regression probe ``softmax(x W + b)`` fitted to ``x_train [n, d]``
    and labels ``y_train [n]`` (ints) by L-BFGS (scipy) with the ridge ``l2 |W|^2 / 2`` on the mean loss;
    features are standardised with the training set's mean and deviation.  Raises ConfigError for empty or
    mismatched inputs."""
    from scipy.optimize import minimize

    xa, xb = np.asarray(x_train, dtype=np.float64), np.asarray(x_test, dtype=np.float64)
    ya, yb = np.asarray(y_train, dtype=np.int64).ravel(), np.asarray(y_test, dtype=np.int64).ravel()
    if xa.ndim != 2 or xb.ndim != 2 or xa.shape[1] != xb.shape[1] or len(xa) != len(ya) or len(xb) != len(yb) \
            or not len(xa) or not len(xb):
        raise ConfigError("linear_probe_accuracy: expected features [n, d] with n labels for train and test")
    mu, sd = xa.mean(0), xa.std(0) + 1e-8
    xa, xb = (xa - mu) / sd, (xb - mu) / sd
    k = int(max(ya.max(), yb.max())) + 1
    n, d = xa.shape
    onehot = np.eye(k)[ya]

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W, b = theta[: d * k].reshape(d, k), theta[d * k:]
        z = xa @ W + b
        z -= z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        loss = -(onehot * logp).sum() / n + 0.5 * l2 * (W ** 2).sum()
        g = (np.exp(logp) - onehot) / n
        return loss, np.concatenate([(xa.T @ g + l2 * W).ravel(), g.sum(0)])

    res = minimize(f, np.zeros(d * k + k), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    W, b = res.x[: d * k].reshape(d, k), res.x[d * k:]
    return float(((xb @ W + b).argmax(1) == yb).mean())


PROBED = {"birth_date": "month", "birth_city": "birth_city", "university": "university", "major": "major",
          "employer": "employer", "company_city": "company_city"}  # the World array of each first value token


@torch.no_grad()
def _final_residual(model: torch.nn.Module, tokens: torch.Tensor, at: torch.Tensor, rows: int) -> np.ndarray:
    """The final residual stream ``[n, d_model]`` (after the final norm) at position ``at[i]`` of row ``i``, in
    eval mode, on the model's device."""
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    was = model.training
    model.eval()
    try:
        out = []
        for i in range(0, len(tokens), rows):
            h = model(tokens[i:i + rows].to(device), return_residual=True)
            out.append(h[torch.arange(len(h), device=h.device), at[i:i + rows].to(h.device)].double().cpu().numpy())
    finally:
        model.train(was)
    return np.concatenate(out)


def _probe(task: Any, features_of, l2: float) -> dict[str, float]:
    """Per attribute of :data:`PROBED`, the probe's test accuracy; ``features_of(people, k)`` gives the
    ``[n, d]`` features of ``people`` for attribute ``k`` (a probe trains on ``p_train``, scores on ``p_test``)."""
    w = task.world
    out: dict[str, float] = {}
    for k, (a, arr) in enumerate(PROBED.items()):
        labels = getattr(w, arr)
        out[a] = linear_probe_accuracy(features_of(w.p_train, k), labels[w.p_train], features_of(w.p_test, k),
                                       labels[w.p_test], l2)
    out["mean"] = float(np.mean([out[a] for a in PROBED]))
    return out


def p_probe(model: torch.nn.Module, task: Any, rows: int = 256, l2: float = 1e-3) -> dict[str, float]:
    """P-probing (module doc): test accuracy of a linear probe at the token just before each attribute's first
    value token in each person's first biography, per attribute of :data:`PROBED` and their ``mean``.  Raises
    ConfigError for a task that is not ``bios``."""
    _check_bios(task)

    def features(people: np.ndarray, attribute: int) -> np.ndarray:
        b = task.bio_rows(people, np.zeros(len(people), dtype=np.int64), tags=True)
        # the input position whose target is the attribute's first value token
        at = (b.extras["value_attr"] == attribute).int().argmax(1)
        return _final_residual(model, b.tokens, at, rows)

    return _probe(task, features, l2)


def q_probe(model: torch.nn.Module, task: Any, rows: int = 256, l2: float = 1e-3) -> dict[str, float]:
    """Q-probing (module doc): test accuracy of a linear probe at the last token of ``<bos> first middle last``,
    per attribute of :data:`PROBED` and their ``mean``.  Raises ConfigError for a task that is not ``bios``."""
    _check_bios(task)

    def at_name(people: np.ndarray) -> np.ndarray:
        v = task.values(people)[:, :3]
        tokens = torch.from_numpy(np.concatenate([np.full((len(people), 1), task.vocab.bos), v], 1))
        return _final_residual(model, tokens, torch.full((len(people),), 3), rows)

    w = task.world
    train, test = at_name(w.p_train), at_name(w.p_test)  # one read per split: the name serves every attribute

    def features(people: np.ndarray, attribute: int) -> np.ndarray:
        return train if people is w.p_train else test

    return _probe(task, features, l2)


def _check_bios(task: Any) -> None:
    from theorylab.tasks.bios import BiosTask

    if not isinstance(task, BiosTask):
        raise ConfigError(f"knowledge measures read a bios task (got {type(task).__name__})")


__all__ = ["PROBED", "STORED", "VERDICT_KINDS", "bits_per_parameter", "bits_stored", "capacity_ratio",
           "guess_accuracy", "linear_probe_accuracy", "p_probe", "pool_sizes", "probe_chance", "q_probe",
           "value_cross_entropy", "verdict_guess"]


# --------------------------------------------------------------------------- baselines and capacity


def _answers(world: Any, attribute: str, people: np.ndarray) -> np.ndarray:
    """``[R]`` int64: a code of each person's answer to the retrieval question about ``attribute`` (a birth
    date's year, month and day together)."""
    if attribute == "birth_date":
        return (world.year[people] * 12 + world.month[people]) * 28 + world.day[people]
    return np.asarray(getattr(world, attribute))[people]


def guess_accuracy(task: Any, split: str = "qa_test") -> float:
    """The retrieval accuracy of the best answer that knows nobody: for each attribute the most common answer
    among the ``p_train`` people (what a model learns from the questions alone), scored like
    ``<split>/accuracy`` (every attribute of each evaluated person of ``split``, equally weighted).  The chance
    level a claim about extraction compares with: at pools of K values about 1/K per attribute, a little more
    in a small world (the training half's mode is also the held-out half's more often than 1/K).
    Raises ConfigError for a task that is not ``bios`` or an unknown split."""
    from theorylab.tasks.bios import ATTRIBUTES

    _check_bios(task)
    if split not in task.eval_people or split == "bio":
        raise ConfigError(f"split: {split!r}; allowed: qa_train, qa_test")
    w = task.world
    people = task.eval_people[split]
    hits = []
    for a in ATTRIBUTES:
        train = _answers(w, a, w.p_train)
        values, counts = np.unique(train, return_counts=True)
        hits.append(_answers(w, a, people) == values[np.argmax(counts)])
    return float(np.mean(hits))


def probe_chance(task: Any) -> dict[str, float]:
    """The accuracy a probe that reads nothing reaches (Part 3.1 §5's probes, :func:`p_probe` and
    :func:`q_probe`): per attribute of :data:`PROBED`, the ``p_train`` people's most common label (the first
    value token: a birth date's month, a city, ...) scored on the ``p_test`` people, as the probes are trained and
    scored; and ``mean`` over the attributes (the chance level of a probe's ``mean``).  About 1/pool per
    attribute (1/12 for the month), more for the company city, whose values follow the employers' cities.
    Raises ConfigError for a task that is not ``bios``."""
    _check_bios(task)
    w = task.world
    out: dict[str, float] = {}
    for a, arr in PROBED.items():
        labels = np.asarray(getattr(w, arr))
        values, counts = np.unique(labels[w.p_train], return_counts=True)
        out[a] = float(np.mean(labels[w.p_test] == values[np.argmax(counts)]))
    out["mean"] = float(np.mean([out[a] for a in PROBED]))
    return out


VERDICT_KINDS = ("classify", "classify_cot", "compare", "compare_cot")


def verdict_guess(task: Any, kind: str, split: str = "qa_test") -> float:
    """The accuracy of the best yes/no answer that knows nobody on the ``kind`` questions (Part 3.2 §4: "is
    A's birth month even?", "was A born in an earlier month than B?"; a ``_cot`` kind's verdict alone): the
    verdict the trained questions give most often, scored on the fixed evaluation questions of ``split`` (the
    chance level of ``<split>/classify``, ``<split>/compare`` and the ``_final`` keys).  The trained questions
    are those of stage ``qa``: a uniform ``p_train`` person and, for a comparison, a uniform ``p_train`` person
    born in another month, so their share of "yes" is exact: the even-month share of ``p_train`` for
    classification, and the mean over ``p_train`` people A of the share of A's partners born later for comparison.
    A share of exactly one half scores 0.5 (either answer is as good).  About 0.5 either way: six months of
    twelve are even, and a pair is as often earlier as later.  Raises ConfigError for a task that is not
    ``bios``, an unknown split, a kind that is not a yes/no question, or a kind the task does not evaluate."""
    _check_bios(task)
    if kind not in VERDICT_KINDS:
        raise ConfigError(f"kind: {kind!r}; allowed: {', '.join(VERDICT_KINDS)}")
    if split not in ("qa_train", "qa_test"):
        raise ConfigError(f"split: {split!r}; allowed: qa_train, qa_test")
    key = f"{split}/{kind}"
    if key not in task.eval_sets():
        raise ConfigError(f"kind: {kind!r} is not among the task's qa_kinds ({', '.join(task.cfg.qa_kinds)})")
    month = np.asarray(task.world.month)
    trained = month[task.world.p_train]
    if kind.startswith("classify"):
        yes_share = float(np.mean((trained + 1) % 2 == 0))  # January (0) is month 1: odd
    else:
        later = (trained[None, :] > trained[:, None]).sum(1)
        other = (trained[None, :] != trained[:, None]).sum(1)
        yes_share = float(np.mean(later[other > 0] / other[other > 0]))
    b = task.eval_sets()[key]
    verdict = b.targets[b.extras["answer_part"] == 1].numpy()  # one verdict token per question
    yes = verdict == task.vocab.index["yes"]
    if yes_share == 0.5:
        return 0.5
    return float(np.mean(yes if yes_share > 0.5 else ~yes))


def capacity_ratio(bits: np.ndarray, params: np.ndarray, near: float = 0.8) -> dict[str, float]:
    """The knowledge capacity ratio of one sweep: the most bits stored per parameter.

    Allen-Zhu & Li, Part 3.3 (arXiv 2404.05405), Result 1: across data sizes N and model sizes P trained with
    enough exposures, the bits a model stores never exceed about 2 P; models too small for their data sit on
    that line, larger ones store all N * 46.59 bits and lie below it.  ``bits`` ``[M]`` and ``params`` ``[M]`` are
    the sweep's points (one per (N, model)).  ``ratio`` is the largest bits/P; ``slope`` the least-squares line
    through the origin (bits = slope * P) of the points at capacity, those whose ratio is within ``near`` of the
    largest (a model far from full says nothing about the capacity).  A claim repeats the sweep per seed and
    reports the interval over seeds.  Returns ``{"ratio", "slope", "n_points", "n_at_capacity"}``.
    Raises ConfigError for no points, mismatched lengths, a non-positive parameter count or non-finite bits."""
    b = np.asarray(bits, dtype=np.float64).reshape(-1)
    p = np.asarray(params, dtype=np.float64).reshape(-1)
    if len(b) != len(p) or len(b) < 1:
        raise ConfigError(f"capacity_ratio: needs >= 1 point of (bits, params) of equal length (got {len(b)}, "
                          f"{len(p)})")
    if not np.all(p > 0) or not np.all(np.isfinite(b)):
        raise ConfigError("capacity_ratio: parameter counts must be positive and bits finite")
    r = b / p
    top = float(r.max())
    at = r >= near * top if top > 0 else r == top
    slope = float((b[at] * p[at]).sum() / (p[at] ** 2).sum())
    return {"ratio": top, "slope": slope, "n_points": float(len(b)), "n_at_capacity": float(at.sum())}
