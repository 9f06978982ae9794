"""The decoder families' official config.json files (tests/data/configs), shrunk with --set, measured end to end
on `single` with the estimate and the simulation beside it: the run trains the model the config describes, and
predict and simulate hold their bounds on it (docs/accuracy.md: 5% and 1%).  Four configs hold every family
field between them (Qwen2.5: biases; Qwen3: q/k norms; Gemma 2: Gemma's GeGLU, tied and scaled embeddings and
(1 + w) norms, plus sandwich norms, softcapping and alternate windows; Phi-3: a window on every layer); Llama,
Mistral and Gemma are trained on CPU in tests/unit/test_families.py."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from harness.models.hf_config import apply_sets, from_hf_config

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"
# a small shape with a head width of its own and a window shorter than the 16-token sequence
SHRINK = ["n_layers=2", "dim=128", "n_heads=4", "n_kv_heads=2", "ffn_dim=256", "vocab_size=512", "head_dim=24",
          "sliding_window=5"]


@pytest.mark.parametrize("name", ["Qwen2.5-7B", "Qwen3-8B", "gemma-2-9b", "Phi-3-mini-4k-instruct"])
def test_a_shrunken_family_model_trains_and_is_predicted(name: str) -> None:
    config = CONFIGS / name / "config.json"
    args = ["run", "--model-config", str(config), *[a for s in SHRINK for a in ("--set", s)], "--strategy", "single",
            "--seq-len", "16", "--batch-size", "2", "--warmup", "1", "--steps", "2", "--no-store", "--json",
            "--predict", "--simulate"]
    result = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["status"] == "ok", row["error"]
    assert row["trainable_params"] == apply_sets(from_hf_config(config), SHRINK).param_count()
    assert math.isfinite(row["loss"])
    assert abs(row["predicted_peak_bytes"] / row["peak_bytes"] - 1) <= 0.05
    assert abs(row["simulated_peak_bytes"] / row["peak_bytes"] - 1) <= 0.01
