"""RunSpec: what to run, as plain values (harness/run/validate.py checks them before anything is launched)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class RunSpec:
    model: str = "tiny"
    strategy: str = "single"
    nproc: int = 1  # ranks in all (the world size); nproc / nnodes on each host
    nnodes: int = 1  # hosts joined through torchrun's c10d rendezvous (run/nodes.py: Rendezvous)
    steps: int = 8  # timed steps
    warmup: int = 2  # untimed steps before the memory steps (optimizer state exists after the first)
    memory_steps: int = 2  # untimed steps under the memory probe; the peak is the largest over them
    batch_size: int = 4  # per data-parallel rank (micro-batch); global batch = batch_size x dp degree
    seq_len: int = 128
    device: str = "auto"
    seed: int = 0
    lr: float = 1e-3
    tp: int = 0  # tensor-parallel degree; 0 = the strategy's default
    dp_replicate: int = 0  # replica groups for hybrid sharding; 0 = the strategy's default
    pp: int = 0  # pipeline ranks (stages x virtual stages over them); 0 = the strategy's default
    pp_virtual: int = 0  # pipeline stages per pipeline rank (interleaved schedules); 0 = the strategy's default
    pp_microbatches: int = 0  # micro-batches each rank's batch is split into; 0 = the strategy's default (pp)
    cp: int = 0  # context-parallel degree (ranks sharing one sequence); 0 = the strategy's default
    timeout_s: float = 600.0
    # memory knobs (valid values in harness/core/knobs.py)
    dtype: str = "fp32"  # fp32, bf16 / fp16 (mixed, fp32 masters), bf16-pure
    activation_checkpointing: str = "off"  # off, full, selective (every ckpt_every-th block), op (per op)
    ckpt_every: int = 2
    lora_rank: int = 0  # 0: full fine-tuning
    lora_alpha: int = 16
    lora_targets: str = "q,v"
    quant: str = "none"  # none, int8, nf4: frozen base weights (needs lora_rank > 0)
    optimizer: str = "adamw"  # adamw, adamw8bit, sgd, adafactor
    grad_accum: int = 1  # micro-batches per optimizer step
    loss_parallel: bool = False  # tensor-parallel strategies: logits sharded over the vocabulary into the loss
    loss_type: str = "full"  # --loss: full, or chunked (projection and cross-entropy per chunk of the sequence)
    loss_chunks: int = 8  # chunked loss: chunks of the sequence (torchtune's default)
    compile: str = "off"  # off, blocks (torch.compile each transformer block), model (the whole model)
    model_config: str = ""  # a custom shape (--model-config / --set) as ModelConfig JSON; "" = the zoo's `model`
    # the workload (valid values in harness/core/knobs.py): train, or generate with the fields below
    workload: str = "train"
    prompt_len: int = 128  # generate: prompt tokens per sequence (random, from the seed)
    new_tokens: int = 32  # generate: tokens decoded per sequence after the prompt
    num_beams: int = 1  # generate: 1 = greedy; N = beam search with N beams per sequence
    kv_cache: str = "static"  # generate: static (pre-allocated for prompt + new tokens) or dynamic (grows per token)
    offload: str = "none"  # generate: none, cpu or disk (weights kept out of device memory)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_(self, **changes: Any) -> RunSpec:
        return replace(self, **changes)
