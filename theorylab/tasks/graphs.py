"""Planning as path-finding (ALPINE; Wang, Shen, Feng, Sun, Teng & Chen, NeurIPS 2024,
arXiv 2405.09220).

A graph on ``n`` nodes; a model is trained autoregressively on sequences

    s t s v1 v2 ... t <eos>

(source, target, then a path from source to target, then an end token) and asked,
from the prompt ``s t``, to produce a path.  Tokens ``0 .. n-1`` are nodes, ``n`` is
the end token and ``n + 1`` is padding.  The loss is taken on the path tokens only
(the copied source, the path and the end token), never on ``s t`` itself.

Two families:

* ``alpine``: a random DAG, edge ``i -> j`` (``i < j``) with probability ``p``.  Every
  reachable ordered pair ``(s, t)`` goes to the training split with probability
  ``train_fraction``, except that directly connected pairs always train.  Each training
  pair gets ``paths_per_pair`` random paths, each step uniform over the out-neighbours
  that can still reach ``t``; with ``edge_paths`` every edge also appears as ``s t s t``.
* ``blocksworld``: the state graph of Blocksworld with ``n_blocks`` labelled blocks (73
  states for 4 blocks); moves are reversible, so paths are random *shortest* paths
  (each step uniform over neighbours one move closer to the target).

Matrices, all ``[n, n]`` bool, follow the paper's orientation where it has one:

* ``adj[i, k]``: edge ``i -> k``;   ``reach[u, v]``: ``v`` reachable from ``u`` (>= 1 step);
* ``obs_adj[i, k]``: ``k`` follows ``i`` on some training path (the paper's A_obs);
* ``obs_reach[t, k]``: ``k`` lies on some training path whose target is ``t`` (R_obs);
  ``true_reach[t, k] = reach[k, t]`` (R_true, target-major like R_obs).

Test pairs carry the paper's *degree*: 0 if ``obs_reach[t, s]``; 1 if some out-neighbour
``u`` of ``s`` has ``obs_reach[t, u]``; 2 if some out-neighbour has degree 1; 3 (meaning
"3 or more") otherwise.  Degree <= 1 pairs are *observed*: the idealised ALPINE
algorithm (step to an out-neighbour ``u`` with ``obs_reach[t, u]``) solves them from
training statistics alone.  Degree >= 2 pairs are *transitive*: a path exists only by
composing observed reachability, which the paper argues the model cannot learn.
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from theorylab.config import Seed
from theorylab.errors import ConfigError
from theorylab.tasks import register_task
from theorylab.tasks.base import IGNORE, Batch, Task, TaskConfig, token_metrics, torch_generator

# --------------------------------------------------------------------------- graphs


def random_dag(n: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """Adjacency ``[n, n]`` bool of a random DAG: edge ``i -> j`` for ``i < j`` with probability ``p``."""
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)
    return (rng.random((n, n)) < p) & upper


def transitive_closure(adj: np.ndarray) -> np.ndarray:
    """``reach[u, v]``: a path of one or more edges leads from ``u`` to ``v`` (any digraph)."""
    reach = adj.copy()
    # repeated squaring on boolean matrices: O(n^3 log n) but vectorised (n <= a few hundred)
    while True:
        nxt = reach | ((reach.astype(np.float32) @ reach.astype(np.float32)) > 0)
        if np.array_equal(nxt, reach):
            return reach
        reach = nxt
    return reach  # pragma: no cover


def bfs_distances(adj: np.ndarray) -> np.ndarray:
    """``dist[u, v]``: fewest edges from ``u`` to ``v`` (``-1`` if unreachable, 0 on the diagonal)."""
    n = adj.shape[0]
    dist = np.full((n, n), -1, dtype=np.int64)
    a = adj.astype(np.float32)
    frontier = np.eye(n, dtype=bool)
    seen = frontier.copy()
    dist[frontier] = 0
    d = 0
    while frontier.any():
        d += 1
        frontier = ((frontier.astype(np.float32) @ a) > 0) & ~seen
        dist[frontier] = d
        seen |= frontier
    return dist


def blocksworld_states(n_blocks: int) -> list[tuple[tuple[int, ...], ...]]:
    """All Blocksworld states of ``n_blocks`` labelled blocks on a table, sorted.

    A state is a sorted tuple of stacks, each stack a tuple of blocks bottom to top.
    Their number is the sum of Lah numbers (73 for 4 blocks)."""
    states: set[tuple[tuple[int, ...], ...]] = set()

    def place(i: int, stacks: list[tuple[int, ...]]) -> None:
        if i == n_blocks:
            states.add(tuple(sorted(stacks)))
            return
        place(i + 1, stacks + [(i,)])  # a new stack
        for j, st in enumerate(stacks):  # into any position of an existing stack
            for pos in range(len(st) + 1):
                place(i + 1, stacks[:j] + [st[:pos] + (i,) + st[pos:]] + stacks[j + 1:])

    place(0, [])
    return sorted(states)


def blocksworld_graph(n_blocks: int) -> tuple[np.ndarray, list]:
    """Adjacency of the Blocksworld state graph: one move = take a top block and put it
    on the table or on another stack's top.  Symmetric (every move can be undone)."""
    states = blocksworld_states(n_blocks)
    index = {s: i for i, s in enumerate(states)}
    n = len(states)
    adj = np.zeros((n, n), dtype=bool)
    for s in states:
        stacks = list(s)
        for a, st in enumerate(stacks):
            top, rest = st[-1], st[:-1]
            others = [x for b, x in enumerate(stacks) if b != a]
            base = others + ([rest] if rest else [])
            moves = []
            if rest:  # onto the table
                moves.append(base + [(top,)])
            for b, ot in enumerate(others):
                moved = others[:b] + [ot + (top,)] + others[b + 1:]
                moves.append(moved + ([rest] if rest else []))
            for m in moves:
                adj[index[s], index[tuple(sorted(m))]] = True
    return adj, states


# --------------------------------------------------------------------------- pairs and paths


def split_pairs(adj: np.ndarray, reach: np.ndarray, train_fraction: float, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
    """Reachable ordered pairs ``(s, t)``, ``s != t``, split into train and test ``[M, 2]``
    arrays (row-major order).  Each pair trains with probability ``train_fraction``;
    directly connected pairs always train."""
    n = adj.shape[0]
    ok = reach & ~np.eye(n, dtype=bool)
    s, t = np.nonzero(ok)
    to_train = (rng.random(len(s)) < train_fraction) | adj[s, t]
    pairs = np.stack([s, t], axis=1).astype(np.int64)
    return pairs[to_train], pairs[~to_train]


def sample_paths(adj: np.ndarray, reach: np.ndarray, pairs: np.ndarray, rng: np.random.Generator,
                 rule: Literal["reachable", "shortest"] = "reachable", dist: np.ndarray | None = None,
                 max_len: int | None = None) -> list[np.ndarray]:
    """One random path per row of ``pairs`` (``[M, 2]``), as node arrays ``s .. t``.

    ``rule="reachable"``: each step uniform over the out-neighbours ``u`` of the current
    node with ``u == t`` or ``reach[u, t]`` (always terminates on a DAG).
    ``rule="shortest"``: uniform over out-neighbours one step closer to ``t`` in ``dist``
    (random shortest paths; terminates on any graph).  Vectorised over all pairs."""
    mat = sample_path_matrix(adj, reach, pairs, rng, rule, dist, max_len)
    return [row[row >= 0] for row in mat]


def sample_path_matrix(adj: np.ndarray, reach: np.ndarray, pairs: np.ndarray, rng: np.random.Generator,
                       rule: Literal["reachable", "shortest"] = "reachable", dist: np.ndarray | None = None,
                       max_len: int | None = None) -> np.ndarray:
    """As :func:`sample_paths`, as one ``[M, L]`` int64 matrix padded with ``-1`` after each target."""
    if len(pairs) == 0:
        return np.zeros((0, 1), dtype=np.int64)
    if rule == "shortest" and dist is None:
        dist = bfs_distances(adj)
    n = adj.shape[0]
    width = max(1, int(adj.sum(1).max()))
    succ = np.full((n, width), -1, dtype=np.int64)  # out-neighbours of each node, padded with -1
    for i in range(n):
        nb = np.nonzero(adj[i])[0]
        succ[i, :len(nb)] = nb
    chunk = 32768  # bounds the [pairs, max out-degree] work arrays
    parts = [_sample_chunk(succ, reach, pairs[i:i + chunk], rng, rule, dist, max_len)
             for i in range(0, len(pairs), chunk)]
    length = max(p.shape[1] for p in parts)
    return np.concatenate([np.pad(p, ((0, 0), (0, length - p.shape[1])), constant_values=-1) for p in parts], 0)


def _sample_chunk(succ, reach, pairs, rng, rule, dist, max_len) -> np.ndarray:
    n = succ.shape[0]
    src, tgt = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    cur = src.copy()
    steps = [cur.copy()]
    active = cur != tgt
    limit = n if max_len is None else max_len
    for _ in range(limit):
        if not active.any():
            break
        idx = np.nonzero(active)[0]
        cand = succ[cur[idx]]  # [a, width]
        c = np.where(cand >= 0, cand, 0)
        t = tgt[idx][:, None]
        if rule == "reachable":
            good = (cand >= 0) & ((c == t) | reach[c, t])
        else:
            good = (cand >= 0) & (dist[c, t] == dist[cur[idx], tgt[idx]][:, None] - 1)
        if not good.any(1).all():
            raise ConfigError("sample_paths: a pair has no way forward (is every pair reachable?)")
        keys = np.where(good, rng.random(good.shape), -1.0)
        nxt = c[np.arange(len(idx)), keys.argmax(1)]
        cur = cur.copy()
        cur[idx] = nxt
        steps.append(np.where(active, cur, -1))
        active = active & (cur != tgt)
    if active.any():
        raise ConfigError("sample_paths: paths did not reach their targets (graph has cycles? use rule='shortest')")
    return np.stack(steps, axis=1)


def _as_matrix(paths: list[np.ndarray] | np.ndarray) -> np.ndarray:
    if isinstance(paths, np.ndarray):
        return paths
    length = max((len(p) for p in paths), default=1)
    mat = np.full((len(paths), length), -1, dtype=np.int64)
    for r, p in enumerate(paths):
        mat[r, :len(p)] = p
    return mat


def observed_matrices(paths: list[np.ndarray] | np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``obs_adj[i, k]`` (k follows i on some path) and ``obs_reach[t, k]`` (k on some path
    whose target is t) from training paths (each ``s .. t``; a list, or a ``-1``-padded matrix)."""
    mat = _as_matrix(paths)
    obs_adj = np.zeros((n, n), dtype=bool)
    obs_reach = np.zeros((n, n), dtype=bool)
    if len(mat) == 0:
        return obs_adj, obs_reach
    a, b = mat[:, :-1], mat[:, 1:]
    step = (a >= 0) & (b >= 0)
    obs_adj[a[step], b[step]] = True
    lengths = (mat >= 0).sum(1)
    target = mat[np.arange(len(mat)), lengths - 1]
    on = mat >= 0
    obs_reach[np.broadcast_to(target[:, None], mat.shape)[on], mat[on]] = True
    return obs_adj, obs_reach


def pair_degrees(adj: np.ndarray, obs_reach: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """The paper's degree of each ``(s, t)`` in ``pairs``: 0, 1, 2 or 3 (3 = three or more)."""
    a = adj.astype(np.float32)
    d0 = obs_reach
    d1 = (obs_reach.astype(np.float32) @ a.T) > 0  # d1[t, u]: some successor k of u has obs_reach[t, k]
    d2 = (d1.astype(np.float32) @ a.T) > 0
    s, t = pairs[:, 0], pairs[:, 1]
    out = np.full(len(pairs), 3, dtype=np.int64)
    out[d2[t, s]] = 2
    out[d1[t, s]] = 1
    out[d0[t, s]] = 0
    return out


# --------------------------------------------------------------------------- the tasks


class GraphPathConfig(TaskConfig):
    """Fields shared by the graph path-finding tasks."""

    train_fraction: float = Field(0.5, gt=0, lt=1, description="chance a reachable, not directly connected pair trains "
                                  "(below 1: the rest are the test pairs)")
    paths_per_pair: int = Field(20, ge=1, description="random paths per training pair")
    edge_paths: bool = Field(True, description="also train on 's t s t' for every edge")
    test_paths_per_pair: int = Field(1, ge=1, description="paths per test pair in the teacher-forced test split")
    eval_pairs: int = Field(1000, ge=1, description="training pairs (one path each) in the 'train' eval split")
    eval_temperature: float = Field(0.0, ge=0, description="decoding temperature of the path_accuracy metric "
                                    "during training (0 = greedy)")
    data_seed: Seed | None = Field(None, description="seed of graph, split and paths (0..2**63-1); none = the run seed")

    def num_nodes(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def max_pairs(self) -> int:
        """An upper bound on the reachable (source, target) pairs."""
        n = self.num_nodes()
        return n * (n - 1)

    def rows_per_step(self) -> int:
        """The training paths and edge paths (a full batch; an upper bound)."""
        pairs = self.max_pairs()
        return int(pairs * self.train_fraction * self.paths_per_pair) + (pairs if self.edge_paths else 0)

    def data_numbers(self) -> int:
        n, pairs = self.num_nodes(), self.max_pairs()
        paths = self.rows_per_step() + self.eval_pairs + pairs * self.test_paths_per_pair
        return 12 * n * n + 2 * paths * (n + 3)  # the n x n matrices (and closure products); paths, targets

    def model_defaults(self) -> dict[str, Any]:
        n = self.num_nodes()
        # nodes, end token; the pad token is input-only.  The longest simple path has n
        # nodes, so a sequence never exceeds 2 + n + 1 tokens.
        return {"d_vocab": n + 2, "d_vocab_out": n + 1, "n_ctx": n + 3, "pad_token_id": n + 1}


class AlpineConfig(GraphPathConfig):
    name: Literal["alpine"] = "alpine"
    n: int = Field(100, ge=2, description="number of nodes")
    p: float = Field(0.1, gt=0, le=1, description="edge probability of i -> j for i < j")

    def num_nodes(self) -> int:
        return self.n

    def max_pairs(self) -> int:
        return self.n * (self.n - 1) // 2  # edges only go i -> j with i < j


class BlocksworldConfig(GraphPathConfig):
    name: Literal["blocksworld"] = "blocksworld"
    n_blocks: int = Field(4, ge=2, le=5, description="labelled blocks (4 blocks = 73 states; 5 = 501)")
    train_fraction: float = Field(0.8, gt=0, lt=1, description="chance a pair (not directly connected) trains "
                                  "(below 1: the rest are the test pairs)")

    def num_nodes(self) -> int:
        return _num_blocksworld_states(self.n_blocks)


@cache
def _num_blocksworld_states(n_blocks: int) -> int:
    return len(blocksworld_states(n_blocks))


class GraphPathTask(Task):
    """Shared data pipeline of the path-finding tasks (see the module docstring).

    Its interface for measures and claims: ``n_nodes``; the ``[n, n]`` bool matrices ``adj``, ``reach``,
    ``obs_adj``, ``obs_reach``, ``true_reach``; the pairs ``train_pairs``, ``test_pairs`` (``[m, 2]`` int)
    with their ``train_degree``, ``test_degree`` (``[m]``); the tokens ``eos`` and ``pad``; and
    :meth:`prompts`, :meth:`generate`, :meth:`check_paths`, :meth:`path_accuracy`.
    """

    Config: ClassVar[type[GraphPathConfig]]
    cfg: GraphPathConfig
    rule: ClassVar[Literal["reachable", "shortest"]] = "reachable"

    def build_graph(self, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __init__(self, cfg: GraphPathConfig, seed: int = 0):
        super().__init__(cfg, seed)
        data_seed = seed if cfg.data_seed is None else cfg.data_seed
        rng = np.random.default_rng([int(data_seed), 0xA1F1])
        self.adj = self.build_graph(rng)
        n = self.n_nodes = self.adj.shape[0]
        self.eos, self.pad = n, n + 1
        self.reach = transitive_closure(self.adj)
        self.dist = bfs_distances(self.adj) if self.rule == "shortest" else None
        self.train_pairs, self.test_pairs = split_pairs(self.adj, self.reach, cfg.train_fraction, rng)
        if len(self.train_pairs) == 0 or len(self.test_pairs) == 0:
            raise ConfigError(f"task: the graph gives {len(self.train_pairs)} train and {len(self.test_pairs)} "
                              "test pairs; both must be non-empty (raise n, p or lower train_fraction)")
        rep = np.repeat(self.train_pairs, cfg.paths_per_pair, axis=0)
        paths = self._paths(rep, rng)
        if cfg.edge_paths:
            es, et = np.nonzero(self.adj)
            if len(es):
                edges = np.full((len(es), paths.shape[1]), -1, dtype=np.int64)
                edges[:, 0], edges[:, 1] = es, et
                paths = np.concatenate([paths, edges], 0)
                rep = np.concatenate([rep, np.stack([es, et], 1)], 0)
        self.train_paths = paths  # [M, L] int64, -1 after each target
        self.obs_adj, self.obs_reach = observed_matrices(paths, n)
        self.true_reach = self.reach.T.copy()
        self.test_degree = pair_degrees(self.adj, self.obs_reach, self.test_pairs)
        self.train_degree = pair_degrees(self.adj, self.obs_reach, self.train_pairs)

        self.train_set = self._encode(rep, paths)
        ev = np.random.default_rng([int(data_seed), 0xA1F2])
        k = min(cfg.eval_pairs, len(self.train_pairs))
        sub = self.train_pairs[np.sort(ev.choice(len(self.train_pairs), size=k, replace=False))]
        self.train_eval = self._encode(sub, self._paths(sub, ev))
        test_rep = np.repeat(self.test_pairs, cfg.test_paths_per_pair, axis=0)
        self.test_set = self._encode(test_rep, self._paths(test_rep, ev))
        self.test_set.extras["degree"] = torch.from_numpy(np.repeat(self.test_degree, cfg.test_paths_per_pair))
        self.max_path_nodes = int((paths >= 0).sum(1).max())

    # ---------------------------------------------------------------- data
    def _paths(self, pairs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return sample_path_matrix(self.adj, self.reach, pairs, rng, rule=self.rule, dist=self.dist)

    def _encode(self, pairs: np.ndarray, paths: np.ndarray) -> Batch:
        """Sequences ``s t s .. t <eos>`` padded with ``pad``; targets on the path tokens."""
        m, width = paths.shape
        lengths = (paths >= 0).sum(1)
        length = 3 + int(lengths.max())
        tokens = np.full((m, length), self.pad, dtype=np.int64)
        tokens[:, 0], tokens[:, 1] = pairs[:, 0], pairs[:, 1]
        tokens[:, 2:2 + width] = np.where(paths >= 0, paths, self.pad)
        tokens[np.arange(m), 2 + lengths] = self.eos
        col = np.arange(length)[None, :]
        targets = np.full((m, length), IGNORE, dtype=np.int64)
        keep = (col >= 1) & (col <= (1 + lengths)[:, None])  # predict the copied source .. the end token
        targets[:, :-1] = np.where(keep[:, :-1], tokens[:, 1:], IGNORE)
        return Batch(tokens=torch.from_numpy(tokens), targets=torch.from_numpy(targets),
                     extras={"source": torch.from_numpy(pairs[:, 0].copy()),
                             "target": torch.from_numpy(pairs[:, 1].copy())})

    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        b = super().train_batch(step, batch_size)
        return _trim(b, self.pad)

    def eval_sets(self) -> dict[str, Batch]:
        return {"train": self.train_eval, "test": self.test_set}

    # ---------------------------------------------------------------- generation and checking
    def prompts(self, pairs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Prompts ``s t`` ``[M, 2]`` for pairs ``[M, 2]``."""
        return torch.as_tensor(np.asarray(pairs), dtype=torch.long).reshape(-1, 2)

    def max_new_tokens(self) -> int:
        """Generation budget: the copied source, twice the longest training path, the end token."""
        return min(self.n_nodes + 1, 2 * self.max_path_nodes + 2)

    @torch.no_grad()
    def generate(self, model: torch.nn.Module, pairs: np.ndarray | torch.Tensor, temperature: float = 1.0,
                 generator: torch.Generator | None = None, batch_size: int = 1024) -> torch.Tensor:
        """Completions of the prompts ``s t`` (``[M, max_new_tokens]``, ``pad`` after the end token)."""
        prompts = self.prompts(pairs)
        param = next(model.parameters(), None)
        if param is not None:
            prompts = prompts.to(param.device)
        out = []
        for i in range(0, len(prompts), batch_size):
            out.append(generate_tokens(model, prompts[i:i + batch_size], self.max_new_tokens(), temperature,
                                       generator, self.eos, self.pad))
        if not out:
            return torch.zeros((0, self.max_new_tokens()), dtype=torch.long)
        return torch.cat(out, 0).cpu()

    def check_paths(self, pairs: np.ndarray | torch.Tensor, completions: torch.Tensor) -> np.ndarray:
        """Bool per row: the completion is ``s v1 .. t <eos>`` with every step an edge."""
        pairs = np.asarray(pairs).reshape(-1, 2)
        comp = completions.cpu().numpy()
        n = self.n_nodes
        ok = np.zeros(len(pairs), dtype=bool)
        for r, (s, t) in enumerate(pairs):
            row = comp[r]
            ends = np.nonzero(row == self.eos)[0]
            if len(ends) == 0:
                continue
            path = row[:ends[0]]
            if len(path) < 2 or path[0] != s or path[-1] != t or (path >= n).any():
                continue
            ok[r] = bool(self.adj[path[:-1], path[1:]].all())
        return ok

    def path_accuracy(self, model: torch.nn.Module, pairs: np.ndarray | torch.Tensor, temperature: float = 1.0,
                      generator: torch.Generator | None = None) -> np.ndarray:
        """Bool per pair: the model's completion of ``s t`` is a valid path to ``t``."""
        return self.check_paths(pairs, self.generate(model, pairs, temperature, generator))

    # ---------------------------------------------------------------- metrics
    @torch.no_grad()
    def metrics(self, model: torch.nn.Module, batch: Batch, out: torch.Tensor | None = None) -> dict[str, float]:
        if out is None:
            out = self.forward(model, batch)
        m = token_metrics(out, batch.targets)
        pairs = torch.stack([batch.extras["source"], batch.extras["target"]], 1).cpu().numpy()
        g = torch_generator(self.seed, 0xE7A1)
        ok = self.path_accuracy(model, pairs, self.cfg.eval_temperature, g)
        m["path_accuracy"] = float(ok.mean())
        return m


def _trim(b: Batch, pad: int) -> Batch:
    """Drop trailing columns that are padding in every row."""
    keep = int((b.tokens != pad).sum(1).max())
    if keep == b.tokens.shape[1]:
        return b
    return Batch(tokens=b.tokens[:, :keep], targets=b.targets[:, :keep], extras=dict(b.extras))


@torch.no_grad()
def generate_tokens(model: torch.nn.Module, prompts: torch.Tensor, max_new_tokens: int, temperature: float,
                    generator: torch.Generator | None, eos: int, pad: int) -> torch.Tensor:
    """Batched sampling (greedy at temperature 0, :func:`theorylab.models.decoding.generate`) until every
    row has emitted ``eos``; ``pad`` after it.  Returns ``[B, max_new_tokens]``."""
    from theorylab.models.decoding import generate

    was = model.training
    model.eval()
    try:
        do_sample = temperature > 0
        kw: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, eos_token_id=eos,
                                  pad_token_id=pad)
        if do_sample:
            kw.update(temperature=temperature, generator=generator)
        new = generate(model, prompts, **kw)[:, prompts.shape[1]:]
        if new.shape[1] < max_new_tokens:
            new = torch.cat([new, torch.full((new.shape[0], max_new_tokens - new.shape[1]), pad,
                                             dtype=new.dtype, device=new.device)], 1)
        return new[:, :max_new_tokens]
    finally:
        model.train(was)


@register_task
class AlpineTask(GraphPathTask):
    """Random-DAG path-finding (ALPINE, Wang et al. 2024)."""

    Config = AlpineConfig
    cfg: AlpineConfig
    rule = "reachable"

    def build_graph(self, rng: np.random.Generator) -> np.ndarray:
        return random_dag(self.cfg.n, self.cfg.p, rng)


@register_task
class BlocksworldTask(GraphPathTask):
    """Blocksworld state-graph path-finding (the planning benchmark in ALPINE, Sec. 5)."""

    Config = BlocksworldConfig
    cfg: BlocksworldConfig
    rule = "shortest"

    def build_graph(self, rng: np.random.Generator) -> np.ndarray:
        adj, self.states = blocksworld_graph(self.cfg.n_blocks)
        return adj


# --------------------------------------------------------------------------- presets


__all__ = [
    "AlpineConfig", "AlpineTask", "BlocksworldConfig", "BlocksworldTask", "GraphPathTask", "random_dag",
    "transitive_closure", "bfs_distances", "blocksworld_states", "blocksworld_graph", "split_pairs",
    "sample_paths", "sample_path_matrix", "observed_matrices", "pair_degrees", "generate_tokens",
]
