"""The cadence of bursts: update instants shared by every process, presence writes just before them."""

from __future__ import annotations

import pytest

from presence.core.cadence import LEAD_S, next_instant, next_write


def test_an_instant_is_a_multiple_of_the_window_in_wall_time() -> None:
    assert next_instant(10.0, 0.05, 0.0) == pytest.approx(10.0)  # on an instant: itself
    assert next_instant(10.001, 0.05, 0.0) == pytest.approx(10.05)
    assert next_instant(10.049, 0.05, 0.0) == pytest.approx(10.05)
    # Another process's loop clock, 3.02 s behind the wall clock: the same wall-clock instant.
    assert next_instant(10.001 - 3.02, 0.05, 3.02) + 3.02 == pytest.approx(10.05)


def test_float_error_never_skips_an_instant() -> None:
    for k in range(1, 2000):
        t = k * 0.05
        assert next_instant(t, 0.05, 0.0) == pytest.approx(t)
        assert next_write(t - LEAD_S, 0.05, 0.0) == pytest.approx(t - LEAD_S)


def test_a_write_comes_a_lead_before_an_instant_and_never_early() -> None:
    at = next_write(10.06, 0.05, 0.0)
    assert at >= 10.06 and at == pytest.approx(10.1 - LEAD_S)
    # A window shorter than two leads: half a window before the instant.
    assert next_write(10.001, 0.01, 0.0) == pytest.approx(10.005)


def test_no_window_no_cadence() -> None:
    assert next_instant(10.0123, 0, 5.0) == 10.0123
    assert next_write(10.0123, 0, 5.0) == 10.0123
