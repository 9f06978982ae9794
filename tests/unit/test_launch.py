"""How a run that produced no result is classified from its exit and output."""

from __future__ import annotations

import pytest

from harness.run.launch import classify


@pytest.mark.parametrize("code,text,status", [
    (1, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate", "oom"),
    (-9, "", "oom"),
    (1, "RuntimeError: boom", "error"),
])
def test_classify(code: int, text: str, status: str) -> None:
    assert classify(code, text) == status
