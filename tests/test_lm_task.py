"""The generated PCFG corpus: closed-form entropy against brute force, data layout, training."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.tasks.lm import (
    DEFAULT_GRAMMAR,
    EOS,
    LMConfig,
    LMTask,
    PrefixParser,
    grammar_stats,
    left_recursion,
    sample_sentence,
    window_optimum,
    window_optimum_exact,
)

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
    assert m["test/window_optimal_loss"] == pytest.approx(window_optimum_exact(DEFAULT_GRAMMAR, 16), abs=0.003)
    assert m["test/window_optimal_loss_se"] < 0.003


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


# ------------------------------------------------------------------ exact window floor (PrefixParser)

# ambiguous ("a b" has two derivations), with empty rules, a nullable first symbol and an empty sentence
AMBIGUOUS = {
    "S": [(0.5, ("A", "B")), (0.3, ("a", "B")), (0.2, ())],
    "A": [(0.6, ("a",)), (0.4, ())],
    "B": [(0.5, ("b",)), (0.5, ("a", "b"))],
}


@pytest.mark.parametrize("g", [TINY, AMBIGUOUS], ids=["tiny", "ambiguous"])
def test_prefix_conditionals_match_brute_force(g):
    """(a) every prefix of every sentence of a finite grammar: the parser's next-word law equals
    P_prefix(w a) / P_prefix(w) and P(sentence = w) / P_prefix(w), by summing sentence probabilities."""
    probs: dict[tuple, float] = {}
    for s, p in enumerate_strings(g):
        probs[s] = probs.get(s, 0.0) + p  # several derivations of one string add up

    def p_prefix(w):
        return sum(p for s, p in probs.items() if s[: len(w)] == w)

    parser = PrefixParser(g)
    words = sorted({t for s in probs for t in s})
    prefixes = {s[:k] for s in probs for k in range(len(s) + 1)}
    assert len(prefixes) > 5
    for w in prefixes:
        states, lp = parser.initial(), 0.0
        for t in w:
            states, q = parser.advance(states, t)
            lp += math.log(q)
        assert lp == pytest.approx(math.log(p_prefix(w)), abs=1e-12)
        assert parser.prefix_log_prob(w) == pytest.approx(lp, abs=1e-12)
        dist = parser.next_distribution(states)
        assert sum(dist.values()) == pytest.approx(1.0, abs=1e-12)
        for a in words:
            assert dist.get(a, 0.0) == pytest.approx(p_prefix((*w, a)) / p_prefix(w), abs=1e-12)
        assert dist.get(EOS, 0.0) == pytest.approx(probs.get(w, 0.0) / p_prefix(w), abs=1e-12)
    # impossible continuations
    assert parser.advance(parser.initial(), "nonsense") == ({}, 0.0)
    assert parser.sentence_log_prob(("nonsense",)) == -math.inf


def derive(g, rng, sym="S"):
    """A sentence and the log-probability of its derivation, by recursive sampling."""
    if sym not in g:
        return [sym], 0.0
    probs = [p for p, _ in g[sym]]
    i = rng.choice(len(probs), p=probs)
    words, lp = [], math.log(probs[i])
    for s in g[sym][i][1]:
        w, q = derive(g, rng, s)
        words += w
        lp += q
    return words, lp


def test_conditionals_telescope_to_the_derivation_probability():
    """(b) the default grammar is unambiguous: over a complete sentence (its <eos> included) the sum of
    -log P(word | prefix) is -log P(derivation); a stream of sentences adds up sentence by sentence."""
    rng = np.random.default_rng(7)
    parser = PrefixParser(DEFAULT_GRAMMAR)
    stream, total = [EOS], 0.0
    lengths = []
    for _ in range(300):
        words, lp = derive(DEFAULT_GRAMMAR, rng)
        lengths.append(len(words))
        cond = parser.window_log_probs([EOS, *words, EOS])  # the interned, cached path
        assert cond.sum() == pytest.approx(lp, abs=1e-9)
        assert parser.sentence_log_prob(words) == pytest.approx(lp, abs=1e-9)  # the plain path
        assert (cond <= 1e-12).all()  # log-probabilities (<eos> after an adverb is certain: 0)
        stream += [*words, EOS]
        total += lp
    assert max(lengths) >= 10  # some nested prepositional phrases among them
    assert parser.window_log_probs(stream).sum() == pytest.approx(total, rel=1e-10)
    with pytest.raises(ConfigError, match="start with <eos>"):
        parser.window_log_probs(["the", "dog"])
    with pytest.raises(ConfigError, match="impossible"):
        parser.window_log_probs([EOS, "the", "the"])


def test_window_floor_tends_to_the_entropy_rate():
    """(c) the exact floor is H + C / T (C = 0.224 nats for the default grammar, so above the rate);
    the Monte Carlo estimate agrees with it and, for long windows, with the rate within a few SE."""
    H = grammar_stats(DEFAULT_GRAMMAR)["entropy_rate"]
    parser = PrefixParser(DEFAULT_GRAMMAR)
    exact = {T: window_optimum_exact(DEFAULT_GRAMMAR, T, parser=parser) for T in (16, 64, 512, 4096)}
    assert exact[4096] == pytest.approx(H, abs=1e-4)  # the parser reproduces the closed-form rate
    for T in (64, 512, 4096):
        assert T * (exact[T] - H) == pytest.approx(0.2238, abs=1e-3)
    assert exact[16] > exact[64] > exact[512] > H
    for T, n in ((64, 2000), (512, 300)):
        m, se = window_optimum(DEFAULT_GRAMMAR, T, n, np.random.default_rng([1, T]), parser=parser)
        assert 0 < se < 0.003
        assert abs(m - exact[T]) < 4 * se
        if T == 512:
            assert abs(m - H) < 4 * se
    assert exact[64] - H == pytest.approx(0.0035, abs=1e-4)  # the 64-token floor lies above H


def test_left_recursion_is_refused():
    """(d) direct, through a nullable symbol and through a unit cycle; the task still samples such a
    grammar and reports the rate, but not the window floor."""
    direct = {"S": [(0.5, ("S", "a")), (0.5, ("b",))]}
    hidden = {"S": [(1.0, ("A", "x"))], "A": [(0.5, ("E", "A", "y")), (0.5, ("z",))],
              "E": [(0.5, ()), (0.5, ("e",))]}
    unit = {"S": [(1.0, ("A",))], "A": [(0.5, ("B",)), (0.5, ("a",))], "B": [(0.5, ("A",)), (0.5, ("b",))]}
    assert left_recursion(DEFAULT_GRAMMAR) is None and left_recursion(AMBIGUOUS) is None
    assert left_recursion(direct) == ["S", "S"]
    assert left_recursion(hidden) == ["A", "A"]
    assert left_recursion(unit) in (["A", "B", "A"], ["B", "A", "B"])
    for g, name in ((direct, "'S'"), (hidden, "'A'"), (unit, "'A'")):
        with pytest.raises(ConfigError, match=f"{name} is left-recursive"):
            PrefixParser(g)
        with pytest.raises(ConfigError, match="left-recursive"):
            window_optimum(g, 8, 4, np.random.default_rng(0))
    task = LMTask(LMConfig(seq_len=8, n_test=4, grammar={a: [[p, list(r)] for p, r in rules]
                                                         for a, rules in direct.items()}))
    with pytest.raises(ConfigError, match="left-recursive"):
        _ = task.window_optimal_loss
    m = task.metrics(lambda tokens: torch.zeros(*tokens.shape, len(task.vocab)), task.test_set)
    assert "optimal_loss" in m and "window_optimal_loss" not in m


def test_optimal_logits_attain_the_window_floor():
    """(e) the Bayes predictor's cross-entropy on the task's test windows matches the window floor within
    a few SE, and beats other predictors: a bigram table fit on training windows, a blend with uniform."""
    task = LMTask(LMConfig(seq_len=64, n_test=256), seed=0)
    b = task.test_set
    logits = task.optimal_logits(b)
    assert logits.shape == (256, 64, len(task.vocab)) and logits.dtype == torch.float64
    assert torch.allclose(logits.exp().sum(-1), torch.ones(256, 64, dtype=torch.float64))
    assert torch.equal(task.optimal_logits(b.tokens), logits)
    nll = -logits.gather(-1, b.targets.unsqueeze(-1)).squeeze(-1)  # [B, T]
    per_window = nll.mean(1)
    ce, se_test = float(per_window.mean()), float(per_window.std() / math.sqrt(len(per_window)))
    floor, se = task.window_optimal_loss, task.window_optimal_loss_se
    assert se < 0.003
    assert abs(ce - floor) < 4 * math.hypot(se, se_test)
    assert floor == pytest.approx(window_optimum_exact(task.grammar, 64), abs=4 * se)
    assert floor > task.stats["entropy_rate"]
    # the metrics of a "model" that is the Bayes predictor
    m = task.metrics(lambda tokens: task.optimal_logits(tokens), b)
    assert m["loss"] == pytest.approx(ce, abs=1e-9)
    assert m["window_optimal_loss"] == floor and m["window_optimal_loss_se"] == se
    assert m["optimal_loss"] == task.stats["entropy_rate"]
    # other predictors do worse
    train = task.train_batch(0, 2000)
    counts = torch.ones(len(task.vocab), len(task.vocab), dtype=torch.float64)
    counts.index_put_((train.tokens.flatten(), train.targets.flatten()),
                      torch.ones(train.tokens.numel(), dtype=torch.float64), accumulate=True)
    bigram = (counts / counts.sum(1, keepdim=True)).log()[b.tokens]
    bigram_ce = float(torch.nn.functional.cross_entropy(bigram.flatten(0, 1), b.targets.flatten()))
    blend = torch.logsumexp(torch.stack([logits + math.log(0.9), torch.full_like(logits, math.log(0.1 / 20))]), 0)
    blend_ce = float(torch.nn.functional.cross_entropy(blend.flatten(0, 1), b.targets.flatten()))
    assert ce < blend_ce < math.log(len(task.vocab)) and ce + 0.1 < bigram_ce
    # bad inputs
    with pytest.raises(ConfigError, match="must lie in"):
        task.optimal_logits(b.tokens + 100)
    with pytest.raises(ConfigError, match="start with <eos>"):
        task.optimal_logits(b.tokens[:, 1:])
    masked = LMTask(LMConfig(seq_len=16, n_test=4, objective="masked"))
    with pytest.raises(ConfigError, match="causal objective only"):
        masked.optimal_logits(masked.test_set)
    with pytest.raises(ConfigError, match="causal objective only"):
        masked.window_optimum()
