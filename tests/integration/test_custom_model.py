"""A Hugging Face config.json, shrunk with --set, measured end to end through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.models.hf_config import apply_sets, from_hf_config
from tests.helpers import SMALL, TINYLLAMA, write_config


def test_cli_runs_a_custom_model_end_to_end(tmp_path: Path) -> None:
    config = write_config(tmp_path, TINYLLAMA)
    args = ["run", "--model-config", str(config), *[a for s in SMALL for a in ("--set", s)], "--seq-len", "16",
            "--batch-size", "2", "--warmup", "1", "--steps", "1", "--no-store", "--json"]
    result = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["status"] == "ok" and row["model"].startswith(tmp_path.name + "[n_layers=2,")
    assert json.loads(row["model_config"])["n_kv_heads"] == 2
    assert row["trainable_params"] == apply_sets(from_hf_config(config), SMALL).param_count()
