"""Preference objectives: the Bradley–Terry reward-model loss, DPO (with conservative label smoothing) and IPO.

Each takes summed log-probabilities of whole responses, so it serves a tabular policy (log-softmax of a
table) and a sequence model (the sum of its token log-probabilities) alike:

* Bradley–Terry (Bradley and Terry 1952; the reward model of Christiano et al. 2017 and Ouyang et al. 2022):
  ``P(y_w > y_l) = sigmoid(r_w - r_l)``, loss ``-log sigmoid(r_w - r_l)``.
* DPO (Rafailov et al. 2023, "Direct Preference Optimization", eq. 7): with
  ``h = (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))``, the loss is
  ``-log sigmoid(beta h)``; the conservative variant with label smoothing ``eps`` (a fraction ``eps`` of
  labels assumed flipped) is ``-(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)``.
* IPO (Azar et al. 2024, "A General Theoretical Paradigm to Understand Learning from Human Preferences",
  AISTATS, eq. 17): ``(h - 1 / (2 beta))^2``.
* Reference-free variants set the reference log-probabilities to 0.

The losses are the formulas of the papers, a few lines each; TRL's ``DPOTrainer`` implements the same
losses but around Hugging Face models, tokenizers and datasets, which theorylab's tabular and synthetic
sequence problems do not have.  Every function returns the per-pair loss ``[n]`` (take ``.mean()``), in nats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from theorylab.errors import ConfigError


def _pairs(*xs: torch.Tensor) -> None:
    shapes = {tuple(x.shape) for x in xs}
    if len(shapes) != 1:
        raise ConfigError(f"preference loss: the log-probabilities must have one shape [n]; got {sorted(shapes)}")


def _beta(beta: float) -> None:
    if not (isinstance(beta, (int, float)) and beta > 0):
        raise ConfigError(f"beta: the KL coefficient must be > 0 (got {beta!r})")


def log_ratio_margin(logp_w: torch.Tensor, logp_l: torch.Tensor, ref_w: torch.Tensor | None = None,
                     ref_l: torch.Tensor | None = None) -> torch.Tensor:
    """``h = (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))``: [n] from four [n] tensors of
    summed response log-probabilities (nats); ``ref_w = ref_l = None``: reference-free (0).  Raises ConfigError
    when only one of the two references is given, or for mismatched shapes."""
    if (ref_w is None) != (ref_l is None):
        raise ConfigError("ref_w and ref_l: give both reference log-probabilities, or neither (reference-free)")
    ref_w = torch.zeros_like(logp_w) if ref_w is None else ref_w
    ref_l = torch.zeros_like(logp_l) if ref_l is None else ref_l
    _pairs(logp_w, logp_l, ref_w, ref_l)
    return (logp_w - ref_w) - (logp_l - ref_l)


def dpo_loss(logp_w: torch.Tensor, logp_l: torch.Tensor, ref_w: torch.Tensor | None, ref_l: torch.Tensor | None,
             beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """DPO's loss per pair, ``-(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)`` (Rafailov et al. 2023,
    eq. 7; ``eps = label_smoothing`` in [0, 0.5), 0 = the original).  Inputs [n] (nats); output [n] (nats).
    Raises ConfigError for beta <= 0, eps outside [0, 0.5) or mismatched shapes."""
    _beta(beta)
    if not 0 <= label_smoothing < 0.5:
        raise ConfigError(f"label_smoothing: the assumed fraction of flipped labels must lie in [0, 0.5) "
                          f"(got {label_smoothing!r})")
    z = beta * log_ratio_margin(logp_w, logp_l, ref_w, ref_l)
    return -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)


def ipo_loss(logp_w: torch.Tensor, logp_l: torch.Tensor, ref_w: torch.Tensor | None, ref_l: torch.Tensor | None,
             beta: float) -> torch.Tensor:
    """IPO's loss per pair, ``(h - 1 / (2 beta))^2`` (Azar et al. 2024, eq. 17): it regresses the log-ratio
    margin onto ``1 / (2 beta)`` instead of pushing it to infinity, so deterministic preferences keep a finite
    optimum.  Inputs [n] (nats); output [n].  Raises ConfigError for beta <= 0 or mismatched shapes."""
    _beta(beta)
    return (log_ratio_margin(logp_w, logp_l, ref_w, ref_l) - 1.0 / (2.0 * beta)) ** 2


def bradley_terry_loss(r_w: torch.Tensor, r_l: torch.Tensor) -> torch.Tensor:
    """The reward model's loss per pair, ``-log sigmoid(r_w - r_l)`` (Bradley and Terry 1952): [n] rewards of
    the preferred and the rejected response in, [n] nats out.  Raises ConfigError for mismatched shapes."""
    _pairs(r_w, r_l)
    return -F.logsigmoid(r_w - r_l)


__all__ = ["log_ratio_margin", "dpo_loss", "ipo_loss", "bradley_terry_loss"]
