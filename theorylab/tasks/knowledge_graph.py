"""Multi-hop reasoning on a random knowledge graph: the random-graph toy model of emergence.

Source: the Erdős–Rényi random graph (Erdős & Rényi 1960, "On the evolution of random graphs") as a model of
emergence, SETUPS §4.2 (concepts are nodes, one-hop relations the model has learned are edges; a k-hop
question between two concepts is answerable only if they are connected in what the model has learned; the
giant component appears at mean degree c = 1 and holds the fraction S solving S = 1 − e^(−cS)) and §4.3
item 3 (train on one-hop facts with edge coverage q, test composed multi-hop queries).  The sequence format
is ALPINE's path-finding format (Wang, Shen, Feng, Sun, Teng & Chen, NeurIPS 2024, arXiv 2405.09220; see
:mod:`theorylab.tasks.graphs`) with a separator after the prompt.

**The graphs.**  The ground truth G is an undirected G(n, p) graph on ``n`` concept nodes with
p = ``degree`` / (n − 1), so its expected mean degree is ``degree`` (default 4: G itself is far above
threshold, S(4) ≈ 0.98).  G is drawn from ``graph_seed`` (none = the run seed) and nothing else, so runs that
differ only in ``q`` share the same G.  Training reveals exactly round(q·|E(G)|) of G's edges (at least
one): G's edges, sorted, are permuted by ``reveal_seed`` (none = the run seed) and the first ones are kept.
So for one reveal seed the revealed graphs are *nested* (G_q ⊆ G_q' for q < q'): a q sweep at one seed is
one coupled percolation process, as in the textbook construction.  G_q has mean degree ≈ degree·q and
percolates near q_c = 1/degree.

**Tokens.**  ``0 .. n-1`` are the nodes, ``n`` the end token ``<eos>``, ``n + 1`` the separator ``:`` and
``n + 2`` padding (input only; the model writes nodes and ``<eos>``: ``d_vocab_out = n + 1``).  Every
example is ``s t : s v1 .. t <eos>`` padded to ``n_ctx`` input tokens (default ``max_hops + 4``, the
longest example); a one-hop fact is ``s t : s t <eos>``.  As in ALPINE the loss is taken on the path tokens
only: the copied source, the path and the end token (targets are ``IGNORE`` on ``s t :`` and on padding).

**Training data** (fresh every step, a pure function of (run seed, step) through ``step_rng``).  Each row
is a multi-hop chain with probability ``multi_hop_fraction``, otherwise a one-hop fact: a revealed edge,
uniform, in a uniform direction.  A chain first draws its hop count h uniformly from the lengths
2..``max_hops`` at which G_q has some pair (balancing lengths, so long chains are trained even where they
are rare), then an ordered pair (s, t) uniformly among those at G_q-distance exactly h, then a uniformly
random *shortest* path of G_q from s to t (each step uniform over neighbours one step closer to t:
``graphs.sample_path_matrix`` with ``rule="shortest"``).  Shortest paths make the chain length a function of
the pair and keep it within ``max_hops``.  When G_q has no pair at distance >= 2 within ``max_hops`` (a very
small q) every row is a one-hop fact.  Test pairs are not held out of training: the question is whether the
model can answer pairs its data connects, and the data's ceiling is connectivity in G_q.

**Evaluation** (:meth:`KnowledgeGraphTask.evaluate`, every key under ``test/``).  The prompt is ``s t :``
and the model decodes greedily up to ``max_hops + 2`` tokens; a completion is *valid* when it is
``s v1 .. t <eos>``, every consecutive pair an edge of G (the truth, not G_q), at most ``max_hops`` hops
(a walk: nodes may repeat).

* ``hop{k}_accuracy`` (k = 1..``test_hops``): the fraction of valid completions over a fixed sample of up
  to ``n_test_pairs`` ordered pairs at shortest distance exactly k in G (drawn from ``graph_seed``, so the
  same pairs at every q).
* ``hop{k}_connected``: the fraction of those pairs connected in G_q (any length); ``hop{k}_reachable``:
  connected in G_q within ``max_hops`` hops (the ceiling of a model that knows G_q exactly);
  ``hop{k}_learned_connected``: connected in the learned graph.  The first two need no model.
* The learned graph: every edge {u, v} of G is asked both ways (``u v :`` and ``v u :``); it is *learned*
  when both answers are the direct fact ``u v <eos>`` (resp. ``v u <eos>``).  A valid detour through other
  edges does not count: a model that knows G_q answers a hidden edge whose ends G_q connects with such a
  detour (it is the G_q-shortest answer it was trained to give), and counting it would inflate the learned
  mean degree above the edges actually known (in a pilot at n = 32, q = 0.5 a detour rule "learned" 43 % of
  the hidden edges); components, and so ``learned_giant``, are the same either way for such a model.
  ``learned_edge_fraction`` = |learned| / |E(G)|, ``learned_mean_degree`` = 2·|learned| / n,
  ``learned_giant`` = largest-component fraction of the learned graph over all n nodes;
  ``learned_revealed_fraction`` = the fraction of revealed edges learned and ``learned_hidden_fraction`` =
  the fraction of hidden edges learned (only when some edge is hidden, q < 1; near 0 unless the model
  guesses unseen relations); ``one_hop_accuracy`` = the fraction of the 2|E(G)| directed edge queries
  answered with a valid walk (detours count here, as in ``hop1_accuracy``).
* The control ``false_edge_fraction``: of a fixed sample of up to ``n_test_pairs`` ordered pairs *not*
  adjacent in G (drawn from ``graph_seed``), the fraction answered with the direct fact ``s t <eos>``, a
  relation that does not exist.  The prompt contains the target, so "copy s, then t, then end" is a
  shortcut that is right on every edge of G whether or not the model knows it: a learned graph, and
  ``hop1_accuracy`` (whose pairs are all edges), mean something only when this rate is near 0 (the key is
  absent when G is complete); the hidden edges are learned above chance only when
  ``learned_hidden_fraction`` exceeds it.  Multi-hop chains in
  training are what teach the model that a pair is not always an edge: in pilots at n = 48, q = 0.5 a model
  trained on one-hop facts only (``multi_hop_fraction`` = 0) answered 63 % of non-edges and 46 % of hidden
  edges directly; with the default mixture at q = 0.15, 1 % and 3 %.  Accuracies at k >= 2 cannot be
  gained by the shortcut (``s t`` is then not an edge).
* From the data alone: ``revealed_mean_degree`` = 2|E(G_q)| / n, ``revealed_giant``, and for G
  ``graph_mean_degree``, ``graph_giant``.
* ``loss``, ``accuracy``, ``seq_accuracy``: teacher-forced loss (nats per path token), token accuracy and
  whole-path accuracy on ``n_eval`` held-out examples of the training distribution (a fixed draw).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import networkx as nx
import numpy as np
import torch
from pydantic import Field, model_validator

from theorylab.config import Seed
from theorylab.errors import ConfigError
from theorylab.tasks import register_task
from theorylab.tasks.base import IGNORE, Batch, Task, TaskConfig, chunked_metrics, step_rng
from theorylab.tasks.graphs import bfs_distances, generate_tokens, sample_path_matrix

_GRAPH_SALT, _REVEAL_SALT, _TEST_SALT, _EVAL_SALT = 0xE2D0, 0x2E7E, 0x7E57, 0xE7A1

# --------------------------------------------------------------------------- config


class KnowledgeGraphConfig(TaskConfig):
    name: Literal["knowledge_graph"] = "knowledge_graph"
    n: int = Field(64, ge=2, le=2048, description="concept nodes of the ground-truth graph G")
    degree: float = Field(4.0, gt=0, description="expected mean degree c of G = G(n, p), p = degree / (n - 1); "
                                                "at most n - 1")
    q: float = Field(0.5, gt=0, le=1, description="fraction of G's edges revealed in training (G_q percolates "
                                                  "near q = 1 / degree)")
    graph_seed: Seed | None = Field(None, description="seed of G and of the test pairs; none = the run seed "
                                                      "(runs differing only in q share G)")
    reveal_seed: Seed | None = Field(None, description="seed of the order in which edges are revealed; none = the "
                                                       "run seed (one seed: G_q nested in q)")
    max_hops: int = Field(8, ge=1, le=64, description="longest training chain and longest accepted answer (hops)")
    test_hops: int = Field(4, ge=1, description="test distances k = 1..test_hops (<= max_hops)")
    multi_hop_fraction: float = Field(0.5, ge=0, le=1, description="chance a training row is a multi-hop chain "
                                                                   "(else a one-hop fact)")
    n_test_pairs: int = Field(128, gt=0, description="test pairs per distance k (all of them when G has fewer)")
    n_eval: int = Field(512, gt=0, description="held-out training-distribution examples for test/loss")
    batch: int = Field(128, gt=0, description="examples per step when train.batch_size is none")
    n_ctx: int | None = Field(None, gt=0, description="input length of every example; none = max_hops + 4 "
                                                      "(the least that fits)")

    @model_validator(mode="after")
    def _check(self) -> KnowledgeGraphConfig:
        if self.degree > self.n - 1:
            raise ValueError(f"degree ({self.degree}) must be <= n - 1 = {self.n - 1}")
        if self.test_hops > self.max_hops:
            raise ValueError(f"test_hops ({self.test_hops}) must be <= max_hops ({self.max_hops})")
        if self.n_ctx is not None and self.n_ctx < self.max_hops + 4:
            raise ValueError(f"n_ctx ({self.n_ctx}) must be >= max_hops + 4 = {self.max_hops + 4} "
                             "(s t : s .. t <eos> with max_hops hops)")
        return self

    def seq_len(self) -> int:
        return self.max_hops + 4 if self.n_ctx is None else self.n_ctx

    def rows_per_step(self) -> int:
        return self.batch

    def data_numbers(self) -> int:
        n = self.n
        # adjacency, distance and BFS work matrices of G and G_q; pair lists; the fixed evaluation rows
        return 8 * n * n + 2 * (self.n_eval + self.test_hops * self.n_test_pairs) * (self.seq_len() + 1)

    def model_defaults(self) -> dict[str, Any]:
        n = self.n
        return {"d_vocab": n + 3, "d_vocab_out": n + 1, "n_ctx": self.seq_len(), "pad_token_id": n + 2}


# --------------------------------------------------------------------------- pure helpers


def er_graph(n: int, degree: float, seed: int) -> nx.Graph:
    """An Erdős–Rényi G(n, p) graph (Erdős & Rényi 1960) with p = degree / (n − 1), so the expected mean
    degree is ``degree``; nodes ``0 .. n-1``.  Drawn by :func:`networkx.fast_gnp_random_graph` from a seed
    derived from ``seed``.  Raises :class:`ConfigError` if ``n < 1`` or ``degree`` is outside [0, n − 1]."""
    if n < 1 or not 0 <= degree <= max(n - 1, 0):
        raise ConfigError(f"er_graph: need n >= 1 and 0 <= degree <= n - 1 (got n={n}, degree={degree})")
    p = 0.0 if n < 2 else min(1.0, degree / (n - 1))
    s = int(np.random.SeedSequence([int(seed), _GRAPH_SALT]).generate_state(1)[0])
    g = nx.fast_gnp_random_graph(n, p, seed=s)
    g.add_nodes_from(range(n))
    return g


def sorted_edges(g: nx.Graph) -> np.ndarray:
    """The edges of an undirected graph as ``[m, 2]`` int64 rows ``(u, v)`` with u < v, sorted."""
    e = np.array([(min(u, v), max(u, v)) for u, v in g.edges()], dtype=np.int64).reshape(-1, 2)
    return e[np.lexsort((e[:, 1], e[:, 0]))] if len(e) else e


def reveal(g: nx.Graph, q: float, seed: int) -> nx.Graph:
    """The revealed subgraph G_q: all of G's nodes and exactly round(q·|E(G)|) of its edges (at least one
    when G has any), the first ones of G's sorted edges permuted by ``seed``.  For one seed the result is
    nested in q (G_q ⊆ G_q' for q < q').  Raises :class:`ConfigError` unless 0 < q <= 1."""
    if not 0 < q <= 1:
        raise ConfigError(f"reveal: q must lie in (0, 1] (got {q})")
    edges = sorted_edges(g)
    m = len(edges)
    keep = 0 if m == 0 else max(1, int(math.floor(q * m + 0.5)))
    order = np.random.default_rng([int(seed), _REVEAL_SALT]).permutation(m)
    out = nx.Graph()
    out.add_nodes_from(g.nodes())
    out.add_edges_from(map(tuple, edges[np.sort(order[:keep])].tolist()))
    return out


def giant_fraction(g: nx.Graph) -> float:
    """Size of the largest connected component over the number of nodes (0 for an empty graph)."""
    n = g.number_of_nodes()
    if n == 0:
        return 0.0
    return max(len(c) for c in nx.connected_components(g)) / n


def adjacency(g: nx.Graph, n: int | None = None) -> np.ndarray:
    """``[n, n]`` bool symmetric adjacency of a graph on nodes ``0 .. n-1``."""
    n = g.number_of_nodes() if n is None else n
    adj = np.zeros((n, n), dtype=bool)
    e = sorted_edges(g)
    adj[e[:, 0], e[:, 1]] = adj[e[:, 1], e[:, 0]] = True
    return adj


def distances(g: nx.Graph) -> np.ndarray:
    """``[n, n]`` int64 shortest-path distances of a graph on nodes ``0 .. n-1`` (−1 if disconnected)."""
    return bfs_distances(adjacency(g))


def component_labels(g: nx.Graph, n: int | None = None) -> np.ndarray:
    """``[n]`` int64: the index of each node's connected component."""
    n = g.number_of_nodes() if n is None else n
    lab = np.zeros(n, dtype=np.int64)
    for i, comp in enumerate(nx.connected_components(g)):
        lab[list(comp)] = i
    return lab


def pairs_at_distance(g: nx.Graph, k: int, n_pairs: int, rng: np.random.Generator,
                      dist: np.ndarray | None = None) -> np.ndarray:
    """Up to ``n_pairs`` ordered pairs ``(s, t)`` at shortest distance exactly ``k`` in ``g``, ``[m, 2]`` int64,
    drawn uniformly without replacement (all of them, m < n_pairs, when fewer exist), in row-major order.
    ``dist`` is ``g``'s distance matrix if already known.  Raises :class:`ConfigError` if ``k < 1``."""
    if k < 1:
        raise ConfigError(f"pairs_at_distance: k must be >= 1 (got {k})")
    d = distances(g) if dist is None else dist
    s, t = np.nonzero(d == k)
    if len(s) > n_pairs:
        idx = np.sort(rng.choice(len(s), size=n_pairs, replace=False))
        s, t = s[idx], t[idx]
    return np.stack([s, t], 1).astype(np.int64)


def answerable_fraction(g: nx.Graph, g_q: nx.Graph, k: int, max_hops: int | None = None,
                        dist: np.ndarray | None = None) -> float:
    """Of all ordered pairs at shortest distance exactly ``k`` in ``g``, the fraction connected in ``g_q``
    (within ``max_hops`` hops of ``g_q`` when given): the ceiling on k-hop accuracy of a model that knows
    exactly ``g_q`` (SETUPS §4.2).  ``dist`` is ``g``'s distance matrix if already known.  NaN when ``g`` has
    no pair at distance ``k``."""
    d = distances(g) if dist is None else dist
    s, t = np.nonzero(d == k)
    if len(s) == 0:
        return float("nan")
    n = g.number_of_nodes()
    if max_hops is None:
        lab = component_labels(g_q, n)
        return float(np.mean(lab[s] == lab[t]))
    dq = bfs_distances(adjacency(g_q, n))
    return float(np.mean((dq[s, t] >= 0) & (dq[s, t] <= max_hops)))


def check_walks(adj: np.ndarray, pairs: np.ndarray, completions: np.ndarray | torch.Tensor, eos: int,
                max_hops: int) -> np.ndarray:
    """Bool ``[M]``: completion row r (``[M, W]`` tokens after the prompt) is ``s v1 .. t <eos>`` for
    ``pairs[r] = (s, t)``, with every consecutive pair an edge of ``adj`` (``[n, n]`` bool), between 1 and
    ``max_hops`` hops (a walk: nodes may repeat)."""
    comp = completions.cpu().numpy() if isinstance(completions, torch.Tensor) else np.asarray(completions)
    pairs = np.asarray(pairs).reshape(-1, 2)
    m, w = comp.shape
    n = adj.shape[0]
    if m == 0:
        return np.zeros(0, dtype=bool)
    is_eos = comp == eos
    has = is_eos.any(1)
    end = np.where(has, is_eos.argmax(1), w)  # number of path nodes before the end token
    col = np.arange(w)[None, :]
    inside = col < end[:, None]
    nodes_ok = (((comp >= 0) & (comp < n)) | ~inside).all(1)
    c = np.clip(comp, 0, n - 1)
    steps = col[:, :-1] + 1 < end[:, None]
    steps_ok = (adj[c[:, :-1], c[:, 1:]] | ~steps).all(1)
    last = c[np.arange(m), np.clip(end - 1, 0, w - 1)]
    return (has & (end >= 2) & (end - 1 <= max_hops) & nodes_ok & steps_ok & (c[:, 0] == pairs[:, 0])
            & (last == pairs[:, 1]))


# --------------------------------------------------------------------------- the task


@register_task
class KnowledgeGraphTask(Task):
    """Multi-hop path answers on a partly revealed Erdős–Rényi knowledge graph (see the module docstring).

    Interface for measures and claims: ``n_nodes``; the graphs ``G``, ``G_q`` (networkx) with their
    ``adj``, ``adj_q`` (``[n, n]`` bool) and ``dist``, ``dist_q`` (``[n, n]`` int64, −1 = disconnected);
    ``edges`` (``[m, 2]``, u < v) and ``revealed`` (``[m]`` bool); ``test_pairs`` ``{k: [m_k, 2]}``; the control
    pairs ``non_edges`` ``[m', 2]``; the tokens
    ``eos``, ``sep``, ``pad``; :meth:`examples`, :meth:`complete`, :meth:`answer`, :meth:`learned_graph`.
    """

    Config = KnowledgeGraphConfig
    cfg: KnowledgeGraphConfig

    def __init__(self, cfg: KnowledgeGraphConfig, seed: int = 0):
        super().__init__(cfg, seed)
        n = self.n_nodes = cfg.n
        self.eos, self.sep, self.pad = n, n + 1, n + 2
        graph_seed = self.seed if cfg.graph_seed is None else cfg.graph_seed
        reveal_seed = self.seed if cfg.reveal_seed is None else cfg.reveal_seed
        self.G = er_graph(n, cfg.degree, graph_seed)
        if self.G.number_of_edges() == 0:
            raise ConfigError(f"task.degree: G(n={n}, degree={cfg.degree}) drew no edge; raise degree or n")
        self.G_q = reveal(self.G, cfg.q, reveal_seed)
        self.adj, self.adj_q = adjacency(self.G, n), adjacency(self.G_q, n)
        self.dist, self.dist_q = bfs_distances(self.adj), bfs_distances(self.adj_q)
        self.edges = sorted_edges(self.G)
        self.revealed = self.adj_q[self.edges[:, 0], self.edges[:, 1]]
        e = self.edges[self.revealed]
        self.revealed_directed = np.concatenate([e, e[:, ::-1]], 0)  # one-hop facts, both directions

        # multi-hop training pairs by G_q-distance h = 2..max_hops
        self.chain_pairs: dict[int, np.ndarray] = {}
        for h in range(2, cfg.max_hops + 1):
            s, t = np.nonzero(self.dist_q == h)
            if len(s):
                self.chain_pairs[h] = np.stack([s, t], 1).astype(np.int64)
        self.chain_lengths = np.array(sorted(self.chain_pairs), dtype=np.int64)

        rng = np.random.default_rng([int(graph_seed), _TEST_SALT])
        self.test_pairs: dict[int, np.ndarray] = {}
        for k in range(1, cfg.test_hops + 1):
            p = pairs_at_distance(self.G, k, cfg.n_test_pairs, rng, dist=self.dist)
            if len(p) == 0:
                raise ConfigError(f"task.test_hops: G has no pair at distance {k}; lower test_hops (or raise n, "
                                  f"lower degree)")
            self.test_pairs[k] = p
        s, t = np.nonzero(~self.adj & ~np.eye(n, dtype=bool))
        pick = np.sort(rng.choice(len(s), size=min(cfg.n_test_pairs, len(s)), replace=False))
        self.non_edges = np.stack([s[pick], t[pick]], 1).astype(np.int64)  # the false-edge control, [m, 2]
        self.loss_set = self.examples(np.random.default_rng([self.seed, _EVAL_SALT]), cfg.n_eval)

    # ---------------------------------------------------------------- data
    def examples(self, rng: np.random.Generator, rows: int) -> Batch:
        """``rows`` training-distribution examples: tokens, targets ``[rows, n_ctx]``; extras ``source``,
        ``target``, ``hops`` ``[rows]`` (one-hop facts first, then chains)."""
        cfg = self.cfg
        multi = rng.random(rows) < cfg.multi_hop_fraction if len(self.chain_lengths) else np.zeros(rows, bool)
        n_multi = int(multi.sum())
        n_one = rows - n_multi
        width = cfg.max_hops + 1
        paths = np.full((rows, width), -1, dtype=np.int64)
        pairs = np.zeros((rows, 2), dtype=np.int64)
        facts = self.revealed_directed[rng.integers(len(self.revealed_directed), size=n_one)]
        pairs[:n_one], paths[:n_one, :2] = facts, facts
        if n_multi:
            h = self.chain_lengths[rng.integers(len(self.chain_lengths), size=n_multi)]
            chain = np.zeros((n_multi, 2), dtype=np.int64)
            for length in np.unique(h):
                rows_h = np.nonzero(h == length)[0]
                pool = self.chain_pairs[int(length)]
                chain[rows_h] = pool[rng.integers(len(pool), size=len(rows_h))]
            mat = sample_path_matrix(self.adj_q, self.dist_q >= 0, chain, rng, rule="shortest", dist=self.dist_q)
            pairs[n_one:] = chain
            paths[n_one:, :mat.shape[1]] = mat
        return self._encode(pairs, paths)

    def _encode(self, pairs: np.ndarray, paths: np.ndarray) -> Batch:
        """``s t : s .. t <eos>`` padded to ``n_ctx`` inputs; targets on the copied source, the path, the end."""
        m, w = paths.shape
        length = self.cfg.seq_len()
        lengths = (paths >= 0).sum(1)  # path nodes
        full = np.full((m, length + 1), self.pad, dtype=np.int64)
        full[:, 0], full[:, 1], full[:, 2] = pairs[:, 0], pairs[:, 1], self.sep
        full[:, 3:3 + w] = np.where(paths >= 0, paths, self.pad)
        full[np.arange(m), 3 + lengths] = self.eos
        col = np.arange(length)[None, :]
        keep = (col >= 2) & (col <= (2 + lengths)[:, None])  # predict full[3 .. 3 + len]: s .. t <eos>
        targets = np.where(keep, full[:, 1:], IGNORE)
        return Batch(tokens=torch.from_numpy(np.ascontiguousarray(full[:, :-1])), targets=torch.from_numpy(targets),
                     extras={"source": torch.from_numpy(pairs[:, 0].copy()),
                             "target": torch.from_numpy(pairs[:, 1].copy()),
                             "hops": torch.from_numpy(lengths - 1)})

    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        return self.examples(step_rng(self.seed, step), batch_size or self.cfg.batch)

    def eval_sets(self) -> dict[str, Batch]:
        return {"test": self.loss_set}

    # ---------------------------------------------------------------- answers
    def prompts(self, pairs: np.ndarray) -> torch.Tensor:
        """Prompts ``s t :`` ``[M, 3]`` for pairs ``[M, 2]``."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        return torch.from_numpy(np.concatenate([pairs, np.full((len(pairs), 1), self.sep)], 1))

    @torch.no_grad()
    def complete(self, model: torch.nn.Module, pairs: np.ndarray, batch_size: int = 4096) -> torch.Tensor:
        """The model's greedy completions of ``s t :`` for ``pairs`` ``[M, 2]``: ``[M, max_hops + 2]`` tokens
        (``pad`` after the end token), on the CPU."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        prompts = self.prompts(pairs)
        param = next(model.parameters(), None)
        budget = self.cfg.max_hops + 2
        out = []
        for i in range(0, len(prompts), max(1, batch_size)):
            p = prompts[i:i + batch_size]
            if param is not None:
                p = p.to(param.device)
            out.append(generate_tokens(model, p, budget, 0.0, None, self.eos, self.pad).cpu())
        if not out:
            return torch.full((0, budget), self.pad, dtype=torch.long)
        return torch.cat(out, 0)

    def answer(self, model: torch.nn.Module, pairs: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Bool ``[M]``: the model's greedy answer to ``s t :`` is a valid walk of G from s to t within
        ``max_hops`` hops (:func:`check_walks`), for each of ``pairs`` ``[M, 2]``."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        return check_walks(self.adj, pairs, self.complete(model, pairs, batch_size), self.eos, self.cfg.max_hops)

    def _direct(self, pairs: np.ndarray, comp: torch.Tensor) -> np.ndarray:
        """Bool per row: the completion is exactly ``s t <eos>``."""
        c = comp.numpy()
        return (c[:, 0] == pairs[:, 0]) & (c[:, 1] == pairs[:, 1]) & (c[:, 2] == self.eos)

    def _learned(self, direct: np.ndarray) -> nx.Graph:
        m = len(self.edges)
        g = nx.Graph()
        g.add_nodes_from(range(self.n_nodes))
        g.add_edges_from(map(tuple, self.edges[direct[:m] & direct[m:2 * m]].tolist()))
        return g

    def learned_graph(self, model: torch.nn.Module, batch_size: int = 4096) -> nx.Graph:
        """The learned graph: G's edges {u, v} whose queries ``u v :`` and ``v u :`` are both answered with the
        direct fact (``u v <eos>``, ``v u <eos>``), on all n nodes."""
        q = np.concatenate([self.edges, self.edges[:, ::-1]], 0)
        return self._learned(self._direct(q, self.complete(model, q, batch_size)))

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, device: Any, dtype: Any, eval_bs: int) -> dict[str, float]:
        """Every metric of the module docstring, as ``test/<name>``; one batched greedy decoding of the edge
        queries, the control pairs and the test pairs together."""
        cfg, n, m = self.cfg, self.n_nodes, len(self.edges)
        ks = sorted(self.test_pairs)
        queries = np.concatenate([self.edges, self.edges[:, ::-1], self.non_edges]
                                 + [self.test_pairs[k] for k in ks], 0)
        comp = self.complete(model, queries, eval_bs)
        ok = check_walks(self.adj, queries, comp, self.eos, cfg.max_hops)
        direct = self._direct(queries[:2 * m], comp[:2 * m])
        both = direct[:m] & direct[m:]
        learned = self._learned(direct)
        lab_l = component_labels(learned, n)
        out: dict[str, float] = {}
        n_non = len(self.non_edges)
        false_edges = self._direct(self.non_edges, comp[2 * m:2 * m + n_non])
        start = 2 * m + n_non
        for k in ks:
            p = self.test_pairs[k]
            s, t = p[:, 0], p[:, 1]
            dq = self.dist_q[s, t]
            out[f"hop{k}_accuracy"] = float(ok[start:start + len(p)].mean())
            out[f"hop{k}_connected"] = float((dq >= 0).mean())
            out[f"hop{k}_reachable"] = float(((dq >= 0) & (dq <= cfg.max_hops)).mean())
            out[f"hop{k}_learned_connected"] = float((lab_l[s] == lab_l[t]).mean())
            start += len(p)
        n_learned = int(both.sum())
        out["one_hop_accuracy"] = float(ok[:2 * m].mean())
        out["learned_edge_fraction"] = n_learned / m
        out["learned_mean_degree"] = 2 * n_learned / n
        out["learned_giant"] = giant_fraction(learned)
        out["learned_revealed_fraction"] = float(both[self.revealed].mean())
        if not self.revealed.all():
            out["learned_hidden_fraction"] = float(both[~self.revealed].mean())
        if n_non:
            out["false_edge_fraction"] = float(false_edges.mean())
        out["revealed_mean_degree"] = 2 * self.G_q.number_of_edges() / n
        out["revealed_giant"] = giant_fraction(self.G_q)
        out["graph_mean_degree"] = 2 * m / n
        out["graph_giant"] = giant_fraction(self.G)
        out.update(chunked_metrics(self, model, self.loss_set, eval_bs, device, dtype))
        return {f"test/{k}": float(v) for k, v in out.items()}


__all__ = [
    "KnowledgeGraphConfig", "KnowledgeGraphTask", "er_graph", "sorted_edges", "reveal", "giant_fraction",
    "adjacency", "distances", "component_labels", "pairs_at_distance", "answerable_fraction",
    "check_walks",
]
