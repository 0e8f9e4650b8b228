"""Chiang & Cholak's constructions on theorylab's Transformer, pinned to their closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from theorylab.constructions import evaluate, first, parity
from theorylab.errors import ConfigError

LN_PARITY = math.log2(1 + math.exp(-math.sqrt(10)))  # 0.0598
LN_FIRST = math.log2(1 + math.exp(-math.sqrt(6)))  # 0.1195


def first_no_ln(n):  # closed form: logit gap (1/2) e^s / (e^s + n), s = 1/sqrt(6)
    s = 1 / math.sqrt(6)
    gap = 0.5 * math.exp(s) / (math.exp(s) + n)
    return math.log2(1 + math.exp(-gap))


@pytest.mark.parametrize("n", [10, 100, 1000])
def test_parity_closed_forms(n):
    no_ln = evaluate(parity(), "parity", n, samples=64)
    assert no_ln["accuracy"] == 1.0
    expected = {10: 0.9950, 100: 0.9999, 1000: 1.0000}[n]
    assert no_ln["cross_entropy_bits"] == pytest.approx(expected, abs=1e-3)
    ln0 = evaluate(parity(layernorm_eps=0.0), "parity", n, samples=64)
    assert ln0["accuracy"] == 1.0
    assert ln0["cross_entropy_bits"] == pytest.approx(LN_PARITY, abs=1e-3)


def test_parity_logit_gap_matches_2tanh_over_N2():
    r = evaluate(parity(), "parity", 99, samples=64)  # N = 100 positions, even: exact
    assert r["mean_abs_logit_gap"] == pytest.approx(2 * math.tanh(1 / math.sqrt(5)) / 100**2, rel=1e-9)


@pytest.mark.parametrize("n", [10, 100, 1000])
def test_first_closed_forms(n):
    no_ln = evaluate(first(), "first", n, samples=64)
    assert no_ln["accuracy"] == 1.0
    assert no_ln["cross_entropy_bits"] == pytest.approx(first_no_ln(n), abs=1e-6)
    ln0 = evaluate(first(layernorm_eps=0.0), "first", n, samples=64)
    assert ln0["accuracy"] == 1.0 and ln0["cross_entropy_bits"] == pytest.approx(LN_FIRST, abs=1e-3)


def test_eps_climbs_back_towards_one_bit():
    for kind, build in (("parity", parity), ("first", first)):
        ces = [evaluate(build(layernorm_eps=1e-5), kind, n, samples=32)["cross_entropy_bits"] for n in (10, 100, 1000)]
        assert ces[0] < ces[1] < ces[2] and ces[2] > 0.8


def test_log_length_first_keeps_its_confidence():
    ces = [evaluate(first(log_length=True), "first", n, samples=32)["cross_entropy_bits"] for n in (10, 1000)]
    assert abs(ces[1] - ces[0]) < 0.01
    assert evaluate(first(), "first", 1000, samples=32)["cross_entropy_bits"] > ces[1] + 0.1


def test_full_accuracy_on_random_strings_all_lengths():
    g = torch.Generator().manual_seed(1)
    p, f = parity(layernorm_eps=0.0), first(layernorm_eps=0.0)
    for n in torch.randint(1, 1001, (6,), generator=g).tolist() + [1, 2, 1000]:
        assert evaluate(p, "parity", n, samples=32, seed=n)["accuracy"] == 1.0
        assert evaluate(f, "first", n, samples=32, seed=n)["accuracy"] == 1.0


def test_named_subspaces_and_mean_zero_residual():
    m = parity(layernorm_eps=0.0)
    R = m.residual
    assert R.d == 20 and R.i("out") == 9
    bits = torch.randint(0, 2, (4, 30))
    x = torch.cat([bits, torch.full((4, 1), 2)], 1)
    _, cache = m.run_with_cache(x)
    for name in ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post"):
        assert cache[name].mean(-1).abs().max() < 1e-12  # the mirror makes every position mean 0
    with pytest.raises(ConfigError):
        parity(n=0)
    with pytest.raises(ConfigError):
        first(layernorm_eps=-1.0)


def test_construct_cli(store, capsys):
    import json

    from theorylab.cli import main

    assert main(["construct", "parity", "--n", "1000", "--layernorm-eps", "0", "--samples", "32", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accuracy"] == 1.0 and out["cross_entropy_bits"] == pytest.approx(LN_PARITY, abs=1e-3)
    assert main(["construct", "first", "--n", "10", "--json", "--samples", "16"]) == 0
    assert json.loads(capsys.readouterr().out)["cross_entropy_bits"] == pytest.approx(first_no_ln(10), abs=1e-6)
    assert main(["construct", "dyck", "--n", "10"]) == 2
