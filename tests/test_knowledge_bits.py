"""The bits-stored measure (theorylab.measures.knowledge) on models whose predictions are known, and on a
trained bios run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.measures.knowledge import STORED, bits_per_parameter, bits_stored, pool_sizes, value_cross_entropy
from theorylab.tasks import build_task_config, make_task
from theorylab.tasks.bios import attribute_bits

SMALL = dict(n_people=40, n_first=5, n_middle=5, n_last=6, n_years=7, n_cities=9, n_universities=8, n_majors=6,
             n_employers=11, n_eval=16)
VALUE_TOKENS = {"birth_date": 3, "birth_city": 1, "university": 1, "major": 1, "employer": 1}  # month day year


class Known(torch.nn.Module):
    """A 'model' that puts probability ``p`` on the true next token (read from the input row one position ahead,
    which is where teacher forcing puts it) and spreads ``1 - p`` uniformly over the other ``V - 1`` outputs."""

    def __init__(self, vocab_out: int, p: float):
        super().__init__()
        self.V, self.p = vocab_out, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nxt = torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], 1).clamp_max(self.V - 1)
        logits = torch.full((*x.shape, self.V), math.log((1 - self.p) / (self.V - 1)), dtype=torch.float64)
        return logits.scatter(-1, nxt.unsqueeze(-1), math.log(self.p))


def _task(**kw):
    return make_task(build_task_config({"name": "bios", **SMALL, **kw}), 0)


@pytest.mark.parametrize("multi,permute", [(1, False), (5, True)])
def test_bits_on_a_model_with_known_predictions(multi, permute):
    task = _task(multi=multi, permute=permute)
    V = task.cfg.model_defaults()["d_vocab_out"]
    n = len(task.world)
    pools = pool_sizes(task.cfg)
    for p in (0.5, 0.9):
        ce = value_cross_entropy(Known(V, p), task)
        for a in STORED:  # CE in bits = -log2 p per value token
            assert ce[a] == pytest.approx([-VALUE_TOKENS[a] * math.log2(p)] * n, rel=1e-12)
        got = bits_stored(Known(V, p), task)
        for a in STORED:
            assert got[f"bits/{a}"] == pytest.approx(n * (math.log2(pools[a]) + VALUE_TOKENS[a] * math.log2(p)))
        assert got["bound"] == pytest.approx(n * attribute_bits(task.cfg), rel=1e-12)
    # a model that is sure of every value stores every bit
    assert bits_stored(Known(V, 1 - 1e-15), task)["fraction"] == pytest.approx(1.0, abs=1e-9)


def test_a_uniform_model_stores_below_zero_and_subsets_estimate_the_whole():
    task = _task()
    V = task.cfg.model_defaults()["d_vocab_out"]

    class Uniform(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(*x.shape, V, dtype=torch.float64)

    got = bits_stored(Uniform(), task)
    # uniform over the whole vocabulary is worse than uniform over each pool: CE = tokens * log2 V
    expect = sum(len(task.world) * (math.log2(k) - VALUE_TOKENS[a] * math.log2(V)) for a, k in pool_sizes(task.cfg).items())
    assert got["bits"] == pytest.approx(expect) and got["bits"] < 0
    half = bits_stored(Known(V, 0.5), task, people=range(0, 40, 2))
    assert half["n_measured"] == 20 and half["bits"] == pytest.approx(bits_stored(Known(V, 0.5), task)["bits"])
    with pytest.raises(ConfigError, match="bios task"):
        bits_stored(Uniform(), make_task(build_task_config({"name": "modular", "p": 7}), 0))
    with pytest.raises(ConfigError, match="one or more people"):
        bits_stored(Uniform(), task, people=[])


def test_a_trained_model_stores_bits(tmp_path):
    from theorylab.runs import build_run_config, train
    from theorylab.store import Store

    store = Store(tmp_path / "store")
    over = [f"task.{k}={v}" for k, v in SMALL.items()] + ["model.d_model=32", "model.n_layers=1", "model.n_heads=2",
                                                         "train.batch_size=32", "train.lr=1e-2", "train.steps=150",
                                                         "train.eval_every=150"]
    res = train(build_run_config("bios", over), store, progress=False)
    model, task = store.load_model(res.run_id), store.load_task(res.run_id)
    got = bits_stored(model, task)
    # measured: 97% of the 40 people's 23.4 attribute bits each after 150 steps (120 exposures): 913 bits in
    # 26,746 parameters (0.034 bits a parameter), a tiny world that a small model memorises with room to spare
    assert 0.5 < got["fraction"] <= 1.0
    assert 0 < bits_per_parameter(got["bits"], model) < 2


def test_cli_measure_bits(tmp_path, monkeypatch, capsys):
    import json

    from theorylab.cli import main

    monkeypatch.setenv("THEORYLAB_HOME", str(tmp_path / "home"))
    over = [f"task.{k}={v}" for k, v in SMALL.items()] + ["model.d_model=16", "model.n_layers=1", "model.n_heads=2",
                                                         "train.steps=5"]
    assert main(["train", "bios", *over, "-q", "--json"]) == 0
    rid = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["measure", "bits", rid[:12], "--people", "10", "--json"]) == 0
    vals = json.loads(capsys.readouterr().out)["values"]
    assert vals["n_measured"] == 10 and vals["bits_per_parameter"] == pytest.approx(vals["bits"] / vals["parameters"])
    assert main(["train", "ab_strings", "train.steps=2", "-q", "--json"]) == 0
    other = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["measure", "bits", other]) == 2
    assert "bits stored are measured on a bios run" in capsys.readouterr().err


def test_a_linear_probe_reads_linearly_coded_labels_and_not_noise():
    from theorylab.measures.knowledge import linear_probe_accuracy

    rng = np.random.default_rng(0)
    y = rng.integers(5, size=400)
    means = rng.normal(size=(5, 8)) * 3
    x = means[y] + rng.normal(size=(400, 8))  # well-separated class means: a linear code
    assert linear_probe_accuracy(x[:200], y[:200], x[200:], y[200:]) > 0.95
    noise = rng.normal(size=(400, 8))  # features that carry nothing: chance (0.2)
    assert linear_probe_accuracy(noise[:200], y[:200], noise[200:], y[200:]) < 0.35
    with pytest.raises(ConfigError):
        linear_probe_accuracy(x[:10], y[:9], x[10:20], y[10:20])


def test_p_and_q_probes_on_a_model_that_writes_the_attributes_into_the_name():
    from theorylab.measures.knowledge import PROBED, p_probe, q_probe

    task = _task()
    w = task.world

    class Oracle(torch.nn.Module):
        """Its final residual, from the end of the name on (every row opens ``<bos> first middle last``), is the
        one-hot code of that person's birth city: the birth city is decodable, nothing else is."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))  # a parameter, for the device

        def forward(self, x, return_residual=False):
            assert return_residual and not self.training
            names = {tuple(row): person for person, row in enumerate(task.values(np.arange(len(w)))[:, :3].tolist())}
            h = torch.zeros(*x.shape, task.cfg.n_cities, dtype=torch.float64)
            for b in range(x.shape[0]):
                person = names.get(tuple(x[b, 1:4].tolist()))
                if person is not None:
                    h[b, 3:, int(w.birth_city[person])] = 1.0
            return h

    for probe in (p_probe, q_probe):
        oracle = Oracle().train()
        got = probe(oracle, task)
        assert oracle.training  # the probe put it in eval mode and back
        assert set(got) == set(PROBED) | {"mean"}
        assert got["birth_city"] == 1.0  # read off the name
        assert got["major"] < 0.6  # not coded: near chance (1/6) on 20 test people
    with pytest.raises(ConfigError, match="bios task"):
        p_probe(Oracle(), make_task(build_task_config({"name": "modular", "p": 7}), 0))
