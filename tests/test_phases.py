"""Phase detection on synthetic grokking curves (theorylab.measures.phases)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from theorylab.errors import TheoryLabError
from theorylab.measures.phases import detect_phases, first_crossing


def _curves(t_mem=1000, collapse_mid=6000, width=600.0, no_collapse=False):
    steps = np.arange(0, 12001, 100)
    train_acc = 1 / (1 + np.exp(-(steps - t_mem + 300) / 80))
    # test loss: rises to a peak at ~1500, plateaus, collapses (in log space) around collapse_mid to 1e-4
    log_hi, log_lo = math.log(20.0), math.log(1e-4)
    rise = np.log(4.6) + (log_hi - np.log(4.6)) * np.clip(steps / 1500, 0, 1)
    fall = (log_hi - log_lo) / (1 + np.exp(-(steps - collapse_mid) / width))
    log_test = rise - (0 if no_collapse else fall)
    return steps, train_acc, np.exp(log_test)


def test_boundaries_on_synthetic_grokking():
    steps, acc, tl = _curves()
    ph = detect_phases(steps, acc, tl)
    assert ph.memorization_end.step == first_crossing(steps, acc, 0.99)
    assert 900 <= ph.memorization_end.step <= 1200
    # f = 0.1 and 0.9 of a logistic fall centred at 6000 with width 600: 6000 -+ 600 ln 9 ~ 4682 / 7318
    assert abs(ph.circuit_formation_end.step - 6000 + 600 * math.log(9)) <= 150
    assert abs(ph.cleanup_end.step - 6000 - 600 * math.log(9)) <= 150
    assert ph.in_order
    assert "train accuracy" in ph.memorization_end.rule and "10%" in ph.circuit_formation_end.rule
    d = ph.to_dict()
    assert d["cleanup_end"]["step"] == ph.cleanup_end.step


def test_boundaries_move_with_the_curves():
    a = detect_phases(*_curves(collapse_mid=5000))
    b = detect_phases(*_curves(collapse_mid=9000))
    assert b.circuit_formation_end.step - a.circuit_formation_end.step == pytest.approx(4000, abs=200)
    assert b.cleanup_end.step - a.cleanup_end.step == pytest.approx(4000, abs=200)


def test_transient_dip_does_not_end_circuit_formation():
    steps, acc, tl = _curves()
    ref = detect_phases(steps, acc, tl)
    spiky = tl.copy()
    i = int(np.searchsorted(steps, 3000))
    spiky[i] = spiky[i] / 30.0  # a one-evaluation dip well past 10% of the log fall, then back up
    spiky[i + 5] = spiky[i + 5] / 3.0  # and a smaller one later, still during the plateau
    ph = detect_phases(steps, acc, spiky)
    assert ph.circuit_formation_end.step == ref.circuit_formation_end.step
    assert ph.cleanup_end.step == ref.cleanup_end.step
    assert "from which on" in ph.circuit_formation_end.rule


def test_no_collapse_no_cleanup():
    ph = detect_phases(*_curves(no_collapse=True))
    assert ph.memorization_end.step is not None
    assert ph.circuit_formation_end.step is None and ph.cleanup_end.step is None
    assert not ph.in_order and any("no collapse" in n for n in ph.notes)


def test_no_memorization():
    steps, acc, tl = _curves()
    ph = detect_phases(steps, acc * 0.5, tl)
    assert ph.steps == (None, None, None)


def test_bad_input():
    with pytest.raises(TheoryLabError, match="equal length"):
        detect_phases([0, 1], [0.0], [1.0, 2.0])
    with pytest.raises(TheoryLabError, match="start_frac"):
        detect_phases([0], [1.0], [1.0], start_frac=0.9, end_frac=0.1)
