"""Pure helpers of the measurement code."""

from __future__ import annotations

import numpy as np
import pytest

from harness.measure import peak_flops, percentile, window_peak


@pytest.mark.parametrize("q", [0, 10, 50, 90, 100])
def test_percentile_matches_numpy(q: float) -> None:
    values = [0.31, 0.29, 0.5, 0.3, 0.33, 0.28, 0.4]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_window_peak_counts_the_level_at_window_start() -> None:
    events = [(0, 100), (1, 50), (2, -50), (5, 30), (6, -30), (9, 1000)]
    assert window_peak(events, (3, 7)) == 130  # 100 live at start + 30 allocated inside
    assert window_peak(events, (0, 2)) == 150
    assert window_peak(events, (3, 4)) == 100  # nothing happens inside: the level is the peak


def test_peak_flops_known_and_unknown_devices() -> None:
    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert peak_flops("NVIDIA H100 PCIe", "bf16") == 756e12
    assert peak_flops("AMD EPYC", "fp32") is None
