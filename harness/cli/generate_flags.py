"""The generate workload's flags (run, sweep, estimate, simulate): --workload and what a generation run is made
of; valid values in harness/core/knobs.py, defaults from RunSpec."""

from __future__ import annotations

import argparse

from harness.cli.flags import _Adder, int_arg
from harness.core.knobs import KV_CACHES, OFFLOADS, WORKLOADS
from harness.core.spec import RunSpec


def generate_flags(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    d, add = RunSpec(), _Adder(p.add_argument_group("generation (--workload generate)"), sweep)
    add("--workload", d.workload, f"{', '.join(WORKLOADS)}: a training step, or load + prefill + decode")
    add("--prompt-len", d.prompt_len, "prompt tokens per sequence (random, from the seed)", type=int_arg)
    add("--new-tokens", d.new_tokens, "tokens decoded per sequence after the prompt", type=int_arg)
    add("--num-beams", d.num_beams, "1: greedy decoding; N: beam search with N beams per prompt", type=int_arg)
    add("--kv-cache", d.kv_cache, f"{', '.join(KV_CACHES)}: pre-allocated for prompt + new tokens, or grown per "
        "token")
    add("--offload", d.offload, f"{', '.join(OFFLOADS)}: weights kept in host memory or on disk, brought to the "
        "device module by module")
