"""The knowledge-graph task: Erdős–Rényi ground truth, revealed subgraph, multi-hop data, evaluation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import networkx as nx
import numpy as np
import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.measures.emergence import er_giant_fraction
from theorylab.models import Transformer
from theorylab.models.config import TransformerConfig
from theorylab.tasks import build_task_config, make_task
from theorylab.tasks.base import IGNORE
from theorylab.tasks.knowledge_graph import (
    answerable_fraction,
    check_walks,
    distances,
    er_graph,
    giant_fraction,
    pairs_at_distance,
    reveal,
)


def _task(seed: int = 0, **kw):
    cfg = {"name": "knowledge_graph", "n": 32, "degree": 4, "q": 0.5, "n_test_pairs": 32, "n_eval": 64, **kw}
    return make_task(build_task_config(cfg), seed)


# --------------------------------------------------------------------------- graphs


def test_er_graph_mean_degree_and_giant_component_follow_the_theory():
    n = 4000
    g = er_graph(n, 4.0, 0)
    assert 2 * g.number_of_edges() / n == pytest.approx(4.0, abs=0.15)  # sd of the mean degree ~ sqrt(8/n) = 0.045
    # Finite size: for c > 1 the giant fraction has sd ~ sqrt(S(1-S)/n) / (1 - c(1-S)), at n = 4000 about
    # 0.021 (c = 1.5), 0.011 (c = 2), 0.005 (c = 3); the mean of 3 seeds is within 0.05 by > 4 sd.  Below 1
    # the largest component holds O(log n) nodes: ~ 16 / 4000 = 0.004 at c = 0.5.
    for c, tol in ((0.5, 0.02), (1.5, 0.05), (2.0, 0.05), (3.0, 0.05)):
        got = np.mean([giant_fraction(er_graph(n, c, seed)) for seed in range(3)])
        assert got == pytest.approx(er_giant_fraction(c), abs=tol), c


def test_er_giant_theory_solves_the_fixed_point():
    assert er_giant_fraction(0.5) == 0.0 and er_giant_fraction(1.0) == 0.0
    assert er_giant_fraction(2.0) == pytest.approx(0.7968, abs=1e-4)
    for c in (1.0001, 1.01, 1.5, 3.0, 10.0):
        s = er_giant_fraction(c)
        assert 0 < s <= 1 and s == pytest.approx(1 - math.exp(-c * s), abs=1e-12)
    assert er_giant_fraction(1.001) == pytest.approx(2 * 0.001, rel=0.01)  # S ~ 2(c - 1) just above 1
    with pytest.raises(ConfigError):
        er_giant_fraction(-1.0)


def test_reveal_is_a_nested_subgraph_with_q_of_the_edges():
    g = er_graph(200, 4.0, 1)
    m = g.number_of_edges()
    prev: set = set()
    for q in (0.1, 0.25, 0.5, 1.0):
        gq = reveal(g, q, seed=7)
        edges = {tuple(sorted(e)) for e in gq.edges()}
        assert gq.number_of_edges() == max(1, math.floor(q * m + 0.5))  # rounded half up and gq.number_of_nodes() == 200
        assert edges <= {tuple(sorted(e)) for e in g.edges()}
        assert prev <= edges  # one seed: nested in q
        prev = edges
    assert {tuple(sorted(e)) for e in reveal(g, 0.5, seed=8).edges()} != {
        tuple(sorted(e)) for e in reveal(g, 0.5, seed=7).edges()}
    with pytest.raises(ConfigError):
        reveal(g, 0.0, 0)


def test_pairs_at_distance_are_exact():
    g = er_graph(60, 3.0, 2)
    rng = np.random.default_rng(0)
    for k in (1, 2, 3, 4):
        p = pairs_at_distance(g, k, 40, rng)
        assert 0 < len(p) <= 40 and len({tuple(x) for x in p.tolist()}) == len(p)
        for s, t in p.tolist():
            assert nx.shortest_path_length(g, s, t) == k


def test_answerable_fraction_rises_through_the_threshold():
    g = er_graph(400, 4.0, 3)  # q_c = 1 / 4
    qs = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
    d = distances(g)
    fr = [answerable_fraction(g, reveal(g, q, 0), 3, dist=d) for q in qs]
    assert all(a <= b for a, b in zip(fr, fr[1:]))  # nested reveals: connectivity only grows
    assert fr[0] < 0.05 and fr[1] < 0.05  # mean revealed degree 0.2, 0.4: tiny components
    assert fr[-2] > 0.7 and fr[-1] == 1.0  # degree 3: S(3)^2 ~ 0.88
    # within a hop budget the fraction is smaller
    gq = reveal(g, 0.3, 0)
    assert answerable_fraction(g, gq, 3, max_hops=3) <= answerable_fraction(g, gq, 3, dist=d)


def test_check_walks():
    adj = np.zeros((4, 4), dtype=bool)
    for u, v in ((0, 1), (1, 2), (2, 3)):
        adj[u, v] = adj[v, u] = True
    eos, pad = 4, 6
    pairs = np.array([[0, 2]] * 6)
    comp = np.array([[0, 1, 2, eos, pad, pad],   # valid
                     [0, 1, 0, 1, 2, eos],       # a walk, 4 hops: valid within 4
                     [0, 2, eos, pad, pad, pad],  # 0-2 is no edge
                     [0, 1, 2, pad, pad, pad],   # no end token
                     [1, 2, eos, pad, pad, pad],  # wrong start
                     [0, 1, eos, pad, pad, pad]])  # wrong end
    assert check_walks(adj, pairs, comp, eos, 4).tolist() == [True, True, False, False, False, False]
    assert check_walks(adj, pairs, comp, eos, 3).tolist() == [True, False, False, False, False, False]


# --------------------------------------------------------------------------- data


def test_graph_and_test_pairs_are_shared_across_q():
    a, b = _task(q=0.2, graph_seed=5), _task(q=0.9, graph_seed=5)
    assert np.array_equal(a.adj, b.adj)
    assert all(np.array_equal(a.test_pairs[k], b.test_pairs[k]) for k in a.test_pairs)
    assert not (a.adj_q & ~b.adj_q).any()  # same (run) reveal seed: nested
    assert not np.array_equal(_task(seed=1).adj, _task(seed=0).adj)  # graph_seed none = the run seed


def test_batches_are_a_function_of_seed_and_step():
    t = _task()
    b = t.train_batch(4, 32)
    assert torch.equal(b.tokens, _task().train_batch(4, 32).tokens)
    assert torch.equal(b.targets, _task().train_batch(4, 32).targets)
    assert not torch.equal(b.tokens, t.train_batch(5, 32).tokens)
    assert not torch.equal(b.tokens, _task(seed=1, graph_seed=0, reveal_seed=0).train_batch(4, 32).tokens)
    assert t.train_batch(0, None).tokens.shape == (128, t.cfg.max_hops + 4)


def test_training_paths_are_shortest_walks_of_the_revealed_graph():
    t = _task(max_hops=6, test_hops=3)
    b = t.train_batch(0, 512)
    n = t.n_nodes
    assert b.tokens.shape == (512, 10) and (b.tokens[:, 2] == t.sep).all()
    hops = b.extras["hops"].numpy()
    assert (hops == 1).any() and (hops >= 2).any() and hops.max() <= 6
    for row, tgt, h in zip(b.tokens.numpy(), b.targets.numpy(), hops):
        s, tt = row[0], row[1]
        path = row[3:3 + h + 1]
        assert path[0] == s and path[-1] == tt and (path < n).all()
        assert t.adj_q[path[:-1], path[1:]].all()
        assert h == t.dist_q[s, tt]  # a shortest path of G_q
        if 4 + h < len(row):  # at max_hops the end token is only a target
            assert row[4 + h] == t.eos and (row[5 + h:] == t.pad).all()
        want = np.full(len(row), IGNORE)
        want[2:2 + h + 2] = [*path, t.eos]  # predicted after ':' .. after t: the copied source .. the end token
        assert np.array_equal(tgt, want)


def test_only_one_hop_facts_when_nothing_is_longer():
    t = _task(n=40, degree=2, q=0.02)  # one revealed edge
    assert t.G_q.number_of_edges() == 1 and len(t.chain_lengths) == 0
    b = t.train_batch(0, 16)
    assert (b.extras["hops"] == 1).all()


# --------------------------------------------------------------------------- evaluation


class Oracle(torch.nn.Module):
    """Stands in for a model: after 's t :' writes a shortest path (lowest-numbered next node) of G (or of G_q,
    ``revealed=True``) and the end token, or the end token at once where there is none; positions before
    the separator get a constant."""

    supports_kv_cache = False

    def __init__(self, task, revealed: bool = False):
        super().__init__()
        n = task.n_nodes
        self.t = task
        self.adj, self.dist = (task.adj_q, task.dist_q) if revealed else (task.adj, task.dist)
        self.cfg = SimpleNamespace(architecture="decoder", vocab_out=n + 1, d_vocab=n + 3, positional="none",
                                   n_ctx=task.cfg.seq_len(), position_features=False, log_length_scale=False)

    def _next(self, prefix: list[int]) -> int:
        t, n = self.t, self.t.n_nodes
        if len(prefix) < 3:
            return 0
        s, tgt, path = prefix[0], prefix[1], prefix[3:]
        if not path:
            return s
        cur = path[-1]
        if cur == tgt or cur >= n or self.dist[cur, tgt] < 0:
            return t.eos
        return int(next(u for u in np.nonzero(self.adj[cur])[0] if self.dist[u, tgt] == self.dist[cur, tgt] - 1))

    def forward(self, seq, positions=None, **_):
        n = self.t.n_nodes
        rows = seq.tolist()
        T = len(rows[0])
        idx = range(T)[positions] if isinstance(positions, slice) else range(T)
        out = torch.full((len(rows), len(idx), n + 1), -30.0)
        for r, row in enumerate(rows):
            for j, i in enumerate(idx):
                out[r, j, self._next(row[:i + 1])] = 30.0
        return out


def test_an_oracle_answers_every_test_pair_and_learns_the_whole_graph():
    t = _task(q=0.3)
    m = t.evaluate(Oracle(t), "cpu", None, 256)
    for k in range(1, t.cfg.test_hops + 1):
        assert m[f"test/hop{k}_accuracy"] == 1.0 and m[f"test/hop{k}_learned_connected"] == 1.0
    assert m["test/learned_edge_fraction"] == 1.0 and m["test/one_hop_accuracy"] == 1.0
    assert m["test/learned_giant"] == giant_fraction(t.G) == m["test/graph_giant"]
    assert m["test/learned_mean_degree"] == pytest.approx(2 * t.G.number_of_edges() / t.n_nodes)
    assert m["test/learned_hidden_fraction"] == 1.0  # the oracle knows G, not only G_q
    assert m["test/false_edge_fraction"] == 0.0


class Copier(Oracle):
    """The prompt-copying shortcut: answers every 's t :' with 's t <eos>'."""

    def _next(self, prefix: list[int]) -> int:
        return [prefix[0], prefix[1], self.t.eos][len(prefix) - 3] if len(prefix) in (3, 4, 5) else self.t.eos


def test_the_false_edge_control_exposes_a_prompt_copier():
    t = _task(q=0.3)
    m = t.evaluate(Copier(t), "cpu", None, 256)
    assert m["test/hop1_accuracy"] == 1.0 and m["test/learned_edge_fraction"] == 1.0  # right on every edge ...
    assert m["test/false_edge_fraction"] == 1.0  # ... and on every non-edge
    assert all(m[f"test/hop{k}_accuracy"] == 0.0 for k in range(2, t.cfg.test_hops + 1))
    assert len(t.non_edges) == 32 and not t.adj[t.non_edges[:, 0], t.non_edges[:, 1]].any()
    assert (t.non_edges[:, 0] != t.non_edges[:, 1]).all()


def test_an_oracle_of_the_revealed_graph_reaches_exactly_the_data_ceiling():
    t = _task(n=48, q=0.4, max_hops=5, test_hops=4)
    m = t.evaluate(Oracle(t, revealed=True), "cpu", None, 256)
    for k in range(1, 5):
        assert m[f"test/hop{k}_accuracy"] == m[f"test/hop{k}_reachable"] <= m[f"test/hop{k}_connected"]
        assert m[f"test/hop{k}_learned_connected"] == m[f"test/hop{k}_connected"]
    # hidden edges answered by a detour are valid one-hop answers, but not learned edges
    assert m["test/learned_revealed_fraction"] == 1.0 and m["test/learned_hidden_fraction"] == 0.0
    assert m["test/learned_giant"] == m["test/revealed_giant"]
    assert m["test/learned_mean_degree"] == m["test/revealed_mean_degree"] and m["test/false_edge_fraction"] == 0.0
    assert m["test/one_hop_accuracy"] > m["test/learned_edge_fraction"] == pytest.approx(0.4, abs=0.01)
    assert nx.utils.edges_equal(t.learned_graph(Oracle(t, revealed=True)).edges(), t.G_q.edges())


def test_evaluate_on_an_untrained_model():
    t = _task(q=0.4)
    cfg = TransformerConfig(**t.cfg.model_defaults(), d_model=32, n_layers=1, n_heads=2)
    model = Transformer(cfg, generator=torch.Generator().manual_seed(0))
    m = t.evaluate(model, "cpu", None, 64)
    K = t.cfg.test_hops
    per_k = [f"hop{k}_{w}" for k in range(1, K + 1) for w in ("accuracy", "connected", "reachable",
                                                                 "learned_connected")]
    fractions = per_k + ["one_hop_accuracy", "learned_edge_fraction", "learned_giant", "learned_revealed_fraction",
                         "learned_hidden_fraction", "false_edge_fraction", "revealed_giant", "graph_giant", "accuracy", "seq_accuracy"]
    assert set(m) == {f"test/{k}" for k in fractions + ["learned_mean_degree", "revealed_mean_degree",
                                                        "graph_mean_degree", "loss"]}
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.values())
    for k in fractions:
        assert 0.0 <= m[f"test/{k}"] <= 1.0, k
    assert m["test/loss"] > 0
    assert m["test/revealed_mean_degree"] == pytest.approx(2 * t.G_q.number_of_edges() / t.n_nodes)
    assert m["test/revealed_giant"] == giant_fraction(t.G_q)
    # the data's ceiling: the test pairs connected in G_q (any length; within max_hops)
    for k in range(1, K + 1):
        p = t.test_pairs[k].tolist()
        assert m[f"test/hop{k}_connected"] == pytest.approx(np.mean([nx.has_path(t.G_q, s, u) for s, u in p]))
        within = [nx.has_path(t.G_q, s, u) and nx.shortest_path_length(t.G_q, s, u) <= t.cfg.max_hops for s, u in p]
        assert m[f"test/hop{k}_reachable"] == pytest.approx(np.mean(within))
    assert "test/learned_hidden_fraction" not in _task(q=1.0).evaluate(model, "cpu", None, 64)


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("kw,field", [({"q": 0}, "q"), ({"q": 1.5}, "q"), ({"n": 1}, "n"),
                                      ({"test_hops": 5, "max_hops": 4}, "test_hops"),
                                      ({"n_ctx": 7, "max_hops": 4}, "n_ctx"), ({"degree": 40}, "degree"),
                                      ({"multi_hop_fraction": -0.1}, "multi_hop_fraction"),
                                      ({"reveal_seed": -1}, "reveal_seed")])
def test_bad_config(kw, field):
    with pytest.raises(ConfigError, match=field) as err:
        build_task_config({"name": "knowledge_graph", "n": 32, **kw})
    assert "\n" not in str(err.value)


def test_model_defaults_fit_the_examples():
    t = _task(max_hops=5, test_hops=3)
    d = t.cfg.model_defaults()
    assert d == {"d_vocab": 35, "d_vocab_out": 33, "n_ctx": 9, "pad_token_id": 34}
    assert _task(n_ctx=20).train_batch(0, 4).tokens.shape == (4, 20)
    with pytest.raises(ConfigError, match="test_hops"):
        _task(n=12, degree=1.0, test_hops=8, max_hops=8)  # no pair at distance 8 in so small a graph
