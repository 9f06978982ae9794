"""The machine a check ran on (GPU, driver, torch, CUDA), and the install from the project's own files that
never replaces the torch already there."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gpu_check.cases import ROOT

EXTRAS = "peft,bnb,deepspeed"  # LoRA, nf4 (bitsandbytes), ZeRO-3: the extras the cases need
NEEDED = ("torch", "pyarrow", "rich", "numpy", "matplotlib", "ninja", "peft", "bitsandbytes", "deepspeed")
TORCH_FACTS = ("import json, torch; ok = torch.cuda.is_available(); print(json.dumps({'torch': torch.__version__, "
               "'cuda': torch.version.cuda, 'cuda_available': ok, 'devices': torch.cuda.device_count() if ok "
               "else 0}))")


def _run(command: list[str], timeout_s: float = 60) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=ROOT)
    except (OSError, subprocess.SubprocessError):
        return None


def gpu_facts() -> dict[str, Any]:
    """The first GPU's name, driver and memory as nvidia-smi reports them (empty without one)."""
    done = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader,nounits",
                 "-i", "0"], 30)
    if done is None or done.returncode != 0 or not done.stdout.strip():
        return {}
    name, driver, total_mib = (part.strip() for part in done.stdout.strip().splitlines()[0].split(","))
    return {"gpu": name, "driver": driver, "gpu_memory_bytes": int(float(total_mib)) * 2**20}


def torch_facts() -> dict[str, Any]:
    """torch's version, its CUDA version and whether it sees a GPU, from a fresh process (no CUDA context is
    left behind in this one); {"torch": None} where torch is not installed."""
    done = _run([sys.executable, "-c", TORCH_FACTS], 120)
    if done is None or done.returncode != 0:
        return {"torch": None, "cuda": None, "cuda_available": False, "devices": 0}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def git_commit() -> str | None:
    done = _run(["git", "rev-parse", "HEAD"], 10)
    return done.stdout.strip() or None if done and done.returncode == 0 else None


def machine_facts(torch: dict[str, Any] | None = None) -> dict[str, Any]:
    """`torch`: torch_facts() already taken (after the install), not asked again."""
    import platform

    return {**gpu_facts(), **(torch or torch_facts()), "python": platform.python_version(), "host": platform.node(),
            "commit": git_commit()}


def machine_slug(facts: dict[str, Any]) -> str:
    """The results folder's name for this machine, e.g. `gpu-NVIDIA-H200`."""
    name = re.sub(r"[^A-Za-z0-9]+", "-", facts.get("gpu") or "none").strip("-")
    return f"gpu-{name}"


def missing_packages() -> list[str]:
    import importlib
    import importlib.util

    importlib.invalidate_caches()  # a package pip has just installed is found
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def install_command(lines: list[str], torch_version: str | None, constraints: Path,
                    wheels: Path | None) -> list[str]:
    """pip install of requirement lines; an installed torch is pinned by a constraint, so a CUDA build is never
    swapped for a CPU one (or for another version), and a package built from source (DeepSpeed) builds
    against it, not against a torch pip would fetch into an isolated build."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", *lines]
    if torch_version:
        command += ["-c", str(constraints)]
    if wheels:  # a machine without network: the wheels travel with the checkout
        command += ["--no-index", "--find-links", str(wheels)]
    return command


def requirements(names: list[str]) -> list[str]:
    """The project's own requirement lines (pyproject.toml: dependencies and the extras used) for `names`."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in EXTRAS.split(","):
        lines += project["optional-dependencies"][extra]
    wanted = {name.lower() for name in names}
    return [line for line in lines if re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower() in wanted]


def _pip(command: list[str], timeout_s: float) -> tuple[bool, str]:
    done = _run(command, timeout_s)
    tail = "no pip (or it timed out)" if done is None else (done.stderr or done.stdout).strip()[-600:]
    return done is not None and done.returncode == 0, tail


def install(wheels: Path | None, timeout_s: float, dry_run: bool = False) -> dict[str, Any]:
    """Install what is missing (nothing when every package is importable), from the project's own requirement
    lines: all in one pip call, or, where that fails (a wheel missing on a machine without network), each on
    its own, so one that cannot be had does not keep the others out.  No editable install: the check runs
    spacetime from the checkout.  What was done, and how long it took."""
    started = time.monotonic()
    before = torch_facts()
    missing = missing_packages()
    lines = requirements(missing)
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text(f"torch=={before['torch']}\n" if before["torch"] else "")
        command = install_command(lines, before["torch"], constraints, wheels)
        step: dict[str, Any] = {"missing": missing, "command": " ".join(command), "torch_before": before}
        if not missing or dry_run:
            return {**step, "status": "planned" if dry_run and missing else "nothing to install", "wall_s": 0.0}
        ok, tail = _pip(command, timeout_s)
        one_by_one: dict[str, str] = {}
        for line in [] if ok or len(lines) < 2 else requirements(missing_packages()):
            left = timeout_s - (time.monotonic() - started)
            if left > 10:
                single = install_command([line], before["torch"], constraints, wheels)
                one_by_one[line] = "ok" if _pip(single, left)[0] else "failed"
    after = torch_facts()
    replaced = bool(before["cuda_available"]) and not after["cuda_available"]
    still = missing_packages()
    return {**step, "status": "failed" if replaced else ("ok" if not still else "incomplete"),
            "stderr_tail": tail, "one_by_one": one_by_one, "still_missing": still, "torch_after": after,
            "cuda_torch_replaced": replaced, "wall_s": round(time.monotonic() - started, 1)}
