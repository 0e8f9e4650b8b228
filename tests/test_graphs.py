"""Graph path-finding tasks (ALPINE): generator, closure, sampler, split, labels, encoding."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from theorylab.errors import ConfigError, TheoryLabError
from theorylab.tasks import build_task_config, make_task
from theorylab.tasks.base import IGNORE
from theorylab.tasks.graphs import (
    bfs_distances,
    blocksworld_graph,
    blocksworld_states,
    observed_matrices,
    pair_degrees,
    random_dag,
    sample_paths,
    split_pairs,
    transitive_closure,
)


def brute_reach(adj: np.ndarray) -> np.ndarray:
    """reach[u, v] by depth-first search from every node."""
    n = adj.shape[0]
    out = np.zeros((n, n), dtype=bool)
    for u in range(n):
        stack = list(np.nonzero(adj[u])[0])
        while stack:
            v = stack.pop()
            if not out[u, v]:
                out[u, v] = True
                stack.extend(np.nonzero(adj[v])[0])
    return out


def brute_degree(adj, obs_reach, s, t) -> int:
    """Fewest edges from s to a node k with obs_reach[t, k], capped at 3."""
    targets = set(np.nonzero(obs_reach[t])[0])
    frontier, seen = {s}, {s}
    for d in range(3):
        if frontier & targets:
            return d
        nxt = set()
        for u in frontier:
            nxt |= set(np.nonzero(adj[u])[0])
        frontier = nxt - seen
        seen |= frontier
    return 3


def small_task(**kw):
    cfg = {"name": "alpine", "n": 24, "p": 0.15, "paths_per_pair": 4, **kw}
    return make_task(build_task_config(cfg), 0)


# --------------------------------------------------------------------------- generator and closure


def test_dag_is_acyclic_and_upper_triangular():
    rng = np.random.default_rng(0)
    adj = random_dag(60, 0.2, rng)
    assert not np.tril(adj).any()  # only i -> j with i < j, hence acyclic
    assert not (transitive_closure(adj) & np.eye(60, dtype=bool)).any()  # no node reaches itself


def test_dag_edge_density_matches_p():
    rng = np.random.default_rng(1)
    n, p = 200, 0.1
    adj = random_dag(n, p, rng)
    m = n * (n - 1) // 2
    frac = adj.sum() / m
    assert abs(frac - p) < 4 * np.sqrt(p * (1 - p) / m)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transitive_closure_matches_dfs(seed):
    rng = np.random.default_rng(seed)
    dag = random_dag(30, 0.1, rng)
    assert np.array_equal(transitive_closure(dag), brute_reach(dag))
    cyclic = rng.random((20, 20)) < 0.08  # arbitrary digraph with cycles and self loops
    assert np.array_equal(transitive_closure(cyclic), brute_reach(cyclic))


def test_bfs_distances():
    adj = np.zeros((4, 4), dtype=bool)
    adj[0, 1] = adj[1, 2] = adj[0, 2] = adj[2, 3] = True
    d = bfs_distances(adj)
    assert d[0, 3] == 2 and d[0, 2] == 1 and d[1, 3] == 2 and d[3, 0] == -1 and d[2, 2] == 0


# --------------------------------------------------------------------------- paths


def test_every_sampled_path_is_valid_and_reaches_target():
    rng = np.random.default_rng(3)
    adj = random_dag(40, 0.12, rng)
    reach = transitive_closure(adj)
    train, test = split_pairs(adj, reach, 0.5, rng)
    pairs = np.concatenate([train, test])
    paths = sample_paths(adj, reach, np.repeat(pairs, 3, 0), rng)
    assert len(paths) == 3 * len(pairs)
    for (s, t), p in zip(np.repeat(pairs, 3, 0), paths):
        assert p[0] == s and p[-1] == t
        assert adj[p[:-1], p[1:]].all()
        assert len(set(p.tolist())) == len(p)


def test_sampler_uses_every_viable_successor():
    # s=0 -> {1, 2, 3} -> 4; node 3 cannot reach 4, so only 1 and 2 may follow 0
    adj = np.zeros((5, 5), dtype=bool)
    adj[0, [1, 2, 3]] = True
    adj[1, 4] = adj[2, 4] = True
    reach = transitive_closure(adj)
    paths = sample_paths(adj, reach, np.array([[0, 4]] * 400), np.random.default_rng(0))
    second = np.array([p[1] for p in paths])
    assert set(second.tolist()) == {1, 2}
    assert 150 < (second == 1).sum() < 250  # uniform over the two


def test_shortest_rule_on_blocksworld():
    adj, states = blocksworld_graph(3)
    dist = bfs_distances(adj)
    reach = transitive_closure(adj)
    pairs = np.array([(s, t) for s in range(len(states)) for t in range(len(states)) if s != t])
    paths = sample_paths(adj, reach, pairs, np.random.default_rng(0), rule="shortest", dist=dist)
    for (s, t), p in zip(pairs, paths):
        assert p[0] == s and p[-1] == t and adj[p[:-1], p[1:]].all()
        assert len(p) - 1 == dist[s, t]


def test_blocksworld_state_graph():
    assert len(blocksworld_states(4)) == 73  # sum of Lah numbers 24 + 36 + 12 + 1
    assert len(blocksworld_states(3)) == 13
    adj, states = blocksworld_graph(4)
    assert np.array_equal(adj, adj.T)  # every move can be undone
    assert not adj.diagonal().any()
    assert transitive_closure(adj).all()  # every state reaches every other
    # all blocks on the table: any block can go onto any other, 4 * 3 moves
    flat = states.index(((0,), (1,), (2,), (3,)))
    assert adj[flat].sum() == 12


# --------------------------------------------------------------------------- split and labels


def test_split_rules():
    rng = np.random.default_rng(4)
    adj = random_dag(50, 0.1, rng)
    reach = transitive_closure(adj)
    train, test = split_pairs(adj, reach, 0.5, rng)
    tr, te = set(map(tuple, train.tolist())), set(map(tuple, test.tolist()))
    allp = {(s, t) for s, t in zip(*np.nonzero(reach)) if s != t}
    assert not tr & te and tr | te == allp
    assert {(s, t) for s, t in zip(*np.nonzero(adj))} <= tr  # every edge trains
    indirect = allp - {(s, t) for s, t in zip(*np.nonzero(adj))}
    frac = len(indirect & tr) / len(indirect)
    assert 0.4 < frac < 0.6


def test_observed_matrices_and_degrees_against_brute_force():
    task = small_task(train_fraction=0.3)
    n = task.n_nodes
    obs_adj = np.zeros((n, n), dtype=bool)
    obs_reach = np.zeros((n, n), dtype=bool)
    for p in task.train_paths:
        p = p[p >= 0]
        for a, b in zip(p[:-1], p[1:]):
            obs_adj[a, b] = True
        for k in p:
            obs_reach[p[-1], k] = True
    assert np.array_equal(obs_adj, task.obs_adj) and np.array_equal(obs_reach, task.obs_reach)
    assert (task.obs_adj <= task.adj).all()  # observed edges are edges
    assert np.array_equal(task.obs_adj, task.adj)  # edge_paths: every edge observed
    # R_obs is a subset of true reachability (plus the target itself)
    assert ((task.obs_reach & ~np.eye(n, dtype=bool)) <= task.true_reach).all()
    assert np.array_equal(task.true_reach, brute_reach(task.adj).T)
    for (s, t), d in zip(task.test_pairs, task.test_degree):
        assert d == brute_degree(task.adj, task.obs_reach, s, t)


def test_degrees_on_a_hand_built_chain():
    # 0 -> 1 -> 2 -> 3 -> 4; training paths only 3 -> 4
    adj = np.zeros((5, 5), dtype=bool)
    for i in range(4):
        adj[i, i + 1] = True
    _, obs_reach = observed_matrices([np.array([3, 4])], 5)
    pairs = np.array([[3, 4], [2, 4], [1, 4], [0, 4]])
    assert pair_degrees(adj, obs_reach, pairs).tolist() == [0, 1, 2, 3]


# --------------------------------------------------------------------------- the task


def test_sequences_and_targets():
    task = small_task()
    n = task.n_nodes
    b = task.train_set
    for row, tgt in zip(b.tokens[:50], b.targets[:50]):
        row = row.tolist()
        end = row.index(n)
        s, t, path = row[0], row[1], row[2:end]
        assert path[0] == s and path[-1] == t and task.adj[path[:-1], path[1:]].all()
        assert all(x == n + 1 for x in row[end + 1:])
        # loss on the copied source, the path and the end token only
        tg = tgt.tolist()
        assert tg[0] == IGNORE and tg[1:end] == row[2:end + 1] and all(x == IGNORE for x in tg[end:])
    d = task.cfg.model_defaults()
    assert d["d_vocab"] == n + 2 and d["d_vocab_out"] == n + 1 and d["n_ctx"] >= b.tokens.shape[1]


def test_train_batch_is_a_pure_function_of_seed_and_step():
    a, b = small_task(), small_task()
    x, y = a.train_batch(5, 8), b.train_batch(5, 8)
    assert torch.equal(x.tokens, y.tokens)
    assert not torch.equal(x.tokens, a.train_batch(6, 8).tokens)
    assert (x.tokens[:, -1] != a.pad).any()  # trailing all-padding columns trimmed


def test_eval_sets_and_labels():
    task = small_task(train_fraction=0.3)
    ev = task.eval_sets()
    assert set(ev) == {"train", "test"}
    test_pairs = set(map(tuple, task.test_pairs.tolist()))
    got = set(zip(ev["test"].extras["source"].tolist(), ev["test"].extras["target"].tolist()))
    assert got == test_pairs
    assert set(task.test_degree.tolist()) <= {0, 1, 2, 3}


def test_check_paths():
    task = small_task()
    n, eos, pad = task.n_nodes, task.eos, task.pad
    s, t = task.test_pairs[0]
    p = sample_paths(task.adj, task.reach, np.array([[s, t]]), np.random.default_rng(0))[0].tolist()
    width = len(p) + 3

    def row(seq):
        return seq + [pad] * (width - len(seq))

    comps = torch.tensor([row(p + [eos]), row(p), row(p[1:] + [eos]) if len(p) > 2 else row([t, eos]),
                          row([s, t, eos]) if not task.adj[s, t] else row([s, eos]),
                          row(p + [eos, 0])])
    ok = task.check_paths(np.array([[s, t]] * 5), comps)
    assert ok.tolist() == [True, False, False, False, True]
    assert n == task.adj.shape[0]


def test_blocksworld_task():
    task = make_task(build_task_config({"name": "blocksworld", "paths_per_pair": 2}), 0)
    assert task.n_nodes == 73
    assert len(task.train_pairs) + len(task.test_pairs) == 73 * 72
    for row in task.train_set.tokens[:30]:
        row = row.tolist()
        path = row[2:row.index(task.eos)]
        assert len(path) - 1 == task.dist[path[0], path[-1]]


def test_bad_config_raises():
    with pytest.raises(TheoryLabError):
        build_task_config({"name": "alpine", "n": 1})
    with pytest.raises(TheoryLabError):
        build_task_config({"name": "alpine", "p": 1.5})
    with pytest.raises(ConfigError):  # a graph with no edges has no pairs at all
        make_task(build_task_config({"name": "alpine", "n": 3, "p": 1e-9}), 0)


def test_alpine_preset_has_the_papers_defaults():
    from theorylab.runs import build_run_config

    cfg = build_run_config("alpine", ["task.n=20"])
    m, t = cfg.model, cfg.train
    assert (m.d_model, m.n_layers, m.n_heads) == (120, 1, 1)
    assert (t.lr, t.weight_decay, tuple(t.betas), t.grad_clip, t.batch_size) == (5e-4, 0.1, (0.9, 0.95), 1.0, 32)
    assert m.d_vocab == 22 and m.d_vocab_out == 21


def test_pairs_are_all_combinations_once():
    task = small_task()
    allp = list(map(tuple, np.concatenate([task.train_pairs, task.test_pairs]).tolist()))
    assert len(allp) == len(set(allp))
    assert set(allp) == {(s, t) for s, t in itertools.product(range(task.n_nodes), repeat=2)
                         if s != t and task.reach[s, t]}
