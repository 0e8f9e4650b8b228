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
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from theorylab.errors import ConfigError

STORED = ("birth_date", "birth_city", "university", "major", "employer")  # the company city follows the employer


def pool_sizes(cfg: Any) -> dict[str, int]:
    """``K_a`` of each attribute in :data:`STORED` for a :class:`~theorylab.tasks.bios.BiosConfig`."""
    return {"birth_date": cfg.n_years * 12 * 28, "birth_city": cfg.n_cities, "university": cfg.n_universities,
            "major": cfg.n_majors, "employer": cfg.n_employers}


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


__all__ = ["STORED", "bits_per_parameter", "bits_stored", "pool_sizes", "value_cross_entropy"]
