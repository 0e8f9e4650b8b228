"""Concept percolation (Lubana et al. 2025): the world's entity-property graph, the PCFG and the type checks,
the training rows, the evaluation (with oracles), the revealed-graph curve and bad configs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.measures.emergence import bipartite_critical_density
from theorylab.models import Transformer, TransformerConfig
from theorylab.tasks import build_task_config, make_task
from theorylab.tasks.base import IGNORE
from theorylab.tasks.percolation import (
    EOS,
    OUT,
    PROMPT_T0,
    T1,
    WORD_IDS,
    Uniforms,
    World,
    parses,
    pcfg,
    regular_match,
    revealed_graph_curve,
    sample_symbols,
)

SMALL = dict(n_descriptive_properties=60, n_entities=20, n_relative_properties=20, n_test=64, n_generations=32,
             n_unscramble=32)


def _cfg(**kw):
    return build_task_config({"name": "percolation", **kw})


@pytest.fixture(scope="module")
def small():
    return make_task(_cfg(**SMALL), seed=3)


def test_graph_sizes_and_density_match_the_config():
    for kw in ({}, dict(n_descriptive_properties=60, n_entities=20, n_relative_properties=20, n_descriptive_values=30,
                        prior_param=0.2)):
        cfg = _cfg(**kw)
        w = World.build(cfg, 0)
        m = cfg.admitted_per_pair()
        assert w.n_entities == cfg.n_entities_total() == 10 * (4 * cfg.n_entities // 5) + 5 * (cfg.n_entities // 5)
        assert w.n_plain == cfg.n_plain_properties() == cfg.n_descriptive_properties - 15
        assert w.edge_density == pytest.approx(m / cfg.n_descriptive_values) == pytest.approx(cfg.prior_param)
        assert w.n_value_nodes <= cfg.max_value_nodes()
        per_entity = np.bincount(w.edge_entity, minlength=w.n_entities)
        plain = (w.prop_start[1:] - w.prop_start[:-1])[w.ent_class]
        assert (per_entity == plain * m).all()
        assert w.vocab_size == cfg.model_defaults()["d_vocab"]
        # every edge is of the entity's own class, and edge_ids inverts the edge arrays
        assert (w.prop_class[w.edge_prop] == w.ent_class[w.edge_entity]).all()
        assert (w.edge_ids(w.edge_entity, w.edge_prop, w.edge_value) == np.arange(w.n_edges)).all()
    big = World.build(_cfg(), 0)  # the paper's base config: |E| = 900, |K| = 445 * 40
    assert big.n_entities == 900 and big.n_value_nodes == 17_800 and big.edge_density == pytest.approx(0.1)
    assert big.bipartite_density == pytest.approx(0.1 / 10, rel=0.01)
    assert bipartite_critical_density(900, 17_800) == pytest.approx(1 / math.sqrt(900 * 17_800))


def test_sentences_parse_and_obey_the_types(small):
    w = small.world
    sents = w.sample_sentences(np.random.default_rng(0), 200)
    grammar = pcfg()
    for s in sents:
        c = w.check(s.tokens)
        assert c.grammatical, w.decode(s.tokens)
        assert c.desc_ok == c.desc_admitted == c.n_desc == len(s.descs)
        assert c.rel_ok == c.n_rel == len(s.verbs)
        assert len(s.tokens) <= small.cfg.max_sentence_len() and s.tokens[-1] == EOS
        # the NLTK parser itself, uncached
        assert len(list(__import__("nltk").ViterbiParser(grammar).parse(list(c.symbols)))) == 1
        for e, k, v in s.descs:
            assert v in w.admitted(e, k)
    assert sum(len(s.verbs) for s in sents) > 20 and sum(len(s.descs) for s in sents) > 20
    assert small.generation_metrics([s.tokens for s in sents]) == {
        "grammar": 1.0, "type_desc": 1.0, "type_rel": 1.0, "type_all": 1.0, "desc_admitted": 1.0}


def test_corrupted_sentences_fail(small):
    w = small.world
    sents = w.sample_sentences(np.random.default_rng(1), 200)
    desc = next(s for s in sents if s.descs)
    e, k, v = desc.descs[0]
    pos = desc.tokens.index(w.value_token(k, v))
    # a value the subject does not admit (same property): grammatical, class-level type right, not admitted
    bad_v = next(x for x in range(w.n_values) if x not in w.admitted(e, k))
    toks = list(desc.tokens)
    toks[pos] = w.value_token(k, bad_v)
    c = w.check(toks)
    assert c.grammatical and c.desc_ok == c.n_desc and c.desc_admitted == c.n_desc - 1
    # a property of another class: the descriptive type constraint fails
    other = int(np.nonzero(w.prop_class != w.ent_class[e])[0][0])
    toks[pos] = w.value_token(other, 0)
    c = w.check(toks)
    assert c.grammatical and c.desc_ok == c.n_desc - 1
    # a relative verb of another class pair
    rel = next(s for s in sents if s.verbs)
    r = rel.verbs[0]
    other_r = int(np.nonzero(w.rel_group != w.rel_group[r])[0][0])
    toks = [w.REL0 + other_r if t == w.REL0 + r else t for t in rel.tokens]
    c = w.check(toks)
    assert c.grammatical and c.rel_ok < c.n_rel
    # a broken order: the end first, two words swapped, no end, a modifier with nothing to modify
    t0 = desc.tokens
    assert not w.check([EOS] + t0[:-1]).grammatical
    i = t0.index(WORD_IDS["is"]) if WORD_IDS["is"] in t0 else t0.index(WORD_IDS["has"])
    swapped = list(t0)
    swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
    assert not w.check(swapped).grammatical
    assert not w.check(t0[:-1]).grammatical
    assert not w.check(t0[:-1] + [w.ADV0, EOS]).grammatical
    assert not w.check([OUT] + t0).grammatical


def test_regular_expression_agrees_with_the_viterbi_parser():
    import nltk

    parser = nltk.ViterbiParser(pcfg())
    rng = np.random.default_rng(0)
    words = ["subjectID", "objectID", "relV", "descV", "is", "has", "on", "in", "to", "and", "or"]
    u = Uniforms(rng)
    seqs = [sample_symbols(u, 40) for _ in range(100)]
    seqs = [s for s in seqs if s is not None]
    for s in list(seqs):  # one random edit of each grammatical sequence
        t = list(s)
        j = int(rng.integers(1, len(t)))
        op = rng.integers(3)
        if op == 0:
            t[j] = words[int(rng.integers(len(words)))]
        elif op == 1:
            del t[j]
        else:
            t.insert(j, words[int(rng.integers(len(words)))])
        seqs.append(t)
    n_true = 0
    for s in seqs:
        ok = next(iter(parser.parse(list(s))), None) is not None
        assert regular_match(s) == ok == parses(s), s
        n_true += ok
    assert 100 <= n_true < len(seqs)


def test_rows_formats_and_determinism(small):
    w = small.world
    a, b = small.train_batch(5, 64), make_task(_cfg(**SMALL), seed=3).train_batch(5, 64)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.tokens[:, :8], small.train_batch(6, 64).tokens[:, :8])
    assert small.train_batch(0, None).tokens.shape[0] == small.cfg.batch
    assert a.tokens.shape[1] + 1 <= small.cfg.max_len
    # IGNORE exactly where the target would be PAD (after each row's end)
    col = torch.arange(a.tokens.shape[1])[None, :]
    assert torch.equal(a.targets == IGNORE, col >= a.extras["length"][:, None] - 1)
    assert torch.equal(a.tokens == w.PAD, col >= a.extras["length"][:, None])
    full = torch.cat([a.tokens, a.targets[:, -1:].clamp_min(0)], 1)
    tasks = a.extras["task"].tolist()
    assert {0, 1, 2} <= set(small.train_batch(7, 256).extras["task"].tolist())
    for row, length, t in zip(full.tolist(), a.extras["length"].tolist(), tasks):
        row = row[:length]
        out = row.index(OUT)
        ops, sent = row[3:out], row[out + 1:]
        assert w.check(sent).grammatical and sent[-1] == EOS
        if t == 1:  # unscramble: the target is a permutation of the operands (plus the end)
            assert row[1] == T1 and sorted(ops) == sorted(sent[:-1])
        elif t == 0:
            assert row[:5] == PROMPT_T0
        else:
            assert 1 <= len(ops) <= 4 and set(ops) <= set(sent)
    # the loss is on the whole row: every non-pad target after the first token
    assert (a.targets[:, 0] == a.tokens[:, 1]).all()
    # the instruction mixture is about [0.2, 0.4, 0.4]
    mix = np.bincount(small.examples(np.random.default_rng(0), 2000, np.random.default_rng(1)).extras["task"].numpy(),
                      minlength=3) / 2000
    assert np.allclose(mix, [0.2, 0.4, 0.4], atol=0.04)


def test_evaluate_an_untrained_model_and_oracles(small):
    cfg = small.cfg
    model = Transformer(TransformerConfig(**cfg.model_defaults(), d_model=32, n_layers=1, n_heads=2),
                        generator=torch.Generator().manual_seed(0))
    m = small.evaluate(model, "cpu", None, 256)
    keys = {"loss", "accuracy", "grammar", "type_desc", "type_rel", "type_all", "desc_admitted", "unscramble_exact",
            "unscramble_token", "reach_rank", "reach_prob", "learned_edges", "learned_giant"}
    assert set(m) == {f"test/{k}" for k in keys}
    assert m["test/loss"] == pytest.approx(math.log(cfg.model_defaults()["d_vocab_out"]), rel=0.05)
    for k in keys - {"loss"}:
        assert 0.0 <= m[f"test/{k}"] <= 1.0, k
    assert m["test/grammar"] < 0.1 and m["test/unscramble_exact"] == 0.0
    assert 0.3 < m["test/reach_rank"] < 0.7 and m["test/reach_prob"] < 0.3 and m["test/learned_edges"] < 0.3
    assert small.evaluate(model, "cpu", None, 7) == pytest.approx(m)  # chunking does not change the numbers
    # oracles: the held-out sentences unscrambled; logits that rank the admitted values first
    longest = max(len(s.tokens) for s in small.unscramble_sentences)
    truth = torch.full((cfg.n_unscramble, longest), small.world.PAD)
    for i, s in enumerate(small.unscramble_sentences):
        truth[i, :len(s.tokens)] = torch.tensor(s.tokens)
    assert small.unscramble_metrics(truth) == {"unscramble_exact": 1.0, "unscramble_token": 1.0}
    wrong = truth.clone()
    wrong[:, 0] = small.world.PAD
    assert small.unscramble_metrics(wrong)["unscramble_exact"] == 0.0
    w = small.world
    oracle = torch.zeros(len(small.probe_pairs), w.n_values)
    oracle.scatter_(1, torch.from_numpy(small.probe_admitted), 20.0)
    p = small.probe_metrics(oracle)
    assert p["reach_prob"] > 0.99 and p["learned_edges"] == 1.0
    assert p["reach_rank"] == pytest.approx((w.m - 1) / 2 / (w.n_values - 1))
    assert p["learned_giant"] == small.probe_true_giant > 0.9
    assert small.probe_metrics(-oracle)["learned_edges"] == 0.0


def test_revealed_graph_percolates():
    cfg = _cfg(**SMALL)
    curve = revealed_graph_curve(cfg, 3, steps=300, batch_size=32, every=5)
    assert (np.diff(curve.edges) >= 0).all() and (np.diff(curve.clauses) > 0).all()
    assert curve.edges[-1] <= curve.n_true_edges and curve.steps[-1] == 300
    assert curve.giant[0] < 0.2 and curve.giant[-1] > 0.9
    # the transition: the giant passes one half near the critical number of revealed edges
    at = curve.edges[np.argmax(curve.giant > 0.5)]
    assert 0.3 * curve.critical_edges < at < 10 * curve.critical_edges
    assert curve.critical_edges == pytest.approx(math.sqrt(curve.n_entities * curve.n_value_nodes))
    # the replay sees exactly the training sentences
    task = make_task(cfg, seed=3)
    n_desc = sum(int(task.train_batch(t, 32).extras["n_desc"].sum()) for t in range(4))
    assert revealed_graph_curve(cfg, 3, steps=4, batch_size=32, every=4).clauses[-1] == n_desc


@pytest.mark.parametrize("kw, match", [
    (dict(n_classes=5), "even"),
    (dict(n_descriptive_properties=20), "3 \\* n_classes"),
    (dict(n_relative_properties=4), "n_relative_properties"),
    (dict(prior_param=0.01), "admits no value"),
    (dict(n_entities=4), "n_entities"),
    (dict(instr_ratio=1.5), "instr_ratio"),
])
def test_bad_config(kw, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(**kw)
