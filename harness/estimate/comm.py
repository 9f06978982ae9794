"""The buffers communication adds to a step, by phase (part of predict, harness/estimate/predict.py): DDP's gradient
buckets, FSDP2's and FSDP1's all-gathers and reduce-scatters, and what tensor parallelism does to the
embedding's gradient under FSDP2.  The terms were found in simulated steps (`spacetime simulate`, exact against
measurement on the CPU matrix) and are checked against measurements (tests/test_accuracy.py) and, off the
measured matrix, against simulations (tests/test_predict_off_matrix.py)."""

from __future__ import annotations

from harness.core.memory import MemoryProfile
from harness.core.spec import RunSpec
from harness.estimate.activations import BlockBytes, HeadBytes
from harness.estimate.model_bytes import embedding_grad, lora_params, weight_bytes
from harness.models.zoo import ModelConfig


def gathered_bytes(cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile) -> tuple[float, float]:
    """(the root, one block) as FSDP gathers them on one rank: in 16 bits under mixed precision (FSDP's policy
    casts the fp32 shards) or pure bf16, as stored otherwise."""
    block_w, rest_w = weight_bytes(cfg, spec)
    cast = 0.5 if spec.dtype in ("bf16", "fp16") and prof.casts_params else 1.0
    return rest_w * cast / prof.tp, block_w / cfg.n_layers * cast / prof.tp


class Comm:
    """Buffers communication adds, by phase.  DDP: gradient buckets as large as the gradients, for the whole
    run.  FSDP: the root unit (embeddings, output, final norm) is gathered through forward and again for
    backward (kept in between under FSDP2's default for the root), one block is gathered at a time while the
    next is prefetched ("unit") or every block stays gathered until its backward ("all"); the root's
    gradients are reduced last."""

    def __init__(self, cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile, state: dict[str, float]) -> None:
        self.compute = self.last_reduce = self.idle = self.root_grad_shard = self.regather = 0.0
        self.last_reduce_grads = 0.0  # the gradients the last reduction holds beside its buffers
        self.backward_start = self.block_backward = self.forward_start = self.head = 0.0
        if prof.grad_buckets:
            self.compute = self.last_reduce = self.idle = self.backward_start = self.head = (
                state["grads"] * prof.grad_div)
            return
        if prof.gathered == "none":
            return
        root, block = gathered_bytes(cfg, spec, prof)
        mixed = spec.dtype in ("bf16", "fp16") and prof.casts_params
        if prof.param_div == 1:
            self._one_rank(cfg, prof, root, block, mixed)
        else:
            self._sharded(cfg, spec, prof, root, block, mixed)
        if not spec.lora_rank:  # frozen root weights have no gradients to reduce
            self._root_reduce(cfg, spec, prof)

    def _one_rank(self, cfg: ModelConfig, prof: MemoryProfile, root: float, block: float, mixed: bool) -> None:
        """A one-rank shard group (HSDP's, fsdp_tp's at dp 1) copies shards into parameters: no all-gather
        buffer.  The root's copy is held while forward and backward compute, a block's beside it in backward."""
        self.compute = self.head = root
        self.block_backward = root + block
        if prof.keeps_root:
            self.backward_start = root
        else:  # freed after forward, copied back one weight at a time (through a 16-bit cast when mixed)
            self.regather = root + (cfg.vocab_size * cfg.dim / prof.tp * 2.0 if mixed else 0.0)

    def _sharded(self, cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile, root: float, block: float,
                 mixed: bool) -> None:
        """All-gathers over 2+ ranks.  "unit": the block in use and the next one's all-gather output with its copy
        into parameters; "all": every block stays gathered until its backward."""
        gloo = spec.device == "cpu"
        self.compute = root + (3 * block if prof.gathered == "unit" else cfg.n_layers * block)
        # the first block's all-gather (its cast shard, output and gloo's buffer on a CPU) while the root's
        # output is still held (FSDP2 frees an all-gather's output when the next one is waited on)
        self.forward_start = 2 * root + block * (2 if gloo else 1) + (block / prof.param_div if mixed else 0.0)
        if "params" in prof.offload and spec.device == "cuda":  # shards copied to the GPU before gathering
            self.compute += (root + 2 * block) / prof.param_div
        if prof.gathered == "all":
            self.backward_start = self.head = self.compute
            return
        self.head = root  # the last block is resharded before the output projection runs
        if prof.keeps_root:
            self.backward_start = root
        else:  # resharded after forward, gathered again for backward: the gathered root, its shard cast to 16
            # bits first (mixed precision), and on a CPU the flat output-sized buffer gloo gathers into
            self.regather = root + (root / prof.param_div if mixed else 0.0) + (root if gloo else 0.0)

    def _root_reduce(self, cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile) -> None:
        """The root's gradients are reduced last: its shard does not exist yet while the reduction runs."""
        root_grads = weight_bytes(cfg, spec)[1] / prof.tp  # as wide as the weights
        self.root_grad_shard = root_grads / prof.grad_div
        self.last_reduce = 2 * root_grads  # a one-rank group: the flat copy-in and its output
        gloo = root_grads if spec.device == "cpu" else 0.0
        if prof.flat:  # FSDP1: flattened while the root is still gathered, then reduced (flat_unit)
            computed, reducing = flat_unit(root_grads, spec, prof)
            self.last_reduce = max(gathered_bytes(cfg, spec, prof)[0] + 2 * computed, computed + reducing)
        elif prof.param_div > 1:  # the embedding's unsharded gradient (autograd still holds it) and the
            # reduce-scatter's output shard, beside its input and on a CPU gloo's copy of the input
            self.last_reduce_grads = embedding_grad(cfg, spec, prof) / prof.tp + self.root_grad_shard
            self.last_reduce = root_grads + gloo


def fsdp_phases(cfg: ModelConfig, spec: RunSpec, profile: MemoryProfile, state: dict[str, float], comm: Comm,
                 blocks: BlockBytes, head: HeadBytes) -> dict[str, dict[str, float]]:
    """The phases FSDP's gathering adds."""
    phases = block_backward(cfg, spec, profile, state, comm, blocks)
    if profile.tp > 1 and not spec.lora_rank:
        phases["embedding backward"] = embedding_backward(cfg, spec, profile, state, comm)
    if comm.forward_start:
        phases["forward start"] = {"comm": comm.forward_start}
    if comm.regather:  # the log-softmax's output and gradient are gone, the logits' gradient is not
        phases["root re-gathered"] = {"activations": blocks.total + head.forward - head.backward / 2,
                                      "temporaries": head.logits, "comm": comm.regather}
    return phases


def embedding_backward(cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile, state: dict[str, float],
                       comm: Comm) -> dict[str, float]:
    """FSDP2 + TP as the embedding's backward ends, before the root's reduce-scatter: the gathered root, the
    first block's reduce-scatter input (FSDP2 holds it until the next reduce), every block's gradient shard,
    the output projection's unsharded gradient, the embedding's whole gradient and the copy of its shard."""
    whole = embedding_grad(cfg, spec, prof)
    root, _ = gathered_bytes(cfg, spec, prof)
    held = weight_bytes(cfg, spec)[0] / cfg.n_layers / prof.tp  # as wide as the weights
    return {"comm": root + held, "grads": state["grads"] - comm.root_grad_shard + whole / prof.tp,
            "temporaries": whole + whole / prof.tp}


def block_backward(cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile, state: dict[str, float], comm: Comm,
                   blocks: BlockBytes) -> dict[str, dict[str, float]]:
    """Backward through the blocks, last to first.  Every block's gathered parameters (with the next one's
    prefetch), the output projection's unsharded gradient in the compute width (reduced with the root's at the
    end; the logits' gradient is gone) and a recomputed block's activations under checkpointing.  Each block
    done frees its activations and leaves its gradient shard; from the second block on, the previous block's
    reduce-scatter input is held until the next reduce (FSDP2).  Where the peak falls depends on a block's
    activations against its gradient shard and that input: the last block, the second, or the first."""
    n, every = cfg.n_layers, spec.ckpt_every if spec.activation_checkpointing == "selective" else 1
    output_grad = 0.0 if spec.lora_rank else embedding_grad(cfg, spec, prof) / prof.tp
    shard = (state["grads"] - comm.root_grad_shard) / n  # one block's gradient shard
    reduced = lora_params(cfg, spec) * 4.0 if spec.lora_rank and not prof.flat else weight_bytes(cfg, spec)[0]
    # FSDP2 holds a reduce-scatter's input until the next reduce, in the weights' width (FSDP1 does not)
    held = reduced / n / prof.tp if prof.param_div > 1 and not prof.flat else 0.0

    def recomputed(i: int) -> float:
        return blocks.recompute if spec.activation_checkpointing != "off" and i % every == 0 else 0.0

    phases: dict[str, dict[str, float]] = {}
    gathered = comm.compute if prof.param_div > 1 else comm.block_backward
    if prof.gathered == "unit":
        phases["last block's backward"] = {"activations": blocks.total + recomputed(n - 1), "comm": gathered,
                                           "grads": output_grad}
    if n < 2:
        return phases
    if prof.gathered == "unit":
        one = blocks.recompute or blocks.first  # one block's saved tensors
        freed = blocks.first - blocks.recompute if recomputed(n - 1) else one  # the last block's, or its input
        phases["second block's backward"] = {"activations": blocks.total - freed + recomputed(n - 2),
                                             "grads": shard + output_grad, "comm": gathered + held}
    root, block = gathered_bytes(cfg, spec, prof)
    if prof.flat and prof.param_div > 1:
        phases["a block's reduce-scatter"] = flat_reduce(cfg, spec, prof, blocks.total, root, output_grad)
    first = comm.block_backward if prof.param_div == 1 else root + block
    # at its end, with nothing left to prefetch: its own unsharded gradients, as wide as its gathered weights
    own = 0.0 if spec.lora_rank and not prof.flat else block
    phases["first block's backward"] = {"grads": shard * (n - 1) + output_grad + own, "activations": blocks.first,
                                        "comm": first + held}
    return phases


def flat_unit(weights: float, spec: RunSpec, prof: MemoryProfile) -> tuple[float, float]:
    """FSDP1 reducing one unit whose weights take `weights` bytes as stored: (its flat gradient in the compute
    width, which its per-parameter gradients are flattened (`cat`) into; what the reduction adds to it: its
    fp32 copy under mixed precision, the reduce-scatter's input, the output shard, and on a CPU gloo's copy of
    the input)."""
    mixed = spec.dtype in ("bf16", "fp16") and prof.casts_params
    computed = weights / 2 if mixed else weights
    return computed, (weights if mixed else 0.0) + weights / prof.grad_div + (weights if spec.device == "cpu" else 0.0)


def flat_reduce(cfg: ModelConfig, spec: RunSpec, prof: MemoryProfile, activations: float, root: float,
                output_grad: float) -> dict[str, float]:
    """FSDP1 reducing a block's gradient (under LoRA it covers the frozen base).  Two moments (flat_unit): its
    per-parameter gradients are flattened into one flat gradient while the block is still gathered; then, the
    block resharded, that gradient is reduced.  The root and the next block are gathered throughout (grad-op
    sharding: every block not yet reduced).  Each block done has freed its share of the activations and left
    its gradient shard: the largest of the n blocks' two moments."""
    n = cfg.n_layers
    unit = weight_bytes(cfg, spec)[0] / n / prof.tp  # one block's weights as stored
    computed, reducing = flat_unit(unit, spec, prof)
    _, block = gathered_bytes(cfg, spec, prof)

    def at(done: int, flattening: bool) -> dict[str, float]:  # `done` blocks reduced before this one
        later = n - done - 1 if prof.gathered == "all" else min(n - done - 1, 1)
        return {"activations": activations * (n - done - 1) / n,
                "grads": computed * (2 if flattening else 1) + done * unit / prof.grad_div,
                "comm": root + block * (later + (1 if flattening else 0)),
                "temporaries": output_grad + (0.0 if flattening else reducing)}

    moments = (at(done, flattening) for done in range(n) for flattening in (True, False))
    return max(moments, key=lambda terms: sum(terms.values()))
