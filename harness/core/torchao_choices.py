"""torchao's weight-only quantization for generation (`--quant int8-torchao|int4-torchao`, applied by
harness/models/quant_torchao.py): which specs can never take it (SpecError) and which cannot run here
(Unsupported), checked before anything is launched.

  int8-torchao  Int8WeightOnlyConfig: each block projection's weight becomes an Int8Tensor (int8 values, one fp32
                scale and one int8 zero point per output row); its linear multiplies by the weight cast to the
                input's dtype, then scales.  Runs on CPU and CUDA, in any dtype.
  int4-torchao  Int4WeightOnlyConfig, tile_packed_to_4d (tinygemm): two values per byte, a bf16 scale and zero per
                group of 128 inputs, inputs padded to a multiple of 1024 and outputs to one of 8.  torchao 0.18
                has no int4 layout that runs on the CPU (plain and preshuffled need mslk, FBGEMM's GPU kernels;
                plain_int32 runs on XPU/NPU only; the opaque CPU layout is gone), and tile_packed_to_4d takes
                bf16 weights on a CUDA device of compute capability 8.0 or above.

Both are post-training quantization: the weight is frozen in a tensor subclass that nothing trains, so training
with them is refused (a quantized base to train adapters over is int8, nf4 or nf4-torchao).
"""

from __future__ import annotations

from harness.core.errors import SpecError, Unsupported
from harness.core.spec import RunSpec

WEIGHT_ONLY = ("int8-torchao", "int4-torchao")
TRAINING_BASES = "none, int8, nf4, nf4-torchao (with --workload train)"
INT4_DTYPES = ("bf16", "bf16-pure")  # what generation loads as bf16 weights (train/generate_measure.py)
INT4_ON_CPU = ("torchao 0.18 has no int4 weight-only layout that runs on the CPU (plain and preshuffled need "
               "mslk, FBGEMM's GPU kernels; plain_int32 runs on XPU/NPU; tile_packed_to_4d needs CUDA)")


def check_weight_only(spec: RunSpec) -> None:
    """SpecError for a torchao weight-only choice with training, or int4 with weights that are not bf16."""
    if spec.quant not in WEIGHT_ONLY:
        return
    if spec.workload == "train":
        raise SpecError("quant", f"{spec.quant} is torchao's post-training weight-only quantization, for "
                        "--workload generate: its frozen tensor subclass is not a training base here",
                        TRAINING_BASES)
    if spec.quant == "int4-torchao" and spec.dtype not in INT4_DTYPES:
        raise SpecError("dtype", f"{spec.dtype} with --quant int4-torchao: torchao's int4 layout "
                        "(tile_packed_to_4d) takes bf16 weights only", ", ".join(INT4_DTYPES))


def check_weight_only_device(spec: RunSpec) -> None:
    """Unsupported for int4-torchao where the run's device is the CPU (`spec.device` resolved)."""
    if spec.quant == "int4-torchao" and spec.device == "cpu":
        raise Unsupported(f"--quant int4-torchao on the CPU: {INT4_ON_CPU}; run it on a CUDA device, or use "
                          "--quant nf4 or nf4-torchao for 4-bit weights here")
