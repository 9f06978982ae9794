"""Greedy tokens of quantized loads against fp32: how often each `--quant` choice picks fp32's tokens.

The zoo's weights are random (harness/models/materialize.py), so the next-token logits are nearly flat and a
small weight error can flip an argmax: the figures say how close each quantizer's greedy tokens stay to fp32's,
not how a trained model would fare.  Per choice: the first new token's agreement over the batch, the mean length
of the prefix that agrees (greedy decoding diverges for good after its first different token), and the
prefill's logits against fp32's (relative error, norm over norm).

    python -m benchmarks.quant_token_agreement [--models tiny,125m] [--batch 8] [--prompt 32] [--new 16]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging

import torch

from harness.core.spec import RunSpec
from harness.models.generate import generate, load_weights, prompts
from harness.models.llama import build_model
from harness.models.zoo import get_config

CHOICES = ("int8", "nf4", "int8-torchao", "nf4-torchao")  # int4-torchao has no CPU layout (torchao_choices.py)


def _loaded(model_name: str, quant: str, max_len: int) -> torch.nn.Module:
    spec = RunSpec(model=model_name, workload="generate", quant=quant, device="cpu")
    return load_weights(build_model(get_config(model_name), max_len), torch.device("cpu"), spec)


def agreement(model_name: str, quant: str, batch: int, prompt_len: int, new: int) -> dict[str, float]:
    """The quantized load's greedy tokens and prefill logits against fp32's, on the same seed and prompts."""
    prompt = prompts(0, batch, prompt_len, get_config(model_name).vocab_size)
    runs = {}
    for q in ("none", quant):
        model = _loaded(model_name, q, prompt_len + new)
        with torch.no_grad():
            logits = model(prompt)[:, -1].float()
        runs[q] = (generate(model, prompt, new).tokens[:, prompt_len:], logits)  # type: ignore[index]
        del model
    (ref, ref_logits), (got, got_logits) = runs["none"], runs[quant]
    same = (ref == got).int()
    prefix = same.cumprod(dim=1).sum(dim=1).float()
    return {"first": same[:, 0].float().mean().item(), "prefix": prefix.mean().item() / new,
            "logits_rel": ((got_logits - ref_logits).norm() / ref_logits.norm()).item()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="tiny,125m")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new", type=int, default=16)
    args = parser.parse_args()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # its int8 matmul warns of the fp16 cast per call
    print(f"greedy, fp32 compute, batch {args.batch}, prompt {args.prompt}, {args.new} new tokens, seed 0")
    print("| model | quant | first token agrees | agreeing prefix (of new tokens) | prefill logits rel. error |")
    print("|---|---|---|---|---|")
    for model_name in args.models.split(","):
        for quant in CHOICES:
            if quant in ("int8", "nf4") and importlib.util.find_spec("bitsandbytes") is None:
                continue
            a = agreement(model_name, quant, args.batch, args.prompt, args.new)
            print(f"| {model_name} | {quant} | {a['first']:.0%} | {a['prefix']:.0%} | {a['logits_rel']:.2%} |")


if __name__ == "__main__":
    main()
