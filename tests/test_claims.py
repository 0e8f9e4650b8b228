"""The claims registry, verdict logic on synthetic evidence, the engine and its stored results."""

from __future__ import annotations

import json
import math

import matplotlib
import pytest

matplotlib.use("Agg")

import theorylab.claims.engine as engine  # noqa: E402
from theorylab.claims import (  # noqa: E402
    CLAIMS,
    Citation,
    Claim,
    Criterion,
    Tier,
    all_of,
    claim_ids,
    get_claim,
    summarize,
)
from theorylab.claims.base import TIERS  # noqa: E402
from theorylab.cli import main  # noqa: E402
from theorylab.errors import ConfigError, TheoryLabError  # noqa: E402
from theorylab.store import Store  # noqa: E402

# --------------------------------------------------------------------------- registry


def test_registry_ids_unique_and_fields_declared():
    ids = claim_ids()
    assert len(ids) == len(set(ids)) >= 2
    assert "power2022.weight_decay_needed" in ids and "power2022.fraction_delay" in ids
    for cid in ids:
        c = get_claim(cid)
        assert c.id == cid
        for attr in ("title", "statement"):
            assert isinstance(getattr(c, attr), str) and getattr(c, attr).strip(), (cid, attr)
        assert isinstance(c.citation, Citation) and c.citation.year > 1900 and c.citation.authors
        assert c.rule.criteria, cid
        for crit in c.rule.criteria:
            assert crit.op in (">=", "<=", ">", "<") and math.isfinite(crit.threshold)
        assert set(c.tiers) <= set(TIERS) and "smoke" in c.tiers and "quick" in c.tiers
        assert all(int(n) >= 1 for n in c.seeds.values())


def test_quick_tiers_run_at_least_three_seeds():
    for cid in ("power2022.weight_decay_needed", "power2022.fraction_delay"):
        assert get_claim(cid).seeds["quick"] >= 3


def test_modular_claims_thresholds_have_reasons_and_configs_validate():
    for cid in ("power2022.weight_decay_needed", "power2022.fraction_delay"):
        c = get_claim(cid)
        assert all(len(cr.why) > 20 for cr in c.rule.criteria)
        for tier in c.tiers:
            runs = c.experiment(tier, 0)
            assert len(runs) == 2
            assert {r.task.name for r in runs.values()} == {"modular"}
    wd = get_claim("power2022.weight_decay_needed").experiment("quick", 1)
    assert wd["wd"].train.weight_decay == 1.0 and wd["no_wd"].train.weight_decay == 0.0
    assert wd["wd"].train.steps == wd["no_wd"].train.steps  # one fixed budget
    fr = get_claim("power2022.fraction_delay").experiment("quick", 1)
    assert fr["large"].task.train_fraction > fr["small"].task.train_fraction
    # the two claims share the large-fraction weight-decay run: the store trains it once
    assert fr["large"].run_id() == wd["wd"].run_id()


def test_register_rejects_bad_declarations():
    from theorylab.claims import register_claim

    class NoRule(Claim):
        id = "bad2024.no_rule"
        title = "t"
        citation = Citation("A", 2024, "T")
        statement = "s"

    with pytest.raises(ValueError, match="rule"):
        register_claim(NoRule)

    class BadId(NoRule):
        id = "Not An Id"
        rule = all_of(Criterion("x", ">=", 1))

    with pytest.raises(ValueError, match="author2023"):
        register_claim(BadId)

    class Dup(NoRule):
        id = "power2022.weight_decay_needed"
        rule = all_of(Criterion("x", ">=", 1))

    with pytest.raises(ValueError, match="twice"):
        register_claim(Dup)


# --------------------------------------------------------------------------- verdicts on synthetic evidence


class _Synthetic(Claim):
    """A data-free claim whose per-seed values come from a table (no training)."""

    id = "synthetic2024.table"
    title = "Synthetic <b>claim</b> & friends"
    citation = Citation("Ada Lovelace and Alan Turing", 2024, "A <i>synthetic</i> paper", arxiv="2401.00001")
    statement = "x is at least 0.5 <script>alert('x')</script>"
    rule = all_of(Criterion("x", ">=", 0.5, why="a 'why' with <tags> & ampersands"))
    tiers = {"smoke": Tier(faithful=True), "quick": Tier()}
    seeds = {"smoke": 3, "quick": 3}
    table: dict[int, dict] = {}

    def measure(self, tier, seed, runs):
        return dict(self.table.get(seed, {}))

    def figures(self, evidence):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot(evidence.seeds, evidence.values("x") or [0] * len(evidence.seeds))
        ax.set_xlabel("seed")
        ax.set_ylabel("x (units)")
        return {"x by seed": fig}


def _decide(values: list[float], crit: Criterion):
    claim = _Synthetic()
    rule = all_of(crit)
    seeds = list(range(len(values)))
    measured = {s: {"x": v} for s, v in zip(seeds, values)}
    claim.rule = rule  # instance attribute shadows the class rule
    ev, verdict, reasons = engine.evaluate(claim, "smoke", seeds, {}, measured)
    return verdict, ev.stats["x"], reasons


def test_verdict_supported_refuted_inconclusive():
    c = Criterion("x", ">=", 0.5)
    v, st, _ = _decide([0.9, 0.92, 0.91], c)
    assert v == "supported" and st.lo > 0.5
    v, st, _ = _decide([0.1, 0.12, 0.11], c)
    assert v == "refuted" and st.hi < 0.5
    v, st, reasons = _decide([0.2, 0.9, 0.55], c)  # a wide interval straddling the threshold
    assert v == "inconclusive" and st.lo < 0.5 < st.hi
    assert "straddles" in reasons[0]


def test_verdict_decided_from_interval_not_one_seed():
    # the mean is above 0.5, but one seed below it and the spread make the interval straddle
    v, st, _ = _decide([0.95, 0.2, 0.9], Criterion("x", ">=", 0.5))
    assert st.mean > 0.5 and v == "inconclusive"


def test_verdict_edge_cases():
    ge = Criterion("x", ">=", 0.5)
    # one seed: the interval is unbounded, so nothing is decided
    v, st, _ = _decide([0.99], ge)
    assert v == "inconclusive" and st.n == 1 and math.isinf(st.lo)
    # zero spread: the interval is the point itself
    v, st, _ = _decide([0.7, 0.7, 0.7], ge)
    assert v == "supported" and st.sd == 0 and st.lo == st.hi == 0.7
    v, st, _ = _decide([0.7] * 3, Criterion("x", ">=", 0.7))  # identical seeds: no rounding noise
    assert v == "supported" and st.mean == 0.7
    v, _, _ = _decide([0.5, 0.5], ge)  # exactly on a non-strict threshold
    assert v == "supported"
    v, _, _ = _decide([0.5, 0.5], Criterion("x", ">", 0.5))  # and on a strict one
    assert v == "refuted"
    # NaN in any seed: no finite interval
    v, st, reasons = _decide([0.9, float("nan"), 0.95], ge)
    assert v == "inconclusive" and math.isinf(st.hi)
    # <= direction
    v, _, _ = _decide([0.1, 0.11, 0.09], Criterion("x", "<=", 0.5))
    assert v == "supported"


def test_missing_quantity_and_refuted_wins():
    claim = _Synthetic()
    claim.rule = all_of(Criterion("x", ">=", 0.5), Criterion("y", "<=", 1.0))
    measured = {0: {"x": 0.9}, 1: {"x": 0.9}}
    _, verdict, reasons = engine.evaluate(claim, "smoke", [0, 1], {}, measured)
    assert verdict == "inconclusive" and any("y: not measured" in r for r in reasons)
    measured = {0: {"x": 0.1, "y": 0.0}, 1: {"x": 0.1, "y": 0.0}}
    _, verdict, _ = engine.evaluate(claim, "smoke", [0, 1], {}, measured)
    assert verdict == "refuted"


def test_numbers_become_stats_and_others_series():
    import numpy as np

    claim = _Synthetic()
    measured = {0: {"x": np.float32(0.75), "n": 3, "flag": True, "curve": [1, 2, 3]},
                1: {"x": 0.8, "n": 4, "flag": False, "curve": {"a": 1}}}
    ev, verdict, _ = engine.evaluate(claim, "smoke", [0, 1], {}, measured)
    assert set(ev.stats) == {"x", "n", "flag"}
    assert ev.series[0] == {"curve": [1, 2, 3]} and ev.series[1] == {"curve": {"a": 1}}
    assert ev.stats["n"].values == [3.0, 4.0]


def test_summarize_matches_t_interval():
    from scipy import stats

    st = summarize("q", [1.0, 2.0, 3.0, 4.0])
    half = stats.t.ppf(0.975, 3) * st.sd / 2
    assert st.mean == 2.5 and st.lo == pytest.approx(2.5 - half) and st.hi == pytest.approx(2.5 + half)


# --------------------------------------------------------------------------- the engine and the store


@pytest.fixture
def synthetic():
    from theorylab.claims import register_claim

    register_claim(_Synthetic)
    _Synthetic.table = {0: {"x": 0.8, "curve": [1, 2]}, 1: {"x": 0.81, "curve": [3]}, 2: {"x": float("nan")}}
    yield CLAIMS[_Synthetic.id]
    CLAIMS.pop(_Synthetic.id, None)


def test_check_data_free_claim_and_store_round_trip(synthetic, tmp_path):
    store = Store(tmp_path)
    res = engine.check(_Synthetic.id, tier="smoke", seeds=[0, 1, 2], backend="inprocess", store=store)
    assert res.verdict == "inconclusive"  # seed 2 measured NaN
    assert res.seeds == [0, 1, 2] and res.result_id is not None
    assert res.rule == "x >= 0.5 [mean over seeds, Student-t 95% interval] (a 'why' with <tags> & ampersands)"
    assert res.figures and all(p.endswith(".png") for p in res.figures.values())
    fig_path = next(iter(res.figures.values()))
    assert (tmp_path / "claims" / _Synthetic.id / "smoke") in __import__("pathlib").Path(fig_path).parents
    assert open(fig_path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    for key in ("python", "torch", "numpy", "theorylab"):
        assert key in res.versions
    assert res.device and res.created > 0 and res.wall_seconds > 0

    (back,) = engine.results(store, _Synthetic.id)
    assert back.verdict == res.verdict and back.seeds == res.seeds and back.rule == res.rule
    assert back.per_seed[0]["x"] == 0.8 and math.isnan(back.per_seed[2]["x"])
    assert math.isnan(back.stats["x"]["mean"]) and back.stats["x"]["values"][:2] == [0.8, 0.81]
    assert back.figures == res.figures and back.citation["arxiv"] == "2401.00001"
    # the stored row is plain JSON (no NaN tokens)
    with store.connect() as con:
        raw = con.execute("SELECT result FROM claim_results").fetchone()[0]
    json.loads(raw, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))

    res2 = engine.check(_Synthetic.id, tier="smoke", seeds=2, backend="inprocess", store=store)
    assert res2.verdict == "supported" and res2.seeds == [0, 1]
    assert engine.last_result(_Synthetic.id, store).result_id == res2.result_id
    assert len(engine.results(store, _Synthetic.id, latest=False)) == 2


def test_check_rejects_bad_arguments_before_writing(synthetic, tmp_path):
    store = Store(tmp_path / "s")
    with pytest.raises(ConfigError, match="tier"):
        engine.check(_Synthetic.id, tier="full", store=store)
    with pytest.raises(ConfigError, match="backend"):
        engine.check(_Synthetic.id, tier="smoke", backend="gpu-farm", store=store)
    with pytest.raises(ConfigError, match="seeds"):
        engine.check(_Synthetic.id, tier="smoke", seeds=0, store=store)
    with pytest.raises(ConfigError, match="seeds"):
        engine.check(_Synthetic.id, tier="smoke", seeds=[-1], store=store)
    with pytest.raises(TheoryLabError, match="unknown"):
        engine.check("nobody2024.nothing", store=store)
    assert not (tmp_path / "s").exists()


def _tiny_claim_cls():
    from theorylab.config import validate
    from theorylab.runs import RunConfig

    class Tiny(Claim):
        id = "tiny2024.trains"
        title = "A tiny run trains"
        citation = Citation("Nobody", 2024, "Nothing")
        statement = "Train loss after a few steps is finite."
        rule = all_of(Criterion("final_train_loss", "<", 100.0, why="finite"))
        tiers = {"smoke": Tier()}
        seeds = {"smoke": 2}

        def experiment(self, tier, seed):
            data = {"task": {"name": "modular", "p": 5, "train_fraction": 0.6},
                    "model": {"n_layers": 1, "d_model": 8, "n_heads": 2, "d_mlp": 16},
                    "train": {"steps": 6, "eval_every": 3, "lr": 1e-2}, "seed": seed}
            return {"main": validate(RunConfig, data)}

        def measure(self, tier, seed, runs):
            v = runs["main"]
            steps, losses = v.series("train", "loss")
            assert v.status == "finished" and steps == [0, 3, 6]
            return {"final_train_loss": v.final["train/loss"], "curve": losses}

    return Tiny


@pytest.mark.slow
def test_check_trains_then_reuses_runs(tmp_path):
    from theorylab.claims import register_claim

    cls = register_claim(_tiny_claim_cls())
    try:
        store = Store(tmp_path)
        r1 = engine.check(cls.id, tier="smoke", backend="inprocess", store=store)
        assert r1.verdict == "supported" and r1.runs_trained == 2 and r1.runs_reused == 0
        ids = [r1.run_ids[s]["main"] for s in r1.seeds]
        assert len(set(ids)) == 2 and all(store.get_run(i).status == "finished" for i in ids)
        assert r1.configs[0]["main"]["seed"] == 0 and r1.configs[1]["main"]["seed"] == 1
        r2 = engine.check(cls.id, tier="smoke", backend="local", store=store)
        assert r2.runs_trained == 0 and r2.runs_reused == 2
        assert r2.stats["final_train_loss"]["values"] == r1.stats["final_train_loss"]["values"]
        r3 = engine.check(cls.id, tier="smoke", backend="inprocess", store=store, force=True)
        assert r3.runs_trained == 2
        assert r3.stats["final_train_loss"]["values"] == r1.stats["final_train_loss"]["values"]  # deterministic
        assert len(store.list_runs()) == 2
    finally:
        CLAIMS.pop(cls.id, None)


def test_claims_only_declare_runs_and_the_result_records_what_ran(tmp_path):
    """The sweep executes a claim's runs; the stored result says which backend, how many workers, which
    stepper and which commit trained them.  Stacking seeds trains other runs (the stepper is part of a
    run's identity) and is recorded as such."""
    from theorylab.claims import register_claim
    from theorylab.claims.base import Claim as Base

    assert not hasattr(Base, "execute")
    cls = _tiny_claim_cls()
    cls.id = "tiny2024.executed"
    register_claim(cls)
    store = Store(tmp_path)
    try:
        res = engine.check(cls.id, tier="smoke", backend="inprocess", store=store, stack=False)
        assert res.verdict == "supported" and res.runs_trained == 2
        assert res.backend == "inprocess" and res.workers == 1 and res.steppers == ["single"]
        assert set(res.run_commits) == {r["main"] for r in res.run_ids.values()}
        stored = engine.results(store, cls.id)[-1]
        assert stored.steppers == ["single"] and stored.backend == "inprocess"
        again = engine.check(cls.id, tier="smoke", backend="local", store=store, stack=False)
        assert again.runs_trained == 0 and again.runs_reused == 2
        stacked = engine.check(cls.id, tier="smoke", backend="inprocess", store=store, stack=True)
        assert stacked.runs_trained == 2 and stacked.steppers == ["stacked"]
        assert {r["main"] for r in stacked.run_ids.values()}.isdisjoint({r["main"] for r in res.run_ids.values()})
        assert stacked.stat("final_train_loss").mean == pytest.approx(res.stat("final_train_loss").mean, rel=1e-4)
    finally:
        CLAIMS.pop(cls.id, None)


# --------------------------------------------------------------------------- CLI


def test_cli_claims_check_and_errors(synthetic, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("THEORYLAB_HOME", str(tmp_path))
    assert main(["claims", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["claims"]
    row = next(r for r in rows if r["id"] == _Synthetic.id)
    assert row["last_verdict"] is None and row["citation"] == "Ada Lovelace et al. (2024)"
    assert row["tiers"] == ["smoke", "quick"] and "x >= 0.5" in row["rule"]

    assert main(["check", _Synthetic.id, "--tier", "smoke", "--seeds", "2", "--backend", "inprocess", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (r,) = out["results"]
    assert r["verdict"] == "supported" and r["seeds"] == [0, 1] and r["stats"]["x"]["n"] == 2

    assert main(["claims", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["claims"]
    assert next(r for r in rows if r["id"] == _Synthetic.id)["last_verdict"] == "supported"

    for argv, word in ((["check", _Synthetic.id, "--tier", "huge"], "--tier"),
                       (["check", _Synthetic.id, "--backend", "mpi"], "--backend"),
                       (["check"], "ids"), (["check", "--all", _Synthetic.id], "ids"),
                       (["check", _Synthetic.id, "--seeds", "0"], "--seeds"),
                       (["check", "nobody2024.x", "--tier", "smoke"], "unknown")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("theorylab: error:") and word in err and err.count("\n") == 1


def test_claim_tiers_are_typed():
    """Each claim family's tiers are a pydantic model: an unknown or misspelt key is one ConfigError line."""
    from theorylab.claims import register_claim
    from theorylab.claims.base import tiers_of
    from theorylab.claims.papers.olsson2022 import InductionTier
    from theorylab.errors import ConfigError

    with pytest.raises(ConfigError, match="tier quick: stpes: unknown key"):
        tiers_of(InductionTier, {"quick": {"vocab": 64, "period": 16, "min_period": 8, "d_model": 64, "steps": 800,
                                           "stpes": 3, "eval_every": 20, "n_test": 256}})
    with pytest.raises(ConfigError, match="tier smoke: d_model"):
        tiers_of(InductionTier, {"smoke": {"vocab": 64, "period": 16, "min_period": 8, "d_model": "wide",
                                           "steps": 800, "eval_every": 20, "n_test": 256}})
    for cid in claim_ids():
        c = get_claim(cid)
        assert c.tiers and all(isinstance(t, Tier) and type(t) is not Tier for t in c.tiers.values()), cid
    p = get_claim("olsson2022.induction_head_forms").params("quick")
    assert p["steps"] == p.steps == 1500 and dict(**p)["vocab"] == 64 and "faithful" not in p.keys()

    class Untyped(Claim):
        id = "untyped2024.dict_tiers"
        title, statement = "t", "s"
        citation = Citation("Nobody", 2024, "Nothing")
        rule = all_of(Criterion("x", ">=", 0.0))
        tiers = {"smoke": {"steps": 3}}

    with pytest.raises(ValueError, match="must be a Tier"):
        register_claim(Untyped)
    assert "untyped2024.dict_tiers" not in CLAIMS


def test_check_many_trains_every_claims_runs_in_one_sweep(store):
    """Runs shared by claims train once, in one sweep before any claim is measured; each result still says
    which of its runs were trained now and which came from the store."""
    from theorylab.claims.engine import check, check_many

    ids = ["olsson2022.induction_head_forms", "olsson2022.one_layer_no_induction"]
    a, b = check_many(ids, "smoke", seeds=1, store=store)
    assert a.run_ids == {0: {"two_layer": b.run_ids[0]["two_layer"]}}  # the shared two-layer run
    assert (a.runs_trained, a.runs_reused) == (1, 0) and (b.runs_trained, b.runs_reused) == (2, 0)
    assert len(store.list_runs()) == 2
    again = check(ids[1], "smoke", seeds=1, store=store)
    assert (again.runs_trained, again.runs_reused) == (0, 2) and again.verdict == b.verdict
