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

* ``reward_model``: a Bradley–Terry reward model trained on the task's labelled pairs (Christiano et al. 2017;
  Stiennon et al. 2020, eq. 1): the loss ``-log sigmoid(r(y_w) - r(y_l))``, where ``r(y)`` is the model's value
  head, the unembedding with one output (``model.d_vocab_out = 1``) read at the last position of
  :meth:`reward_model_inputs` (the prompt and the whole response), as a sequence-classification head reads the
  last token.  It trains from scratch (no parent) and is evaluated on held-out pairs (``rm/...``).  An
  ``rlhf`` run names it as ``objective.reward_model`` (a run id) to optimise this learned proxy instead of the
  task's true reward; its evaluation then adds the proxy reward beside the true one (Gao et al. 2023's
  over-optimisation).

The reference ``pi_ref`` (``objective.reference``) is the frozen parent model (``parent``, a run id: the
run's model starts from the parent's final weights), the task's exact reference (``task``: tasks that know
it, such as ``ab_strings``), or none (``none``: the reference-free variants, ``log pi_ref = 0``); ``auto``
is the parent when there is one, else the task's.  ``beta`` is the task's own ``beta`` (``task.beta``, which the
task's optimum metrics use); ``objective.beta`` is for a task without one, and refused where the task has one.

Preference and reward objectives need a task that provides them (a ``objectives`` class attribute naming
them, and ``preference_batch``, ``prompt_batch``, ``reward``, ``reference_log_prob`` and
``response_log_prob``); they train with the single stepper.  A PPO run resumed in the middle of a block of
``ppo_epochs`` steps redraws that block's samples from the restored policy (documented; REINFORCE resumes
exactly).

**Evaluation.**  Tasks that enumerate their responses (``ab_strings``) report exact policy metrics; for the
others (``pcfg_preference``) :meth:`ObjectiveTask.evaluate` adds Monte Carlo estimates from
``n_eval_samples`` policy samples with 95% intervals: ``policy/kl_mc`` (``E_pi[log pi - log pi_ref]``),
``policy/proxy_reward`` with a reward model, and the optimum's reward and KL estimated by self-normalised
importance sampling from as many reference samples (``policy/optimum_reward_is``, ``policy/optimum_kl_is``,
``policy/optimum_ess``; :func:`theorylab.measures.alignment.importance_sampled_optimum`): the optimum for the
task's true reward, also when the run optimises a reward model.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import numpy as np
import torch
from pydantic import Field, model_validator

from theorylab.config import Config, register_section
from theorylab.errors import ConfigError
from theorylab.models.preference import bradley_terry_loss, dpo_loss, ipo_loss
from theorylab.tasks import Batch, Task
from theorylab.tasks.base import torch_generator

Objective = Literal["task", "dpo", "ipo", "rlhf", "reward_model"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)


class ObjectiveConfig(Config):
    """What a run's steps minimise (module doc)."""

    name: Objective = Field("task", description="task (its own loss), dpo, ipo, rlhf (KL-regularised policy "
                                                "gradient) or reward_model (a Bradley-Terry value head)")
    beta: float | None = Field(None, gt=0, description="KL coefficient, for a task without a beta of its own "
                                                       "(a task's beta is set as task.beta, which its optimum "
                                                       "metrics use)")
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
    reward_model: str | None = Field(None, description="rlhf only: a finished reward_model run of the same task "
                                                      "whose value is the reward (a learned proxy); none = the "
                                                      "task's true reward")

    @model_validator(mode="after")
    def _check(self) -> ObjectiveConfig:
        if self.name != "dpo" and self.label_smoothing:
            raise ValueError("label_smoothing applies to dpo only")
        if self.name != "rlhf" and (self.ppo_clip is not None or self.ppo_epochs != 1 or
                                    self.baseline != "leave_one_out"):
            raise ValueError("baseline, ppo_clip and ppo_epochs apply to rlhf only")
        if self.name != "rlhf" and self.reward_model is not None:
            raise ValueError("reward_model applies to rlhf only")
        if self.name == "reward_model" and (self.beta is not None or self.reference != "auto"):
            raise ValueError("beta and reference do not apply to a reward_model run")
        if self.ppo_epochs > 1 and self.ppo_clip is None:
            raise ValueError("ppo_epochs > 1 needs ppo_clip (REINFORCE uses each sample once)")
        return self


register_section(ObjectiveConfig, "objective")


def check_objective(objective: ObjectiveConfig, task_cls: type[Task], task_cfg: Any, parent: str | None,
                    stepper: str, model: Any = None) -> None:
    """Refuse (one ConfigError line) an objective the task cannot serve, a missing beta or reference, a
    reward model with a parent or without a one-output head, or the stacked stepper with a preference
    objective."""
    if objective.name == "task":
        return
    supported = getattr(task_cls, "objectives", ())
    if objective.name not in supported:
        raise ConfigError(f"objective.name: {objective.name!r} needs a task with preference data; task "
                          f"{task_cfg.name!r} offers {', '.join(supported) or 'only its own loss (task)'}")
    if stepper != "single":
        raise ConfigError(f"train.stepper: objective {objective.name!r} trains with the single stepper")
    if objective.name == "reward_model":
        if parent is not None:
            raise ConfigError("parent: a reward_model run trains its value head from scratch; drop the parent")
        if model is not None and model.vocab_out != 1:
            raise ConfigError(f"model.d_vocab_out: a reward model's value head has 1 output (got {model.vocab_out})")
        return
    if objective.reference == "task" or (objective.reference == "auto" and parent is None):
        if not hasattr(task_cls, "reference_log_prob"):
            fix = ("use the frozen parent (objective.reference=parent or auto)" if parent is not None else
                   "fine-tune from a parent run (--from RUN), whose frozen model is the reference")
            raise ConfigError(f"objective.reference: task {task_cfg.name!r} has no exact reference; {fix}, or set "
                              "none")
    if objective.beta is None and getattr(task_cfg, "beta", None) is None:
        raise ConfigError("objective.beta: required (the task has no beta of its own)")
    if objective.beta is not None and getattr(task_cfg, "beta", None) is not None:
        raise ConfigError(f"objective.beta: task {task_cfg.name!r} has its own beta, which its optimum metrics "
                          f"use; set task.beta={objective.beta:g} instead")
    if objective.reference == "parent" and parent is None:
        raise ConfigError("objective.reference: 'parent' needs a parent run (parent=RUN, or --from RUN)")
    n = getattr(task_cfg, "n_eval_samples", None)
    if n is not None and n < 2:
        raise ConfigError(f"task.n_eval_samples: the Monte Carlo estimates of a {objective.name} run need at least 2 "
                          f"samples (got {n})")


def reference_kind(objective: ObjectiveConfig, parent: str | None) -> str:
    """``parent``, ``task`` or ``none``: where ``pi_ref`` comes from."""
    if objective.reference == "auto":
        return "parent" if parent is not None else "task"
    return objective.reference


MC_ROWS = 1024  # responses sampled at a time in the Monte Carlo evaluation (fixed: the numbers do not depend on it)


def reward_value(model: torch.nn.Module, task: Task, y: torch.Tensor) -> torch.Tensor:
    """A reward model's value of responses ``y [n, L]``: its one-output head at the last position of
    ``task.reward_model_inputs(y)`` (float64 ``[n]``; module doc)."""
    x = task.reward_model_inputs(y)
    with torch.autocast(x.device.type, enabled=False):  # rewards in the model's own precision, not bf16's
        return model(x)[:, -1, 0].double()


class ObjectiveTask(Task):
    """A task whose training loss is an alignment objective (module doc); evaluation is the inner task's, with
    the additions the module doc lists."""

    def __init__(self, inner: Task, objective: ObjectiveConfig, reference: torch.nn.Module | None, kind: str,
                 reward_model: torch.nn.Module | None = None):
        super().__init__(inner.cfg, inner.seed)
        self.inner, self.objective, self.reference, self.kind = inner, objective, reference, kind
        self.reward_model = reward_model
        beta = objective.beta if objective.beta is not None else getattr(inner.cfg, "beta", None)
        self.beta = float(beta) if beta is not None else float("nan")
        self._ppo: tuple[int, torch.Tensor, torch.Tensor] | None = None  # (block start, responses, old log pi)
        self._optimum: dict[str, float] | None = None  # the importance-sampled optimum (the reference is frozen)
        self._proxy_all: torch.Tensor | None = None  # a frozen reward model's value of every response

    # ---------------------------------------------------------------- data
    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        if self.objective.name in ("dpo", "ipo", "reward_model"):
            return self.inner.preference_batch(step, batch_size)
        return self.inner.prompt_batch(step, batch_size)

    def eval_sets(self) -> dict[str, Batch]:
        if self.objective.name == "reward_model":
            return {}
        return self.inner.eval_sets()

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

    def reward(self, y: torch.Tensor) -> torch.Tensor:
        """The reward the policy gradient optimises (float64 ``[n]``): the reward model's value when the run
        names one, else the task's true reward."""
        if self.reward_model is None:
            return self.inner.reward(y).double()
        with torch.no_grad():
            return reward_value(self.reward_model, self.inner, y)

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The objective's mean loss over the batch (float64 scalar) and the policy's log-probabilities (or the
        reward model's values) it came from."""
        if self.objective.name == "reward_model":
            y_w, y_l = batch.targets, batch.extras["targets_l"]
            r = reward_value(model, self.inner, torch.cat([y_w, y_l]))
            return bradley_terry_loss(r[: len(y_w)], r[len(y_w):]).mean(), r
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

    def sample(self, model: torch.nn.Module, prompts: torch.Tensor, step: int, stream: int = 3) -> torch.Tensor:
        """Responses ``[B, L]`` sampled from ``model`` after ``prompts [B, P]`` with a generator derived from
        (run seed, ``stream``, ``step``)."""
        from theorylab.models.decoding import generate

        gen = torch_generator(self.seed, stream, step)
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
        r = self.reward(y)
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

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, model, device, dtype, eval_bs):
        """The inner task's evaluation, plus: a reward model's held-out metrics (``rm/...``) in place of the
        inner task's; the proxy reward of a policy trained on a reward model; and, where the inner task cannot
        enumerate its responses, Monte Carlo estimates with 95% intervals (module doc)."""
        if self.objective.name == "reward_model":
            return self._evaluate_reward_model(model, device, eval_bs)
        if hasattr(self.inner, "policy"):  # exact: every response enumerated
            extra = None
            if self.reward_model is not None:
                if self._proxy_all is None:  # the reward model is frozen: its value of every response, once
                    strings = self.inner.all_strings.to(device or "cpu")
                    self._proxy_all = self._values(self.reward_model, strings, eval_bs).cpu()
                extra = {"proxy_reward": self._proxy_all}
            return self.inner.evaluate(model, device, dtype, eval_bs, extra_rewards=extra)
        out = self.inner.evaluate(model, device, dtype, eval_bs) or {}
        out.update(self._monte_carlo(model, device))
        return out

    @torch.no_grad()
    def _values(self, rm: torch.nn.Module, y: torch.Tensor, rows: int) -> torch.Tensor:
        return torch.cat([reward_value(rm, self.inner, y[i:i + rows]) for i in range(0, len(y), rows)])

    @torch.no_grad()
    def _evaluate_reward_model(self, model, device, eval_bs) -> dict[str, float]:
        """``rm/loss`` (Bradley–Terry, nats) and ``rm/accuracy`` (the labelled winner scores higher) on the task's
        held-out pairs; ``rm/order_accuracy``: the same against the true reward's order, over pairs whose true
        rewards differ; ``rm/corr``: the Pearson correlation of the value with the true reward over every
        response, where the task enumerates them."""
        pairs = self.inner.heldout_pairs()
        y_w, y_l = pairs.targets.to(device or "cpu"), pairs.extras["targets_l"].to(device or "cpu")
        r_w, r_l = self._values(model, y_w, eval_bs), self._values(model, y_l, eval_bs)
        t_w, t_l = self.inner.reward(y_w).double(), self.inner.reward(y_l).double()
        differ = t_w != t_l
        order = ((r_w > r_l) == (t_w > t_l))[differ].double()
        out = {"rm/loss": float(bradley_terry_loss(r_w, r_l).mean()),
               "rm/accuracy": float((r_w > r_l).double().mean()),
               "rm/order_accuracy": float(order.mean()) if order.numel() else float("nan")}
        if hasattr(self.inner, "all_strings"):
            v = self._values(model, self.inner.all_strings.to(device or "cpu"), eval_bs).cpu()
            t = self.inner.all_rewards.double()
            out["rm/corr"] = float(torch.corrcoef(torch.stack([v, t]))[0, 1]) if v.std() > 0 else 0.0
        return out

    def _monte_carlo(self, model, device) -> dict[str, float]:
        """Monte Carlo estimates (module doc) from ``n_eval_samples`` samples of the policy and of the reference
        (fixed generators: every evaluation of a run reads the same random numbers)."""
        from theorylab.measures.alignment import importance_sampled_optimum, monte_carlo_mean

        n = int(getattr(self.inner.cfg, "n_eval_samples", 512))
        device = device or next(model.parameters()).device
        rows = MC_ROWS
        out: dict[str, float] = {}
        gaps, proxies = [], []
        with torch.no_grad():
            for k, i in enumerate(range(0, n, rows)):  # chunk k draws from its own generator (stream 11, k)
                prompts = self.inner.prompt_batch(0, min(rows, n - i)).tokens.to(device)
                y = self.sample(model, prompts, k, stream=11)
                if self.kind != "none":
                    gaps.append(self.inner.response_log_prob(model, y) - self._ref_log_prob(y))
                if self.reward_model is not None:
                    proxies.append(self.reward(y))
        if gaps:
            out["policy/kl_mc"], out["policy/kl_mc_lo"], out["policy/kl_mc_hi"] = monte_carlo_mean(
                torch.cat(gaps).cpu().numpy())
        if proxies:
            m = monte_carlo_mean(torch.cat(proxies).cpu().numpy())
            out["policy/proxy_reward"], out["policy/proxy_reward_lo"], out["policy/proxy_reward_hi"] = m
        if self._optimum is None and self.kind != "none":
            rewards = []
            with torch.no_grad():
                for k, i in enumerate(range(0, n, rows)):
                    m_k = min(rows, n - i)
                    if self.kind == "parent":
                        prompts = self.inner.prompt_batch(0, m_k).tokens.to(device)
                        ref = self.sample(self.reference, prompts, k, stream=12)
                    else:
                        ref = self.inner.sample_reference(m_k, np.random.default_rng([self.seed, 12, k])).to(device)
                    rewards.append(self.inner.reward(ref).double().cpu())
            self._optimum = importance_sampled_optimum(torch.cat(rewards).numpy(), self.beta,
                                                       seed=self.seed % 2**32)
        if self._optimum is not None:
            o = self._optimum
            out.update({"policy/optimum_reward_is": o["reward"], "policy/optimum_reward_is_lo": o["reward_lo"],
                        "policy/optimum_reward_is_hi": o["reward_hi"], "policy/optimum_kl_is": o["kl"],
                        "policy/optimum_kl_is_lo": o["kl_lo"], "policy/optimum_kl_is_hi": o["kl_hi"],
                        "policy/optimum_ess": o["ess"]})
        return out


def prepare(cfg: Any, task: Task, model: torch.nn.Module, store: Any, device: torch.device, fresh: bool
            ) -> Task:
    """Give a run its parent's weights (when ``fresh``: not resumed from its own checkpoint), its low-rank
    adapters (``cfg.lora``; every other weight frozen), and wrap its task in its objective.  Raises ConfigError when the parent (or the reward model) is not a finished run of
    the store, was made by other code, or does not fit (another model shape; a reward model of another task)."""
    kind = reference_kind(cfg.objective, cfg.parent)
    reference = None
    if cfg.parent is not None:
        parent = load_parent(cfg, store)
        if fresh and getattr(cfg, "vocabulary", "parent") == "task":
            resize_vocabulary(parent, model)
        elif fresh:
            model.load_state_dict(parent.state_dict())
        if cfg.objective.name != "task" and kind == "parent":
            reference = parent.to(device).eval().requires_grad_(False)
    lora = getattr(cfg, "lora", None)
    if lora is not None and lora.enabled:  # after the parent's weights: the adapters start at zero update
        from theorylab.models.lora import apply_lora

        apply_lora(model, lora, torch_generator(cfg.seed, 0x10A))
    if cfg.objective.name == "task":
        return task
    rm = None
    if cfg.objective.reward_model is not None:
        rm = load_reward_model(cfg, store).to(device).eval().requires_grad_(False)
    return ObjectiveTask(task, cfg.objective, reference, kind, rm)


def _finished_run(store: Any, run_id: str, field: str) -> Any:
    """The store's record of a finished run made by this code (ConfigError naming ``field`` otherwise)."""
    from theorylab.runs.config import is_stale

    if store is None:
        raise ConfigError(f"{field}: run {run_id} is read from a store; train with one")
    rec = store.get_run(run_id) if store.db_path.exists() else None
    if rec is None:
        try:
            full = store.find_run(run_id).id if store.db_path.exists() else None
        except Exception:
            full = None
        if full is not None:
            raise ConfigError(f"{field}: {run_id} is a prefix; give the full run id {full} (--from and "
                              "--reward-model resolve prefixes)")
        raise ConfigError(f"{field}: run {run_id} is not in the store {store.root}; train it first")
    if rec.status != "finished":
        raise ConfigError(f"{field}: run {run_id} is {rec.status}, not finished; finish it first")
    if is_stale(rec.config, rec.id):
        raise ConfigError(f"{field}: run {run_id} was made by other code than this; train it again")
    return rec


def load_reward_model(cfg: Any, store: Any) -> torch.nn.Module:
    """The final model of the run named by ``cfg.objective.reward_model``: a finished ``reward_model`` run of
    the same task (ConfigError otherwise)."""
    rid = cfg.objective.reward_model
    rec = _finished_run(store, rid, "objective.reward_model")
    if rec.config.get("objective", {}).get("name") != "reward_model":
        raise ConfigError(f"objective.reward_model: run {rid} is not a reward_model run")
    if rec.config.get("task", {}).get("name") != cfg.task.name:
        raise ConfigError(f"objective.reward_model: run {rid} scores task {rec.config['task'].get('name')!r}, "
                          f"not {cfg.task.name!r}")
    want = cfg.task.reward_model_defaults().get("n_ctx") if hasattr(cfg.task, "reward_model_defaults") else None
    have = rec.config.get("model", {}).get("n_ctx")
    if want is not None and have != want:
        raise ConfigError(f"objective.reward_model: run {rid} reads {have}-token inputs; this task's responses make "
                          f"{want} (a reward model of other response lengths)")
    return store.load_model(rec.id)


def _without(d: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


def resize_vocabulary(parent: torch.nn.Module, model: torch.nn.Module) -> None:
    """Copy ``parent``'s weights into ``model``, whose vocabulary may differ (``vocabulary=task``): the token
    embedding ``embed.W_E`` [d_vocab, d_model], the unembedding ``unembed.W_U`` [d_model, d_vocab_out] and
    ``unembed.b_U`` [d_vocab_out] keep the parent's rows (columns) for the ids both have and the model's own fresh
    initialisation for the rest; every other weight is the parent's.  The same as Hugging Face's
    ``resize_token_embeddings`` followed by loading the smaller model.  Raises ConfigError when any other weight's
    shape differs."""
    mine = model.state_dict()
    theirs = parent.state_dict()
    if set(mine) != set(theirs):
        raise ConfigError("vocabulary: the parent's model has other weights than this run's")
    new = {}
    for k, v in theirs.items():
        m = mine[k]
        if m.shape == v.shape:
            new[k] = v
            continue
        axis = {"embed.W_E": 0, "unembed.W_U": 1, "unembed.b_U": 0}.get(k)
        if axis is None or m.dim() != v.dim() or any(a != b for i, (a, b) in enumerate(zip(m.shape, v.shape))
                                                     if i != axis):
            raise ConfigError(f"vocabulary: weight {k} is {tuple(v.shape)} in the parent and {tuple(m.shape)} here")
        out = m.clone()
        n = min(m.shape[axis], v.shape[axis])
        out.narrow(axis, 0, n).copy_(v.narrow(axis, 0, n).to(out.dtype))
        new[k] = out
    model.load_state_dict(new)


def load_parent(cfg: Any, store: Any) -> torch.nn.Module:
    """The parent run's model: its final weights, or its checkpoint at ``cfg.parent_step`` (module doc)."""
    rec = _finished_run(store, cfg.parent, "parent")
    from theorylab.runs.config import VOCABULARY_FIELDS

    vocab = VOCABULARY_FIELDS if getattr(cfg, "vocabulary", "parent") == "task" else ()
    if _without(rec.config.get("model") or {}, vocab) != _without(cfg.model.to_dict(), vocab):
        raise ConfigError(f"model: differs from parent run {cfg.parent}'s model; a fine-tuned run keeps its "
                          "parent's model (theorylab train --from copies it; elsewhere give the parent's model "
                          "section)")
    step = getattr(cfg, "parent_step", None)
    if step is not None:
        have = [s for s, _ in store.checkpoints(rec.id)]
        if step not in have:
            raise ConfigError(f"parent_step: run {rec.id} has no checkpoint at step {step} (it keeps steps "
                              f"{', '.join(map(str, have)) or 'none'}; train it with train.keep_checkpoints=all and "
                              "train.checkpoint_every to keep more)")
    return store.load_model(rec.id, step)


__all__ = ["OBJECTIVES", "ObjectiveConfig", "ObjectiveTask", "check_objective", "prepare", "load_parent",
           "load_reward_model", "reference_kind", "reward_value"]
