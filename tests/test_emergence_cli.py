"""`theorylab emergence fit | giant`: the toolkit from the command line, on a table of a sweep."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture()
def sweep_csv(tmp_path):
    # Schaeffer et al.'s toy model: per-token error falling as a power of N, exact match p^8 on 8-token answers,
    # edit distance L (1 - p)
    N = np.geomspace(1e2, 1e6, 11)
    p = 1 - 30 / N
    rows = ["N,accuracy,exact_match,edit_distance"] + [f"{n:.6g},{a:.6g},{a ** 30:.6g},{30 * (1 - a):.6g}"
                                                      for n, a in zip(N, p)]
    f = tmp_path / "sweep.csv"
    f.write_text("\n".join(rows) + "\n")
    return f


def test_fit_judges_exact_match_a_step_made_by_the_metric(cli, sweep_csv):
    rc, out, _ = cli("emergence", "fit", sweep_csv, "--continuous", "accuracy,edit_distance", "--per-token",
                     "accuracy", "--length", "30", "--bootstrap", "40", "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["n_points"] == 11 and d["fit"]["sharp_wins"] is True and d["fit"]["delta_aic"] > 10
    lo, hi = d["fit"]["x0_ci"]
    assert lo < d["fit"]["x0"] < hi
    assert not d["continuous"]["accuracy"]["sharp_wins"] and not d["continuous"]["edit_distance"]["sharp_wins"]
    assert d["continuous"]["accuracy"]["smooth"]["kind"] == "power_law"
    assert d["mirage"]["metric_induced"] is True and d["mirage"]["predicted_error"] < 1e-4  # the CSV keeps 6 digits
    rc, out, _ = cli("emergence", "fit", sweep_csv, "--continuous", "accuracy")
    assert rc == 0 and "step" in out and "smooth" in out


def test_giant_gives_the_thresholds(cli):
    rc, out, _ = cli("emergence", "giant", "--c", "2", "--c", "0.5", "--parts", "900,17800", "--json")
    d = json.loads(out)
    assert rc == 0 and d["giant"][0]["S"] == pytest.approx(0.7968, abs=1e-4) and d["giant"][1]["S"] == 0
    assert d["bipartite"]["critical_density"] == pytest.approx(1 / np.sqrt(900 * 17800))


@pytest.mark.parametrize("args,needle", [
    (["--metric", "nope"], "no 'nope' column"),
    (["--per-token", "accuracy"], "--per-token and --length go together"),
    (["--holdout", "0"], "--holdout"),
    (["--bootstrap", "-1"], "--bootstrap"),
])
def test_bad_fit_input_is_one_line_and_exit_2(cli, sweep_csv, args, needle):
    rc, _, err = cli("emergence", "fit", sweep_csv, *args)
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_bad_files_and_thresholds(cli, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("N,exact_match\n10,0.1\n20,oops\n")
    rc, _, err = cli("emergence", "fit", bad)
    assert rc == 2 and "line 3" in err
    rc, _, err = cli("emergence", "fit", tmp_path / "missing.csv")
    assert rc == 2 and "does not exist" in err
    rc, _, err = cli("emergence", "giant")
    assert rc == 2 and "--c" in err
    rc, _, err = cli("emergence", "giant", "--parts", "9")
    assert rc == 2 and "--parts" in err
    rc, _, err = cli("emergence", "giant", "--c", "-1")
    assert rc == 2 and "mean degree" in err


def test_a_byte_order_mark_and_short_rows(cli, tmp_path):
    f = tmp_path / "bom.csv"
    N = np.geomspace(1e2, 1e6, 9)
    f.write_bytes(("\ufeffN,exact_match\n" + "".join(f"{n:.6g},{(1 - 30 / n) ** 30:.6g}\n" for n in N))
                  .encode("utf-8"))
    rc, out, _ = cli("emergence", "fit", f, "--bootstrap", "0", "--json")
    assert rc == 0 and json.loads(out)["n_points"] == 9
    short = tmp_path / "short.csv"
    short.write_text("N,exact_match\n10,0.1\n20\n")
    rc, _, err = cli("emergence", "fit", short)
    assert rc == 2 and "line 3" in err and "no 'exact_match' value" in err


@pytest.mark.parametrize("args,needle", [
    (["--bootstrap", "5"], "at least 20"),
    (["--continuous", "exact_match"], "the judged metric itself"),
    (["--x", "exact_match"], "is the scale axis"),
    (["--min-step", "-1"], "--min-step"),
])
def test_more_bad_options(cli, sweep_csv, args, needle):
    rc, _, err = cli("emergence", "fit", sweep_csv, *args)
    assert rc == 2 and needle in err


def test_a_flat_metric_is_smooth_and_its_note_is_printed(cli, tmp_path):
    f = tmp_path / "flat.csv"
    f.write_text("N,exact_match\n" + "".join(f"{n:.6g},0.3\n" for n in np.geomspace(1e2, 1e6, 13)))
    rc, out, _ = cli("emergence", "fit", f, "--bootstrap", "0")
    assert rc == 0 and "smooth" in out and "constant" in out
