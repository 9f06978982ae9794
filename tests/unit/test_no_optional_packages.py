"""Without peft, bitsandbytes and torchao, `estimate` still figures LoRA, quantization and 8-bit AdamW (they are
arithmetic), while `run` and `simulate`, which would build them, refuse before anything starts, naming the
install line.  Each command runs in a fresh process whose import system refuses the three packages, as an
environment without them would."""

from __future__ import annotations

import json
import subprocess
import sys

from harness.core.spec import RunSpec
from harness.estimate.fit import profile_for
from harness.estimate.predict import predict
from harness.run.validate import validate

BLOCKED = ("peft", "bitsandbytes", "torchao")
DRIVER = f"""
import sys

class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Missing())
from harness.cli.main import main
code = main(sys.argv[1:])
sys.stdout.flush()
print(sorted({{m.split(".")[0] for m in sys.modules}} & set({BLOCKED!r})), file=sys.stderr)
sys.exit(code)
"""
KNOBS = ["--model", "7b", "--lora-rank", "8", "--quant", "nf4", "--optimizer", "adamw8bit"]


def _without_packages(*argv: str) -> tuple[int, str, str]:
    """`spacetime ARGV` in a fresh process that cannot import peft, bitsandbytes or torchao: (exit status,
    stdout, stderr), after asserting none of them was loaded."""
    proc = subprocess.run([sys.executable, "-c", DRIVER, *argv], capture_output=True, text=True, timeout=300)
    *err, loaded = proc.stderr.strip().splitlines()
    assert loaded == "[]", proc.stderr
    return proc.returncode, proc.stdout, "\n".join(err)


def test_the_import_system_refuses_the_packages() -> None:
    proc = subprocess.run([sys.executable, "-c", DRIVER.replace("from harness.cli.main import main", "import peft")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "ModuleNotFoundError: No module named 'peft'" in proc.stderr


def test_estimate_figures_lora_nf4_and_8bit_adamw_without_their_packages() -> None:
    code, out, err = _without_packages("estimate", *KNOBS, "--json")
    assert code == 0, err
    got = json.loads(out.strip().splitlines()[-1])
    spec = validate(RunSpec(model="7b", lora_rank=8, quant="nf4", optimizer="adamw8bit", device="cuda"),
                    measure=False)
    assert got["peak_bytes"] == predict(spec, profile_for(spec), "cuda").peak_bytes > 0
    code, out, err = _without_packages("estimate", *KNOBS)
    assert code == 0 and "peak (allocator)" in out and "quant nf4" in out, err


def test_run_and_simulate_refuse_before_anything_starts_with_the_install_line() -> None:
    for argv, install in ((["--lora-rank", "8"], "pip install 'spacetime[peft]'"),
                          (["--optimizer", "adamw8bit"], "pip install 'spacetime[bnb]'")):
        code, out, err = _without_packages("run", *argv, "--dry-run")
        assert (code, out) == (1, "") and err.startswith("spacetime: unsupported: ") and install in err, err
        code, out, err = _without_packages("run", *argv, "--no-store", "--json")
        record = json.loads(out.strip().splitlines()[-1])
        assert code == 1 and record["status"] == "unsupported" and install in record["error"], err
        assert record["wall_s"] is None  # nothing was launched
    code, out, err = _without_packages("simulate", "--lora-rank", "8")
    assert code == 1 and "pip install 'spacetime[peft]'" in err, err
