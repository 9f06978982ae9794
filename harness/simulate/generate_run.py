"""The simulated generation (part of `simulate --workload generate`, harness/simulate/generate_runner.py): rank 0
of a fake process group loads the zoo model with the strategy's own `wrap_generate` under fake mode and the
stand-ins, then runs the real generation loop (harness/models/generate.py) under the tracker, phase by phase as
a measured run does (harness/train/generate_measure.py): the figure after loading, a short warm-up generation,
then one generation whose prefill and decode peaks are taken apart, and the KV cache's bytes at its end.  Which
decode steps run the blocks in full: harness/simulate/decode_steps.py."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any, cast

import torch
import torch._dynamo  # noqa: F401  # the model's meta initialisation imports it: here it loads with the rest
from torch import nn

from harness.core.memory import CUDA_CONTEXT_BYTES
from harness.core.progress import current
from harness.core.spec import RunSpec
from harness.models.generate import Generation, generation_steps, new_cache, prompts
from harness.models.llama import build_model
from harness.models.zoo import config_for
from harness.simulate.cpu_scratch import run_threads
from harness.simulate.decode_steps import ENDS, SteppedModel
from harness.simulate.fake_mode import SimFakeMode
from harness.simulate.fake_run import fake_world
from harness.simulate.phase_tracker import PhaseTracker
from harness.simulate.quant_stand_ins import kept_beside_weights
from harness.simulate.stand_ins import stand_ins
from harness.train.generate_measure import generate_dtype
from strategies import get_strategy

WARMUP_TOKENS = 2  # the measured run's warm-up generation (generate_measure.measure_generation)


def _rank_prompts(spec: RunSpec, dp: int, vocab: int) -> torch.Tensor:
    """Rank 0's rows of the global batch, made as a measured rank makes them (the whole batch stays alive
    behind the slice: harness/run/generate_worker.py, rank_prompts)."""
    every = prompts(spec.seed, spec.batch_size * dp, spec.prompt_len, vocab)
    return every[:spec.batch_size]


def _generation(model: Any, prompt: torch.Tensor, spec: RunSpec, new_tokens: int, kv_heads: int,
                out: Generation, ends: int | None) -> Any:
    rows, max_len = prompt.shape[0] * spec.num_beams, prompt.shape[1] + new_tokens
    cache = new_cache(model, spec.kv_cache, rows, max_len, generate_dtype(spec), prompt.device, kv_heads)
    stepped = cast(nn.Module, SteppedModel(model, new_tokens, ends))
    return generation_steps(stepped, prompt, new_tokens, spec.num_beams, cache, out)


def _memory_pass(model: Any, prompt: torch.Tensor, spec: RunSpec, kv_heads: int, tracker: PhaseTracker,
                 ends: int | None) -> dict[str, int]:
    """generate_measure.memory_pass on the tracker: the prefill's peak (the cache, the prompt's forward, the
    first token), then the decode steps' peak, and the cache's bytes at the end."""
    out = Generation()
    tracker.reset_peak()
    steps = _generation(model, prompt, spec, spec.new_tokens, kv_heads, out, ends)
    current().show("simulate: prefill")
    next(steps)
    prefill = tracker.peak()
    tracker.reset_peak()
    decode = tracker.now()
    for i, _ in enumerate(steps):
        current().show(f"simulate: decode step {i + 1}/{spec.new_tokens - 1}")
    if spec.new_tokens > 1:
        decode = tracker.peak()
    assert out.cache is not None
    return {"prefill_peak_bytes": prefill, "decode_peak_bytes": decode, "kv_cache_bytes": out.cache.nbytes()}


def generation_peaks(spec: RunSpec, device: str, ends: int | None = ENDS) -> dict[str, int]:
    """Rank 0's load bytes, prefill and decode peaks and KV cache bytes for `spec` on a `device` target; the
    blocks run in full in the first and last `ends` decode steps (None: in every step)."""
    strategy = get_strategy(spec.strategy)
    layout = strategy.layout(spec)
    cfg = config_for(spec)
    current().show(f"simulate: build {spec.model} on the meta device")
    meta = build_model(cfg, spec.prompt_len + spec.new_tokens).to(generate_dtype(spec))
    tracker = PhaseTracker(run_threads(spec.nproc) if device == "cpu" else 0)
    kv_heads = cfg.n_kv_heads // layout.tp
    with fake_world(spec) as world, ExitStack() as stack, torch.no_grad():
        for stand_in in stand_ins(device, tracker.making_comm, tracker.mark_grad_shard):
            stack.enter_context(stand_in)
        stack.enter_context(SimFakeMode(allow_non_fake_inputs=True))
        current().show(f"simulate: load it ({spec.strategy}) under fake tensors, {spec.nproc} rank(s)")
        model = strategy.wrap_generate(meta, world, spec)
        tracker.track_external(*kept_beside_weights(model))  # a quantized layer's scales
        tracker.track_resident(model, None)
        with tracker:
            prompt = _rank_prompts(spec, layout.dp, cfg.vocab_size)
            load = tracker.now()
            current().show("simulate: warm-up generation")
            warmup = _generation(model, prompt, spec, min(WARMUP_TOKENS, spec.new_tokens), kv_heads, Generation(),
                                 ends)
            for _ in warmup:
                pass
            figures = _memory_pass(model, prompt, spec, kv_heads, tracker, ends)
    context = CUDA_CONTEXT_BYTES if device == "cuda" else 0
    return {"load_bytes": load, **figures, "context_bytes": context}
