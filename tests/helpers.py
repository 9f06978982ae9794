"""What several test modules share: the quick spec runs start from, a skip for an optional extra, the
`spacetime` command in a subprocess, and a Hugging Face config to write."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.core.spec import RunSpec

# tiny, short sequences, one memory step and two timed ones: seconds per run on a 2-core CPU
QUICK = RunSpec(model="tiny", seq_len=16, warmup=1, memory_steps=1, steps=2)

# TinyLlama-1.1B's config.json, and overrides that shrink it to a few hundred thousand parameters
TINYLLAMA = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632, "num_attention_heads": 32,
             "num_hidden_layers": 22, "num_key_value_heads": 4, "vocab_size": 32000}
SMALL = ["num_hidden_layers=2", "hidden_size=128", "intermediate_size=256", "num_attention_heads=4",
         "num_key_value_heads=2", "vocab_size=512"]


def needs(package: str) -> pytest.MarkDecorator:
    """Skip where an optional extra is not installed, saying how to get it."""
    return pytest.mark.skipif(importlib.util.find_spec(package) is None,
                              reason=f"{package} is an optional extra: pip install 'spacetime[{package}]'")


def spacetime(*args: str, store: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`spacetime ARGS` in a process of its own (`python -m harness.cli`), with $SPACETIME_STORE set to `store`."""
    env = dict(os.environ, SPACETIME_STORE=str(store)) if store else dict(os.environ)
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def write_config(tmp_path: Path, data: dict[str, Any], name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path
