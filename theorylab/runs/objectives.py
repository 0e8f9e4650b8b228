"""Training objectives beyond a task's own loss: fine-tuning from a parent run with preferences or rewards.

A run's ``objective`` section names what its steps minimise (``objective.name``):

* ``task`` (the default): the task's own loss.  With a ``parent`` run this is supervised fine-tuning.
* ``dpo``: Direct Preference Optimization (Rafailov et al. 2023, eq. 7) on the task's labelled pairs
  (:meth:`preference_batch`): ``-log sigmoid(beta [(log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log
  pi_ref(y_l))])``, with the conservative label smoothing ``eps`` of the authors' code
  (:func:`theorylab.models.preference.dpo_loss`).
* ``ipo``: Identity Preference Optimization (Azar et al. 2024, eq. 17): the squared distance of the same
  log-ratio margin from ``1 / (2 beta)`` (:func:`theorylab.models.preference.ipo_loss`).
* ``rlhf``: the KL-regularised policy gradient of ``E_pi[r] - beta KL(pi || pi_ref)`` (Ziegler et al. 2019;
  Stiennon et al. 2020): responses are sampled from the policy with theorylab's decoding
  (:func:`theorylab.models.decoding.generate`), each gets the shaped return ``R = r(y) - beta (log pi(y) -
  log pi_ref(y))`` and the advantage ``A = R - b`` with the leave-one-out baseline ``b`` (the mean return of
  the batch's other samples; Kool et al. 2019), and the loss is REINFORCE's ``-mean(A log pi(y))`` (Williams
  1992), an unbiased gradient of the objective.  With ``ppo_clip`` it is PPO's clipped surrogate (Schulman et
  al. 2017, eq. 7) ``-mean(min(rho A, clip(rho, 1 - eps, 1 + eps) A))``, ``rho = pi(y) / pi_old(y)``, each
  sample batch used for ``ppo_epochs`` consecutive steps.

The reference ``pi_ref`` (``objective.reference``) is the frozen parent model (``parent``, a run id: the
run's model starts from the parent's final weights), the task's exact reference (``task``: tasks that know
it, such as ``ab_strings``), or none (``none``: the reference-free variants, ``log pi_ref = 0``); ``auto``
is the parent when there is one, else the task's.  ``beta`` defaults to the task's own ``beta``.

Preference and reward objectives need a task that provides them (a ``objectives`` class attribute naming
them, and ``preference_batch``, ``prompt_batch``, ``reward``, ``reference_log_prob`` and
``response_log_prob``); they train with the single stepper.  A PPO run resumed in the middle of a block of
``ppo_epochs`` steps redraws that block's samples from the restored policy (documented; REINFORCE resumes
exactly).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch
from pydantic import Field, model_validator

from theorylab.config import Config, register_section
from theorylab.errors import ConfigError
from theorylab.models.preference import dpo_loss, ipo_loss
from theorylab.tasks import Batch, Task
from theorylab.tasks.base import torch_generator

Objective = Literal["task", "dpo", "ipo", "rlhf"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)


class ObjectiveConfig(Config):
    """What a run's steps minimise (module doc)."""

    name: Objective = Field("task", description="task (its own loss), dpo, ipo or "
                                                                          "rlhf (KL-regularised policy gradient)")
    beta: float | None = Field(None, gt=0, description="KL coefficient; none = the task's beta")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="dpo only: the assumed rate of flipped labels "
                                                                 "(conservative DPO); 0 = the original loss")
    reference: Literal["auto", "parent", "task", "none"] = Field(
        "auto", description="pi_ref: the frozen parent run, the task's exact reference, or none (reference-free); "
                            "auto = parent when given, else task")
    baseline: Literal["leave_one_out", "mean", "none"] = Field(
        "leave_one_out", description="rlhf only: the baseline subtracted from each sample's return")
    ppo_clip: float | None = Field(None, gt=0, lt=1, description="rlhf only: PPO's clip range eps; none = "
                                                                 "REINFORCE")
    ppo_epochs: int = Field(1, ge=1, description="rlhf with ppo_clip: steps each sample batch is used for")

    @model_validator(mode="after")
    def _check(self) -> ObjectiveConfig:
        if self.name != "dpo" and self.label_smoothing:
            raise ValueError("label_smoothing applies to dpo only")
        if self.name != "rlhf" and (self.ppo_clip is not None or self.ppo_epochs != 1 or
                                    self.baseline != "leave_one_out"):
            raise ValueError("baseline, ppo_clip and ppo_epochs apply to rlhf only")
        if self.ppo_epochs > 1 and self.ppo_clip is None:
            raise ValueError("ppo_epochs > 1 needs ppo_clip (REINFORCE uses each sample once)")
        return self


register_section(ObjectiveConfig, "objective")


def check_objective(objective: ObjectiveConfig, task_cls: type[Task], task_cfg: Any, parent: str | None,
                    stepper: str) -> None:
    """Refuse (one ConfigError line) an objective the task cannot serve, a missing beta or reference, or the
    stacked stepper with a preference objective."""
    if objective.name == "task":
        return
    supported = getattr(task_cls, "objectives", ())
    if objective.name not in supported:
        raise ConfigError(f"objective.name: {objective.name!r} needs a task with preference data; task "
                          f"{task_cfg.name!r} offers {', '.join(supported) or 'only its own loss (task)'}")
    if objective.beta is None and getattr(task_cfg, "beta", None) is None:
        raise ConfigError("objective.beta: required (the task has no beta of its own)")
    if objective.reference == "parent" and parent is None:
        raise ConfigError("objective.reference: 'parent' needs a parent run (parent=RUN, or --from RUN)")
    if stepper != "single":
        raise ConfigError(f"train.stepper: objective {objective.name!r} trains with the single stepper")


def reference_kind(objective: ObjectiveConfig, parent: str | None) -> str:
    """``parent``, ``task`` or ``none``: where ``pi_ref`` comes from."""
    if objective.reference == "auto":
        return "parent" if parent is not None else "task"
    return objective.reference


class ObjectiveTask(Task):
    """A task whose training loss is an alignment objective (module doc); evaluation is the inner task's."""

    def __init__(self, inner: Task, objective: ObjectiveConfig, reference: torch.nn.Module | None, kind: str):
        super().__init__(inner.cfg, inner.seed)
        self.inner, self.objective, self.reference, self.kind = inner, objective, reference, kind
        self.beta = float(objective.beta if objective.beta is not None else inner.cfg.beta)
        self._ppo: tuple[int, torch.Tensor, torch.Tensor] | None = None  # (block start, responses, old log pi)

    # ---------------------------------------------------------------- data
    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        if self.objective.name in ("dpo", "ipo"):
            return self.inner.preference_batch(step, batch_size)
        return self.inner.prompt_batch(step, batch_size)

    def eval_sets(self) -> dict[str, Batch]:
        return self.inner.eval_sets()

    def evaluate(self, model, device, dtype, eval_bs):
        return self.inner.evaluate(model, device, dtype, eval_bs)

    def metrics(self, model, batch, out=None):
        return self.inner.metrics(model, batch, out)

    # ---------------------------------------------------------------- the loss
    def _ref_log_prob(self, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return torch.zeros(y.shape[0], dtype=torch.float64, device=y.device)
        if self.kind == "task":
            return self.inner.reference_log_prob(y)
        with torch.no_grad():
            return self.inner.response_log_prob(self.reference, y)

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The objective's mean loss over the batch (float64 scalar) and the policy's log-probabilities it
        came from."""
        if self.objective.name in ("dpo", "ipo"):
            y_w, y_l = batch.targets, batch.extras["targets_l"]
            logp = self.inner.response_log_prob(model, torch.cat([y_w, y_l]))
            lw, ll = logp[: len(y_w)], logp[len(y_w):]
            ref_w, ref_l = self._ref_log_prob(y_w), self._ref_log_prob(y_l)
            if self.objective.name == "dpo":
                loss = dpo_loss(lw, ll, ref_w, ref_l, self.beta, self.objective.label_smoothing).mean()
            else:
                loss = ipo_loss(lw, ll, ref_w, ref_l, self.beta).mean()
            return loss, logp
        return self._policy_gradient(model, batch)

    def sample(self, model: torch.nn.Module, prompts: torch.Tensor, step: int) -> torch.Tensor:
        """Responses ``[B, L]`` sampled from ``model`` after ``prompts [B, P]`` with a generator derived from
        (run seed, ``step``)."""
        from theorylab.models.decoding import generate

        gen = torch_generator(self.seed, 3, step)
        if prompts.device.type != "cpu":
            gen = torch.Generator(device=prompts.device).manual_seed(int(gen.initial_seed()))
        with torch.no_grad():
            out = generate(model, prompts, self.inner.response_length, strategy="sample", generator=gen)
        return out[:, prompts.shape[1]:]

    def _policy_gradient(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        step = int(batch.extras["step"][0])
        ppo = self.objective.ppo_clip is not None
        block = step - step % self.objective.ppo_epochs
        if ppo and self._ppo is not None and self._ppo[0] == block:
            y, old = self._ppo[1], self._ppo[2]
        else:
            y = self.sample(model, batch.tokens, block if ppo else step)
            old = None
        logp = self.inner.response_log_prob(model, y)
        if old is None:
            old = logp.detach()
            if ppo:
                self._ppo = (block, y, old)
        r = self.inner.reward(y).double()
        ret = r - self.beta * (old - self._ref_log_prob(y))  # shaped return, from the sampling policy
        n = ret.numel()
        if self.objective.baseline == "leave_one_out" and n > 1:
            adv = ret - (ret.sum() - ret) / (n - 1)
        elif self.objective.baseline == "mean":
            adv = ret - ret.mean()
        else:
            adv = ret
        adv = adv.detach()
        if not ppo:
            return -(adv * logp).mean(), logp
        eps = self.objective.ppo_clip
        rho = torch.exp(logp - old)
        return -torch.minimum(rho * adv, rho.clamp(1 - eps, 1 + eps) * adv).mean(), logp


def prepare(cfg: Any, task: Task, model: torch.nn.Module, store: Any, device: torch.device, fresh: bool
            ) -> Task:
    """Give a run its parent's weights (when ``fresh``: not resumed from its own checkpoint) and wrap its
    task in its objective.  Raises ConfigError when the parent is not a finished run of the store, was made by
    other code, or has another model shape."""
    kind = reference_kind(cfg.objective, cfg.parent)
    reference = None
    if cfg.parent is not None:
        parent = load_parent(cfg, store)
        if fresh:
            model.load_state_dict(parent.state_dict())
        if cfg.objective.name != "task" and kind == "parent":
            reference = parent.to(device).eval().requires_grad_(False)
    if cfg.objective.name == "task":
        return task
    return ObjectiveTask(task, cfg.objective, reference, kind)


def load_parent(cfg: Any, store: Any) -> torch.nn.Module:
    """The parent run's final model (module doc)."""
    from theorylab.runs.config import is_stale

    if store is None:
        raise ConfigError(f"parent: run {cfg.parent} is read from a store; train with one")
    rec = store.get_run(cfg.parent) if store.db_path.exists() else None
    if rec is None:
        raise ConfigError(f"parent: run {cfg.parent} is not in the store {store.root}; train it first")
    if rec.status != "finished":
        raise ConfigError(f"parent: run {cfg.parent} is {rec.status}, not finished; finish it first")
    if is_stale(rec.config, rec.id):
        raise ConfigError(f"parent: run {cfg.parent} was made by other code than this; train it again")
    if rec.config.get("model") != cfg.model.to_dict():
        raise ConfigError(f"model: differs from parent run {cfg.parent}'s model; a fine-tuned run keeps its "
                          "parent's model (use --from, which copies it)")
    return store.load_model(rec.id)


__all__ = ["OBJECTIVES", "ObjectiveConfig", "ObjectiveTask", "check_objective", "prepare", "load_parent",
           "reference_kind"]
