"""Preferences over the concept-percolation PCFG with a reward read from the parse (task ``pcfg_preference``):
the reference sampler, the reward against hand-parsed sentences and the grammar's closed form, the model's
log-probability of a response, the preference and prompt batches, the evaluation, training through the
public API (pretraining, then RLHF from the pretrained parent) and bad configs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.models import TransformerConfig, build_model
from theorylab.runs import build_run_config, train
from theorylab.tasks import IGNORE, build_task_config, make_task
from theorylab.tasks.pcfg_preference import (
    BOS,
    EOS,
    SYMBOLS,
    PCFGPreferenceTask,
    after_eos,
    canonical,
    encode,
    model_inputs,
    properties,
    response_log_prob,
    reward_of,
    sample_sentences,
    sample_strings,
)
from theorylab.tasks.percolation import GRAMMAR, TERMINALS, parses


def _cfg(**kw):
    return build_task_config({"name": "pcfg_preference", **kw})


def _task(seed: int = 0, **kw) -> PCFGPreferenceTask:
    return make_task(_cfg(**kw), seed)


def _model(cfg, seed: int = 0, **kw):
    return build_model(TransformerConfig(**{**cfg.model_defaults(), "d_model": 16, "n_layers": 1, "n_heads": 2,
                                            "d_mlp": 32, **kw}), seed=seed)


def _words(row) -> tuple[str, ...]:
    ids = row.tolist()
    return tuple(SYMBOLS[i] for i in ids[:ids.index(EOS) + 1])


# --------------------------------------------------------------------------- tokens and the sampler


def test_the_tokens_are_the_grammars_terminals():
    assert set(SYMBOLS) == TERMINALS - {"[P]"} and SYMBOLS[EOS] == "<eos>" and BOS == 12
    assert GRAMMAR["S"] == [(("Ph", "NP", "VP", "End"), 1.0)]
    assert _cfg().model_defaults() == {"d_vocab": 13, "d_vocab_out": 12, "n_ctx": 16}
    assert _cfg(max_len=9).reward_model_defaults() == {"n_ctx": 10, "d_vocab_out": 1}


def test_every_reference_string_is_a_canonical_sentence_of_at_most_max_len_tokens():
    task = _task(max_len=9, n_test=8)
    y = task.sample_reference(2000, np.random.default_rng(1))
    assert y.shape == (2000, 9) and y.dtype == torch.int64
    assert torch.equal(canonical(y), y) and bool((y[:, -1] == EOS).all())  # canonical, so <eos> at L at least
    for row in y:
        assert parses(("[P]", *_words(row)))
    valid, _, _ = properties(y)
    assert valid.all()
    # the conditioning: every length 4..9 occurs, and none longer (the grammar has 22% longer than 8 tokens)
    lengths = (~after_eos(y)).sum(-1)
    assert int(lengths.min()) == 4 and int(lengths.max()) == 9
    # a pure function of the generator
    assert torch.equal(sample_strings(np.random.default_rng(1), 50, 9), y[:50])


def test_canonical_form_and_the_positions_after_eos():
    y = torch.tensor([[0, 4, 3, EOS, 2, 5], [0, 1, 2, 3, 4, 5], [EOS, 0, EOS, 1, 1, 1]])
    c = canonical(y)
    assert c.tolist() == [[0, 4, 3, EOS, EOS, EOS], [0, 1, 2, 3, 4, 5], [EOS] * 6]
    assert after_eos(y).tolist() == [[False] * 4 + [True] * 2, [False] * 6, [False] + [True] * 5]
    assert torch.equal(canonical(c), c)
    with pytest.raises(ConfigError, match=r"\[n, L\] integer tensor"):
        canonical(torch.zeros(3, 4))
    with pytest.raises(ConfigError, match=r"\[n, L\] integer tensor"):
        canonical(torch.zeros(4, dtype=torch.long))


def test_train_batch_and_the_held_out_set_take_no_loss_after_eos():
    task = _task(max_len=12, n_test=16)
    b = task.train_batch(3, 32)
    assert b.tokens.shape == b.targets.shape == (32, 12)
    assert bool((b.tokens[:, 0] == BOS).all())
    known = b.targets != IGNORE
    assert torch.equal(b.tokens[:, 1:][known[:, :-1]], b.targets[:, :-1][known[:, :-1]])  # reads y_1..y_{L-1}
    assert bool(((b.targets == EOS).sum(-1) == 1).all())  # the first <eos> is a target, the padding is not
    assert torch.equal(task.train_batch(3, 32).targets, b.targets) and not torch.equal(task.train_batch(4, 32).targets,
                                                                                      b.targets)
    t = task.eval_sets()["test"]
    assert len(t) == 16 and bool(((t.targets == EOS).sum(-1) == 1).all())


# --------------------------------------------------------------------------- the reward


@pytest.mark.parametrize("words,predicates,depth", [
    # S(Ph NP(Subj) VP(DescPreP DescV) End): NP has height 3, so S has height 4
    ("subjectID is descV <eos>", 1, 4),
    ("subjectID has descV <eos>", 1, 4),
    ("subjectID relV on objectID <eos>", 1, 5),  # VP(RelV RelPreP RelNP(Obj)): 4
    ("subjectID relV to objectID or objectID <eos>", 1, 6),  # RelNP(Obj Conj RelNP(Obj)): 4
    ("subjectID and subjectID is descV <eos>", 1, 5),  # NP(NP Conj NP): 4
    ("subjectID is descV and has descV <eos>", 2, 5),  # VP(VP Conj VP): 4
    ("subjectID relV on objectID and objectID or is descV <eos>", 2, 7),
    ("subjectID is descV and has descV or relV in objectID <eos>", 3, 7),
])
def test_the_reward_is_read_from_the_parse(words, predicates, depth):
    y = encode(words, 16)
    assert reward_of(y, _cfg(reward="predicates")).tolist() == [predicates]
    assert reward_of(y, _cfg(reward="depth")).tolist() == [depth]
    assert _task(n_test=4, reward="depth").reward(y).dtype == torch.float64


@pytest.mark.parametrize("words", ["subjectID is <eos>", "is descV <eos>", "<eos>",
                                   "subjectID is descV and <eos>", "objectID is descV <eos>",
                                   "subjectID relV objectID <eos>"])
def test_a_non_sentence_gets_the_invalid_reward(words):
    y = encode(words, 8)
    assert reward_of(y, _cfg()).tolist() == [-1.0]
    assert reward_of(y, _cfg(reward="depth", invalid_reward=-3.5)).tolist() == [-3.5]
    assert not properties(y)[0][0]


def test_only_the_tokens_up_to_the_first_eos_count_and_bad_ids_are_not_sentences():
    good = encode("subjectID is descV <eos>", 8)
    tail = good.clone()
    tail[0, 5:] = torch.tensor([0, 4, 3])  # after the first <eos>
    assert reward_of(tail, _cfg()).tolist() == [1.0]
    no_eos = torch.tensor([[0, 4, 3, 9, 5, 3, 10, 4]])  # a sentence's words without <eos>: not a sentence
    assert reward_of(no_eos, _cfg()).tolist() == [-1.0] and reward_of(no_eos[:, :3], _cfg()).tolist() == [-1.0]
    bad = good.clone()
    bad[0, 1] = BOS  # an input-only token inside the sentence
    assert reward_of(bad, _cfg()).tolist() == [-1.0]
    with pytest.raises(ConfigError, match="this task's are 16"):
        _task(n_test=4).reward(good)


def test_the_mean_number_of_predicates_is_the_grammars_closed_form():
    # VP -> unit 0.8 | VP Conj VP 0.2, so E[N] = 0.8 + 0.2 * 2 E[N] = 4/3 and E[N^2] = (0.8 + 0.4 E[N]^2) / 0.6,
    # sd(N) = 0.861.  At max_len 64 the conditioning discards about 2 draws in 100,000 (module doc): a bias far
    # below the sampling error.  Parsed: 2500 draws (sd of the mean 0.017; measured 1.354 at this seed);
    # the parse's count agrees with the symbols' (descV and relV each head one predicate), which then checks the
    # closed form on 100,000 draws without the parser (sd of the mean 0.0027; measured 1.3306).
    ex = 4 / 3
    sd = math.sqrt((0.8 + 0.4 * ex**2) / 0.6 - ex**2)
    y = sample_strings(np.random.default_rng(5), 2500, 64)
    valid, pred, _ = properties(y)
    assert valid.all()
    assert np.array_equal(pred, ((y == SYMBOLS.index("descV")) | (y == SYMBOLS.index("relV"))).sum(-1).numpy())
    assert pred.mean() == pytest.approx(ex, abs=4 * sd / math.sqrt(len(pred)))
    many = sample_sentences(np.random.default_rng(6), 100_000)  # the grammar itself, unconditioned
    heads = {SYMBOLS.index("descV"), SYMBOLS.index("relV")}
    counts = np.array([sum(t in heads for t in s) for s in many])
    assert counts.mean() == pytest.approx(ex, abs=4 * sd / math.sqrt(len(counts)))
    # the conditioning at the default max_len 16 is visible: fewer predicates than the grammar's (measured 1.229)
    short = properties(sample_strings(np.random.default_rng(7), 2000, 16))[1]
    assert short.mean() < ex - 0.05


# --------------------------------------------------------------------------- the model's log-probability


def test_response_log_prob_is_the_sum_up_to_the_first_eos():
    task = _task(max_len=7, n_test=4)
    model = _model(task.cfg, seed=3)
    y = torch.tensor([[0, 4, 3, EOS, EOS, EOS, EOS],
                      [0, 2, 6, 1, EOS, EOS, EOS],
                      [0, 1, 2, 3, 4, 5, 6]])  # no <eos>: every position counts
    got = task.response_log_prob(model, y)
    assert got.dtype == torch.float64 and got.shape == (3,)
    with torch.no_grad():
        for i, row in enumerate(y.tolist()):
            want = 0.0
            seq = [BOS] + row
            for t, tok in enumerate(row):
                logits = model(torch.tensor([seq[:t + 1]]))[0, -1].double()
                want += float(torch.log_softmax(logits, -1)[tok])
                if tok == EOS:
                    break
            assert float(got[i]) == pytest.approx(want, abs=1e-5)  # float32 logits, prefixes of other lengths
    # what follows the first <eos> changes nothing
    other = y.clone()
    other[0, 4:] = torch.tensor([0, 4, 9])
    other[1, 5:] = torch.tensor([2, 2])
    assert torch.allclose(task.response_log_prob(model, other)[:2], got[:2], atol=0, rtol=0)
    got.sum().backward()  # differentiable
    assert next(model.parameters()).grad is not None
    assert torch.equal(response_log_prob(model, y).detach(), got.detach())
    r = task.reward_model_inputs(other)
    assert r.shape == (3, 8) and bool((r[:, 0] == BOS).all()) and torch.equal(r[:, 1:], canonical(other))
    assert torch.equal(model_inputs(y)[:, 1:], y[:, :-1])


# --------------------------------------------------------------------------- pairs and prompts


def test_preference_batches():
    hard = _task(1, labels="hard", n_test=4)
    b = hard.preference_batch(0, 256)
    yw, yl = b.targets, b.extras["targets_l"]
    assert yw.shape == yl.shape == b.tokens.shape == b.extras["tokens_l"].shape == (256, 16)
    assert torch.equal(b.tokens, model_inputs(yw)) and torch.equal(b.extras["tokens_l"], model_inputs(yl))
    assert torch.equal(canonical(yw), yw) and torch.equal(canonical(yl), yl)  # canonical, not IGNORE-masked
    rw, rl = hard.reward(yw), hard.reward(yl)
    assert bool((rw >= rl).all()) and float((rw > rl).double().mean()) > 0.2
    bt = _task(1, labels="bt", n_test=4, max_len=20)
    b = bt.preference_batch(0, 2048)
    d = (bt.reward(b.targets) - bt.reward(b.extras["targets_l"])).numpy()
    # Bradley-Terry: pairs one predicate apart are won sigmoid(1) = 73% of the time, some against the reward
    assert (d < 0).any() and np.mean(d[np.abs(d) == 1] > 0) == pytest.approx(1 / (1 + math.e**-1), abs=0.06)
    fixed = _task(3, n_pairs=100, n_test=4)
    a, c = fixed.preference_batch(5, None), fixed.preference_batch(9, None)
    assert len(a) == 100 and torch.equal(a.targets, c.targets) and torch.equal(a.extras["targets_l"],
                                                                             c.extras["targets_l"])
    part = fixed.preference_batch(5, 10)
    assert len(part) == 10 and {tuple(r) for r in part.targets.tolist()} <= {tuple(r) for r in a.targets.tolist()}
    held = fixed.heldout_pairs(50)  # a reward model's test set: other pairs, the same layout, the same every call
    assert held.targets.shape == (50, 16) and torch.equal(held.tokens, model_inputs(held.targets))
    assert torch.equal(fixed.heldout_pairs(50).extras["targets_l"], held.extras["targets_l"])
    assert not torch.equal(held.targets, a.targets[:50])
    p = fixed.prompt_batch(7, 5)
    assert p.tokens.tolist() == [[BOS]] * 5 and p.extras["step"].tolist() == [7] * 5
    assert fixed.response_length == 16 and "reward_model" in fixed.objectives
    assert not hasattr(fixed, "reference_log_prob")  # the reference is always the pretrained parent


# --------------------------------------------------------------------------- evaluation


def test_evaluation_of_an_untrained_model():
    task = _task(2, n_test=32, n_eval_samples=200, max_len=10)
    model = _model(task.cfg)
    m = task.evaluate(model, "cpu", None, 16)
    keys = {"test/loss", "test/accuracy", "test/seq_accuracy", "policy/valid", "policy/valid_lo", "policy/valid_hi",
            "policy/reward", "policy/reward_lo", "policy/reward_hi", "policy/length", "policy/reference_reward"}
    assert keys <= set(m) and all(isinstance(v, float) for v in m.values())
    for k in ("valid", "reward"):
        assert m[f"policy/{k}_lo"] <= m[f"policy/{k}"] <= m[f"policy/{k}_hi"]
    assert 0 <= m["policy/valid_lo"] and m["policy/valid_hi"] <= 1 and 1 <= m["policy/length"] <= 10
    assert m["test/loss"] == pytest.approx(math.log(12), rel=0.2)  # about uniform over the 12 output tokens
    assert m["policy/reference_reward"] == pytest.approx(float(reward_of(task.test_strings, task.cfg).mean()))
    again = task.evaluate(model, "cpu", None, 5)  # fixed noise and exact means, whatever eval_bs
    assert again.keys() == m.keys() and all(again[k] == pytest.approx(m[k], rel=1e-6) for k in m)
    assert m["test/loss"] == pytest.approx(task.metrics(model, task.eval_sets()["test"])["loss"], rel=1e-9)
    # the validity interval is Clopper-Pearson's, as the claims layer computes it
    from theorylab.claims.statistics import clopper_pearson as claims_interval

    k = round(m["policy/valid"] * 200)
    assert (m["policy/valid_lo"], m["policy/valid_hi"]) == pytest.approx(claims_interval(k, 200), abs=1e-12)
    # the policy metrics on the reference strings themselves: all valid, the reference reward
    ref = task.policy_metrics(task.test_strings)
    assert ref["valid"] == 1.0 and ref["reward"] == pytest.approx(m["policy/reference_reward"])


def test_task_code_follows_the_device():
    from theorylab.runs.devices import audit_devices

    task = _task(n_test=8, n_eval_samples=8, max_len=8)
    audit_devices(task, _model(task.cfg))


# --------------------------------------------------------------------------- training


TINY = ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.d_mlp=64", "train.batch_size=32",
        "task.n_test=64", "task.n_eval_samples=256"]


def test_pretraining_learns_the_grammar_and_rlhf_raises_the_reward(store):
    # Measured on a CPU (seed 0): an untrained model writes a sentence 0% of the time; after 200 steps of the
    # task's own loss 0.965 (seeds 0-2: 0.965, 0.934, 0.922; 95% interval at seed 0: 0.934-0.984), about 2 s.
    # RLHF from that parent for 60 steps (reward: predicates, beta 0.5) raised the mean reward from 1.02
    # (interval 0.96-1.08) to 1.57 (1.46-1.68) with validity 0.969, in about 1.5 s.
    cfg = build_run_config("pcfg_preference", TINY + ["train.steps=200", "train.lr=3e-3", "train.eval_every=100"])
    parent = train(cfg, store, progress=False)
    assert parent.status == "finished"
    m = parent.metrics
    assert m["policy/valid"] > 0.8, m
    assert m["policy/valid_lo"] <= m["policy/valid"] <= m["policy/valid_hi"]
    assert m["policy/length"] == pytest.approx(6.9, abs=1.5)  # the data's mean length (max_len 16: about 6.4)
    child = train(build_run_config("pcfg_preference", TINY + [f"parent={parent.run_id}", "objective.name=rlhf",
                                                              "train.steps=60", "train.lr=3e-3",
                                                              "train.eval_every=60"]), store, progress=False)
    assert child.status == "finished"
    c = child.metrics
    assert c["policy/reward_lo"] > m["policy/reward_hi"], (m, c)
    assert c["policy/valid"] > 0.8
    # nothing enumerates here: the KL from the frozen parent and pi* come as Monte Carlo estimates with intervals
    # (measured: KL 0.97 [0.77, 1.17]; pi* by importance sampling from 256 parent samples, reward 1.88
    # [1.40, 2.21], KL 1.07 [0.41, 1.37], effective sample size 26 of 256)
    assert 0 < c["policy/kl_mc_lo"] <= c["policy/kl_mc"] <= c["policy/kl_mc_hi"]
    assert c["policy/optimum_reward_is_lo"] <= c["policy/optimum_reward_is"] <= c["policy/optimum_reward_is_hi"]
    assert c["policy/optimum_kl_is_lo"] <= c["policy/optimum_kl_is"] <= c["policy/optimum_kl_is_hi"]
    assert 1 <= c["policy/optimum_ess"] < 256
    assert c["policy/optimum_reward_is"] > m["policy/reward"]  # tilting towards the reward raises it


def test_the_reference_is_the_parent_since_the_task_has_no_exact_one():
    with pytest.raises(ConfigError, match="has no exact reference"):
        build_run_config("pcfg_preference", TINY + ["objective.name=dpo"])
    with pytest.raises(ConfigError, match="has no exact reference"):
        build_run_config("pcfg_preference", TINY + ["objective.name=rlhf", "objective.reference=task"])
    # reference-free needs no reference at all
    assert build_run_config("pcfg_preference", TINY + ["objective.name=ipo", "objective.reference=none"])
    # the Monte Carlo estimates need two samples or more
    with pytest.raises(ConfigError, match="task.n_eval_samples: the Monte Carlo estimates"):
        build_run_config("pcfg_preference", TINY + ["objective.name=ipo", "objective.reference=none",
                                                    "task.n_eval_samples=1"])


def test_a_reward_model_of_the_grammar_reward(store):
    # the value head learns the parse's predicate count from Bradley-Terry pairs of grammar sentences
    # (measured: 200 steps on fresh pairs: held-out order accuracy 1.0 and 0.97 at seeds 0 and 1)
    res = train(build_run_config("pcfg_preference", TINY + ["objective.name=reward_model", "train.steps=200",
                                                            "train.lr=3e-3", "train.eval_every=200"]),
                store, progress=False)
    assert res.metrics["rm/order_accuracy"] > 0.9


# --------------------------------------------------------------------------- bad configs


@pytest.mark.parametrize("kw,needle", [
    (dict(max_len=2), r"task\.max_len"), (dict(max_len=65), r"task\.max_len"), (dict(reward="length"), r"task\.reward"),
    (dict(beta=0), r"task\.beta"), (dict(labels="soft"), r"task\.labels"), (dict(n_pairs=0), r"task\.n_pairs"),
    (dict(n_eval_samples=0), r"task\.n_eval_samples"), (dict(invalid_reward=float("nan")), r"task\.invalid_reward"),
    (dict(colour="red"), r"task\.colour"),
])
def test_bad_configs_are_one_line_errors(kw, needle):
    with pytest.raises(ConfigError, match=needle) as err:
        _cfg(**kw)
    assert "\n" not in str(err.value)


def test_bad_inputs_to_the_helpers():
    with pytest.raises(ConfigError, match="unknown words"):
        encode("subjectID is blue <eos>", 8)
    with pytest.raises(ConfigError, match="do not fit"):
        encode("subjectID is descV <eos>", 3)
    with pytest.raises(ConfigError, match="shortest sentence"):
        sample_sentences(np.random.default_rng(0), 3, max_len=3)
