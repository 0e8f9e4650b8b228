"""Shared fixtures: every test gets its own store; torch uses one thread (2-core CI)."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(1)
# The training loop sets torch's threads for each training unless OMP_NUM_THREADS (or threads=) says how
# many: one thread everywhere keeps float sums identical between tests that compare runs (and subprocesses
# inherit it).  Tests of the chooser itself remove it (monkeypatch.delenv).
os.environ["OMP_NUM_THREADS"] = "1"
# Likewise the stacked stepper's seeds per pass: measured by default (the fastest on the machine, which a timing
# decides), one seed per pass in tests; tests of the measurement remove it.
os.environ["THEORYLAB_SEED_CHUNK"] = "1"


@pytest.fixture()
def store(tmp_path, monkeypatch):
    from theorylab.store import Store

    home = tmp_path / "runs"
    monkeypatch.setenv("THEORYLAB_HOME", str(home))
    return Store(home)


@pytest.fixture()
def cli_env(tmp_path):
    """Environment for CLI subprocesses: a private store, one torch thread."""
    env = dict(os.environ)
    env["THEORYLAB_HOME"] = str(tmp_path / "runs")
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture()
def cli(store, capsys):
    """Run the CLI in-process against the test's own store: returns (exit code, stdout, stderr)."""
    from theorylab.cli import main

    def run(*args):
        capsys.readouterr()
        rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def assert_earned(res) -> None:
    """A stored verdict is the claim's rule applied to its stored per-seed values at its tier: recomputed, it
    is the same; a failed premise left it inconclusive; a proxy tier did not refute; every premise and
    criterion reports a value per seed and its statistic."""
    from theorylab.claims import get_claim

    rule = get_claim(res.claim_id).rule
    again = rule.decide(res.per_seed, faithful=res.tier_faithful)
    assert again.verdict == res.verdict, (again.reasons, res.reasons)
    assert len(res.premises) == len(rule.premises) and len(res.criteria) == len(rule.criteria)
    for p in res.premises:
        assert set(p["values"]) == set(res.per_seed), p
    if not all(p["met"] for p in res.premises):
        assert res.verdict == "inconclusive" and res.reasons[0].startswith("premise not met")
    if not res.tier_faithful:
        assert res.verdict != "refuted"
    assert all(c["statistic"] and c["n"] == len(res.seeds) for c in res.criteria)
