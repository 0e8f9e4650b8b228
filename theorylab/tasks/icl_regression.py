"""In-context linear regression (Garg, Tsipras, Liang & Valiant 2022, section 3).

Each prompt draws ``w ~ N(0, I_d)`` and ``n_points`` inputs ``x_i ~ N(0, I_d)``, with
``y_i = w . x_i + noise_std * eps_i``.  The prompt is the interleaved sequence
``x_1, y_1, x_2, y_2, ...`` of ``2 n_points`` continuous vectors of width ``d + 1``: an
``x`` position holds ``(x, 0)`` and a ``y`` position ``(0, ..., 0, y)`` (Garg et al. put
``y`` in the first coordinate and tell the two apart by position; the separate last
coordinate is our choice).  The model reads them through ``embed.W_in``
(``input_dim = d + 1``) and writes one scalar per position (``d_vocab_out = 1``); the
prediction of ``y_k`` is read at the position of ``x_k``, so it sees the ``k`` earlier
pairs.  The loss is the squared error divided by ``d``, averaged over all ``k``, as in
Garg et al.  Fresh prompts every step; a fixed test set of ``n_test`` prompts.  With
``curriculum`` the training prompts follow Garg et al.'s curriculum (section 4): they start with
``curriculum_d`` active dimensions (the others zero) and ``curriculum_points`` pairs and grow by one
dimension and two pairs every ``curriculum_every`` steps; the test set is always the full size.

``format="paired"`` (our option, for CPU budgets): one position per example holding
``(x_i, y_i, 0)``, and a final query position ``(x_k, 0, 1)``; ``input_dim = d + 2``.  Each
training step draws one ``k`` (uniform in ``0 .. n_points - 1``) for the whole batch and
takes the loss at the query only; evaluation runs one forward pass per ``k``.  A causal
model cannot be asked every ``y_k`` in one pass here (position ``k`` would see ``y_k``),
which is why Garg et al. interleave; in our pilots (d = 5, CPU, a few thousand steps) the
interleaved format stayed on the predict-zero plateau while the paired one learned.

Evaluation metrics (``test/...``): ``loss`` (against the noisy ``y``); ``err_k{k}`` the
error against the noiseless ``w . x`` with ``k`` in-context examples, and the same for the
least-squares baseline (``ls_err_k{k}``); ``err_past_d`` and ``ls_err_past_d``, the mean
over ``k >= d + 2`` (from there least squares has finite expected error on noisy data).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from theorylab.errors import ConfigError
from theorylab.tasks import register_task
from theorylab.tasks.base import Batch, Task, TaskConfig, step_rng


class IclRegressionConfig(TaskConfig):
    name: Literal["icl_regression"] = "icl_regression"
    d: int = Field(5, gt=0, le=64, description="input dimension")
    n_points: int = Field(16, gt=1, le=256, description="(x, y) pairs per prompt")
    noise_std: float = Field(0.0, ge=0, description="label noise; 0 = noiseless as in Garg et al.")
    n_test: int = Field(512, gt=0, description="prompts in the test split")
    format: Literal["interleaved", "paired"] = Field(
        "interleaved", description="interleaved: x and y positions (Garg et al.); paired: one (x, y) per position "
                                   "and a single query, k examples drawn per step")
    curriculum: bool = Field(False, description="Garg et al.'s curriculum: training prompts start with "
                                                "curriculum_d active dimensions and curriculum_points pairs and grow")
    curriculum_d: int = Field(5, gt=0, description="active dimensions at step 0 (Garg et al.: 5)")
    curriculum_points: int = Field(11, gt=1, description="pairs per prompt at step 0 (Garg et al.: 11)")
    curriculum_every: int = Field(2000, gt=0, description="steps between increments of +1 dimension and +2 pairs "
                                                          "(Garg et al.: 2,000)")

    def data_numbers(self) -> int:
        # the test prompts: inputs [2 n, d + 2], targets and mask, xs [n, d], ys, clean, w [d]
        return self.n_test * (self.n_points * (3 * self.d + 10) + self.d)

    def model_defaults(self) -> dict[str, Any]:
        if self.format == "paired":
            return {"input_dim": self.d + 2, "d_vocab_out": 1, "n_ctx": self.n_points, "d_vocab": None}
        return {"input_dim": self.d + 1, "d_vocab_out": 1, "n_ctx": 2 * self.n_points, "d_vocab": None}


def sample_prompts(n: int, d: int, n_points: int, noise_std: float, rng: np.random.Generator):
    """xs [n, n_points, d], noisy ys [n, n_points], noiseless f(x) [n, n_points], w [n, d] (float32)."""
    w = rng.standard_normal((n, d))
    xs = rng.standard_normal((n, n_points, d))
    clean = np.einsum("bnd,bd->bn", xs, w)
    ys = clean + noise_std * rng.standard_normal(clean.shape)
    f = lambda a: torch.from_numpy(a).float()  # noqa: E731
    return f(xs), f(ys), f(clean), f(w)


def interleave(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """[B, 2n, d + 1]: x positions (x, 0), y positions (0, y)."""
    B, n, d = xs.shape
    seq = torch.zeros(B, 2 * n, d + 1, dtype=xs.dtype)
    seq[:, 0::2, :d] = xs
    seq[:, 1::2, d] = ys
    return seq


def paired_inputs(xs: torch.Tensor, ys: torch.Tensor, k: int) -> torch.Tensor:
    """[B, k + 1, d + 2]: positions i < k hold (x_i, y_i, 0), the last holds the query (x_k, 0, 1)."""
    B, _, d = xs.shape
    seq = torch.zeros(B, k + 1, d + 2, dtype=xs.dtype)
    seq[:, :, :d] = xs[:, :k + 1]
    seq[:, :k, d] = ys[:, :k]
    seq[:, k, d + 1] = 1.0
    return seq


@register_task
class IclRegressionTask(Task):
    """Linear functions learned in context from (x, w.x) examples."""

    Config = IclRegressionConfig
    cfg: IclRegressionConfig

    def __init__(self, cfg: IclRegressionConfig, seed: int = 0):
        super().__init__(cfg, seed)
        self.test_set = self._sample(cfg.n_test, np.random.default_rng([self.seed, 0x1C1]))

    def _sample(self, n: int, rng: np.random.Generator, n_points: int | None = None) -> Batch:
        c = self.cfg
        n_points = n_points or c.n_points
        xs, ys, clean, w = sample_prompts(n, c.d, n_points, c.noise_std, rng)
        if c.format == "paired":  # inputs are built per number of examples (see paired_inputs)
            return Batch(inputs=paired_inputs(xs, ys, xs.shape[1] - 1), extras={"xs": xs, "ys": ys, "clean": clean,
                                                                                  "w": w})
        targets = torch.zeros(n, 2 * n_points)
        targets[:, 0::2] = ys
        mask = torch.zeros(n, 2 * n_points, dtype=torch.bool)
        mask[:, 0::2] = True
        return Batch(inputs=interleave(xs, ys), targets=targets, mask=mask,
                     extras={"xs": xs, "ys": ys, "clean": clean, "w": w})

    def curriculum_at(self, step: int) -> tuple[int, int]:
        """(active dimensions, pairs per prompt) of the training prompts at ``step``: the full ``(d, n_points)``
        without the curriculum; with it, Garg et al.'s schedule (section 4: dimensions +1 and pairs +2 every
        ``curriculum_every`` steps, from ``curriculum_d`` and ``curriculum_points``, capped at the full size)."""
        c = self.cfg
        if not c.curriculum:
            return c.d, c.n_points
        k = step // c.curriculum_every
        return min(c.d, c.curriculum_d + k), min(c.n_points, c.curriculum_points + 2 * k)

    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        rng = step_rng(self.seed, step)
        d_eff, n_eff = self.curriculum_at(step)
        if self.cfg.format == "paired":  # k examples and a query; k uniform in 0..n_eff-1 for the step
            b = self._sample(batch_size or 64, rng, n_points=int(rng.integers(1, n_eff + 1)))
        else:
            b = self._sample(batch_size or 64, rng, n_points=n_eff)
        if d_eff < self.cfg.d:  # inactive dimensions are zero in every x (so w . x uses the active ones)
            b = self._mask_dims(b, d_eff)
        return b

    def _mask_dims(self, b: Batch, d_eff: int) -> Batch:
        c = self.cfg
        xs = b.extras["xs"].clone()
        xs[..., d_eff:] = 0
        clean = torch.einsum("bnd,bd->bn", xs, b.extras["w"])
        ys = b.extras["ys"] - b.extras["clean"] + clean  # the same noise on the new clean values
        extras = {**b.extras, "xs": xs, "ys": ys, "clean": clean}
        if c.format == "paired":
            return Batch(inputs=paired_inputs(xs, ys, xs.shape[1] - 1), extras=extras)
        targets = torch.zeros_like(b.targets)
        targets[:, 0::2] = ys
        return Batch(inputs=interleave(xs, ys), targets=targets, mask=b.mask, extras=extras)

    def eval_sets(self) -> dict[str, Batch]:
        return {"test": self.test_set}

    def predictions(self, model, batch: Batch) -> torch.Tensor:
        """[B, n_points]: the model's prediction of each y_k from the k earlier pairs."""
        if self.cfg.format == "paired":
            xs, ys = batch.extras["xs"], batch.extras["ys"]
            return torch.stack([model(paired_inputs(xs, ys, k).to(xs))[:, -1, 0] for k in range(xs.shape[1])], 1)
        return model(batch.inputs)[:, 0::2, 0]

    def loss(self, model, batch: Batch):
        if self.cfg.format == "paired":  # the query of the last pair, from all earlier ones
            pred = model(batch.inputs)[:, -1, 0]
            return (pred - batch.extras["ys"][:, -1]).pow(2).mean() / self.cfg.d, pred
        pred = self.predictions(model, batch)
        return (pred - batch.extras["ys"]).pow(2).mean() / self.cfg.d, pred

    @torch.no_grad()
    def metrics(self, model, batch: Batch, out=None) -> dict[str, float]:
        d = self.cfg.d
        pred = self.predictions(model, batch).double()
        ys, clean = batch.extras["ys"].double(), batch.extras["clean"].double()
        err = error_by_k(pred, clean, d)
        ls = error_by_k(least_squares(batch.extras["xs"], batch.extras["ys"]), clean, d)
        m = {"loss": float((pred - ys).pow(2).mean() / d)}
        for k in range(len(err)):
            m[f"err_k{k}"] = float(err[k])
            m[f"ls_err_k{k}"] = float(ls[k])
        if len(err) > d + 2:
            m["err_past_d"] = float(err[d + 2:].mean())
            m["ls_err_past_d"] = float(ls[d + 2:].mean())
        return m


# --------------------------------------------------------------------------- reference estimators
# Baselines for in-context linear regression (Garg et al. 2022, section 3 and Fig. 2): every function
# takes prompts xs [B, n, d] and ys [B, n] and returns predictions [B, n], entry k predicting y_k from
# the k earlier pairs only (k = 0: no examples, every estimator predicts 0); float64.


METHODS = ("least_squares", "ridge", "knn", "averaging")


def _check(xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if xs.dim() != 3 or ys.dim() != 2 or xs.shape[:2] != ys.shape:
        raise ConfigError(f"xs must be [B, n, d] and ys [B, n] (got {tuple(xs.shape)} and {tuple(ys.shape)})")
    return xs.double(), ys.double()


def least_squares(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    xs, ys = _check(xs, ys)
    B, n, _ = xs.shape
    out = torch.zeros(B, n, dtype=torch.float64, device=xs.device)
    for k in range(1, n):
        w = torch.linalg.pinv(xs[:, :k]) @ ys[:, :k, None]  # [B, d, 1]
        out[:, k] = (xs[:, k:k + 1] @ w)[:, 0, 0]
    return out


def ridge(xs: torch.Tensor, ys: torch.Tensor, lam: float = 0.1) -> torch.Tensor:
    if not lam > 0:
        raise ConfigError(f"lam must be > 0 (got {lam})")
    xs, ys = _check(xs, ys)
    B, n, d = xs.shape
    out = torch.zeros(B, n, dtype=torch.float64, device=xs.device)
    eye = torch.eye(d, dtype=torch.float64, device=xs.device)
    for k in range(1, n):
        X, y = xs[:, :k], ys[:, :k, None]
        w = torch.linalg.solve(X.transpose(1, 2) @ X + lam * eye, X.transpose(1, 2) @ y)
        out[:, k] = (xs[:, k:k + 1] @ w)[:, 0, 0]
    return out


def knn(xs: torch.Tensor, ys: torch.Tensor, n_neighbors: int = 3) -> torch.Tensor:
    if n_neighbors < 1:
        raise ConfigError(f"n_neighbors must be >= 1 (got {n_neighbors})")
    xs, ys = _check(xs, ys)
    B, n, _ = xs.shape
    out = torch.zeros(B, n, dtype=torch.float64, device=xs.device)
    for k in range(1, n):
        dist = (xs[:, :k] - xs[:, k:k + 1]).pow(2).sum(-1)  # [B, k]
        idx = dist.topk(min(n_neighbors, k), largest=False).indices
        out[:, k] = ys[:, :k].gather(1, idx).mean(1)
    return out


def averaging(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    xs, ys = _check(xs, ys)
    cs = (xs * ys[..., None]).cumsum(1)  # [B, n, d]: sum of y_i x_i up to i
    out = torch.zeros(ys.shape, dtype=torch.float64, device=xs.device)
    k = torch.arange(1, xs.shape[1], dtype=torch.float64, device=xs.device)
    w = cs[:, :-1] / k[None, :, None]
    out[:, 1:] = (w * xs[:, 1:]).sum(-1)
    return out


def predict(method: str, xs: torch.Tensor, ys: torch.Tensor, **kw) -> torch.Tensor:
    fns = {"least_squares": least_squares, "ridge": ridge, "knn": knn, "averaging": averaging}
    if method not in fns:
        raise ConfigError(f"method must be one of {', '.join(METHODS)} (got {method!r})")
    return fns[method](xs, ys, **kw)


def error_by_k(pred: torch.Tensor, target: torch.Tensor, d: int) -> torch.Tensor:
    """[n]: mean over prompts of (pred - target)^2 / d, per number k of in-context examples."""
    if pred.shape != target.shape or pred.dim() != 2:
        raise ConfigError(f"pred and target must both be [B, n] (got {tuple(pred.shape)}, {tuple(target.shape)})")
    return (pred.double() - target.double()).pow(2).mean(0) / d


def baseline_errors(xs: torch.Tensor, ys: torch.Tensor, target: torch.Tensor | None = None, *,
                    lam: float = 0.1, n_neighbors: int = 3) -> dict[str, torch.Tensor]:
    """Error curves ``[n]`` of every baseline against ``target`` (default: ``ys``)."""
    d = xs.shape[-1]
    target = ys if target is None else target
    kw = {"ridge": {"lam": lam}, "knn": {"n_neighbors": n_neighbors}}
    return {m: error_by_k(predict(m, xs, ys, **kw.get(m, {})), target, d) for m in METHODS}
