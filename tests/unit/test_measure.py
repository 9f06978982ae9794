"""Measurement helpers: percentiles, peak FLOP rates and the counting CPU allocator."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from harness.train.measure import peak_flops, percentile


@pytest.mark.parametrize("q", [0, 10, 50, 90, 100])
def test_percentile_matches_numpy(q: float) -> None:
    values = [0.31, 0.29, 0.5, 0.3, 0.33, 0.28, 0.4]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_peak_flops_known_and_unknown_devices() -> None:
    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert peak_flops("NVIDIA H100 PCIe", "bf16") == 756e12
    assert peak_flops("AMD EPYC", "fp32") is None


COUNTER_SCRIPT = textwrap.dedent("""
    import threading, torch
    from harness.train.cpu_allocator import counting_allocator
    before = torch.empty(1 << 20, dtype=torch.uint8)  # allocated before install: never counted
    c = counting_allocator()
    c.install()
    base = c.current_bytes()
    a = torch.empty(1000, dtype=torch.uint8)
    b = torch.empty(250, dtype=torch.float32)
    assert c.current_bytes() - base == 2000, c.current_bytes()
    del b
    assert c.current_bytes() - base == 1000
    assert c.peak_bytes() - base == 2000
    c.reset_peak()
    assert c.peak_bytes() == c.current_bytes()
    del before  # freeing an uncounted tensor changes nothing
    assert c.current_bytes() - base == 1000
    other = []
    t = threading.Thread(target=lambda: other.append(torch.empty(5000, dtype=torch.uint8)))
    t.start(); t.join()
    assert c.current_bytes() - base == 1000  # another thread's tensor is not the training thread's
    holder = [a]
    del a
    t = threading.Thread(target=holder.clear)  # the owner's tensor freed on another thread still counts
    t.start(); t.join()
    assert c.current_bytes() == base, c.current_bytes()
    print("ok")
""")


def test_counting_allocator_counts_the_owner_threads_tensors() -> None:
    out = subprocess.run([sys.executable, "-c", COUNTER_SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr
