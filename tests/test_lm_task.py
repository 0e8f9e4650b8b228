"""The generated PCFG corpus: closed-form entropy against brute force, data layout, training."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.tasks.lm import DEFAULT_GRAMMAR, LMConfig, LMTask, grammar_stats, sample_sentence

TINY = {
    "S": [(0.6, ("A", "B")), (0.4, ("B",))],
    "A": [(0.5, ("x",)), (0.5, ("y", "z"))],
    "B": [(0.7, ("w",)), (0.3, ("v", "A"))],
}


def enumerate_strings(g, sym="S"):
    """All (string, probability) pairs of a non-recursive grammar, by brute force."""
    if sym not in g:
        return [((sym,), 1.0)]
    out = []
    for p, rhs in g[sym]:
        parts = [enumerate_strings(g, s) for s in rhs]
        for combo in itertools.product(*parts):
            s = tuple(t for seq, _ in combo for t in seq)
            out.append((s, p * math.prod(q for _, q in combo)))
    return out


def test_entropy_matches_brute_force():
    strings = enumerate_strings(TINY)
    probs = {}
    for s, p in strings:
        probs[s] = probs.get(s, 0.0) + p
    assert sum(probs.values()) == pytest.approx(1.0)
    assert len(probs) == len(strings)  # unambiguous: one derivation per string
    H = -sum(p * math.log(p) for p in probs.values())
    L = sum(p * len(s) for s, p in probs.items())
    st = grammar_stats(TINY)
    assert st["sentence_entropy"] == pytest.approx(H, abs=1e-12)
    assert st["expected_length"] == pytest.approx(L, abs=1e-12)
    assert st["entropy_rate"] == pytest.approx(H / (L + 1), abs=1e-12)


def test_recursive_grammar_expected_length_matches_samples():
    st = grammar_stats(DEFAULT_GRAMMAR)
    rng = np.random.default_rng(0)
    lengths = [len(sample_sentence(DEFAULT_GRAMMAR, rng)) for _ in range(4000)]
    assert np.mean(lengths) == pytest.approx(st["expected_length"], rel=0.03)
    assert 0 < st["entropy_rate"] < math.log(len(DEFAULT_GRAMMAR))  + 3


def test_sampler_follows_the_rule_probabilities():
    """A sentence's first word is a determiner drawn with the Det rule's probabilities, and the
    verbs of the training stream follow the V rule's (the sampler draws its uniforms in blocks)."""
    rng = np.random.default_rng(1)
    n = 6000
    first = [sample_sentence(DEFAULT_GRAMMAR, rng)[0] for _ in range(n)]
    for p, (word,) in DEFAULT_GRAMMAR["Det"]:
        assert first.count(word) / n == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / n))
    task = LMTask(LMConfig(seq_len=64, n_test=1), seed=0)
    words = task.decode(task.train_batch(0, 200).tokens.flatten()).split()
    verbs = {w: p for p, (w,) in DEFAULT_GRAMMAR["V"]}
    seen = [w for w in words if w in verbs]
    for w, p in verbs.items():
        assert seen.count(w) / len(seen) == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / len(seen)))


def test_bad_grammars():
    with pytest.raises(ConfigError, match="sum to 1"):
        grammar_stats({"S": [(0.5, ("a",))]})
    with pytest.raises(ConfigError, match="inconsistent"):
        grammar_stats({"S": [(0.9, ("S", "S")), (0.1, ("a",))]})


def test_windows_start_at_boundaries_and_shift():
    task = LMTask(LMConfig(seq_len=16, n_test=8), seed=0)
    b = task.train_batch(3, 5)
    assert b.tokens.shape == (5, 16) and (b.tokens[:, 0] == 0).all()
    assert (b.tokens[:, 1:] == b.targets[:, :-1]).all()
    assert task.decode(task.encode("the dog sees a cat")) == "<eos> the dog sees a cat"
    assert task.decode(task.encode("the dog", boundary=False)) == "the dog"
    with pytest.raises(ConfigError, match="unknown words"):
        task.encode("the unicorn")


def test_train_lm_reports_perplexity_beside_optimum():
    from theorylab.runs import build_run_config, train

    cfg = build_run_config("lm", ["task.seq_len=16", "task.n_test=16", "model.d_model=32", "model.n_layers=1",
                                  "train.steps=40", "train.eval_every=20", "train.batch_size=8"])
    r = train(cfg, None, progress=False)
    m = r.metrics
    opt = grammar_stats(DEFAULT_GRAMMAR)["entropy_rate"]
    assert m["test/optimal_loss"] == pytest.approx(opt)
    assert m["test/perplexity"] == pytest.approx(math.exp(m["test/loss"]))
    assert m["test/loss_bits"] == pytest.approx(m["test/loss"] / math.log(2))
    assert m["test/optimal_perplexity"] == pytest.approx(math.exp(opt))
    assert m["test/loss"] < math.log(cfg.model.d_vocab)  # learned something beyond uniform
    assert m["test/excess_loss"] > -0.05  # cannot beat the entropy rate (up to edge effects)


def test_train_and_generate_from_the_cli(store, capsys):
    import json

    from theorylab.cli import main

    args = ["train", "lm", "task.seq_len=16", "task.n_test=8", "model.d_model=16", "model.n_layers=1",
            "train.steps=5", "train.eval_every=5", "train.batch_size=4", "--json"]
    assert main(args) == 0
    run = json.loads(capsys.readouterr().out)["run_id"]
    for extra in (["--strategy", "greedy"], ["--strategy", "beam", "--num-beams", "3"],
                  ["--strategy", "sample", "--num-samples", "2", "--top-p", "0.9"]):
        assert main(["generate", run, "--prompt", "the dog", "-n", "6", "--json", *extra]) == 0
        out = json.loads(capsys.readouterr().out)
        assert len(out["texts"]) == (2 if "sample" in extra else 1)
        assert all(len(t) <= 6 for t in out["tokens"])
    # several prompts of different lengths: one left-padded batch, each row as if alone
    alone = []
    for p in ("the dog", "a big cat sees every"):
        assert main(["generate", run, "-p", p, "-n", "6", "--json"]) == 0
        alone += json.loads(capsys.readouterr().out)["tokens"]
    assert main(["generate", run, "-p", "the dog", "-p", "a big cat sees every", "-n", "6", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tokens"] == alone and out["prompts"] == ["the dog", "a big cat sees every"]
    assert main(["generate", run, "--prompt", "the unicorn"]) == 2
    assert "unknown words" in capsys.readouterr().err
    assert main(["generate", run, "--prompt", "the", "--strategy", "beam", "--num-beams", "0"]) == 2


def test_masked_objective_trains_an_encoder(store, capsys):
    from theorylab.cli import main
    from theorylab.models.objectives import IGNORE
    from theorylab.runs import build_run_config, train

    task = LMTask(LMConfig(seq_len=32, n_test=8, objective="masked"), seed=0)
    assert task.vocab[-1] == "[MASK]"
    b = task.train_batch(0, 200)
    chosen = b.targets != IGNORE
    assert chosen.float().mean().item() == pytest.approx(0.15, abs=0.01)
    assert (b.tokens[chosen] == task.ids["[MASK]"]).float().mean().item() == pytest.approx(0.8, abs=0.03)
    assert torch.equal(task.train_batch(0, 200).tokens, b.tokens)  # a pure function of (seed, step)
    cfg = build_run_config("lm", ["task.objective=masked", "task.seq_len=16", "task.n_test=16", "model.d_model=32",
                                  "model.n_layers=1", "train.steps=60", "train.eval_every=30",
                                  "train.batch_size=16"])
    assert cfg.model.architecture == "encoder" and cfg.model.d_vocab == len(task.vocab)
    r = train(cfg, store, progress=False)
    assert "test/optimal_loss" not in r.metrics
    assert r.metrics["test/loss"] < math.log(len(task.vocab)) - 0.3
    assert main(["generate", cfg.run_id(), "--prompt", "the dog"]) == 2
    assert "decoder-only" in capsys.readouterr().err
