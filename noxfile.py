"""nox sessions: `nox -s tests`, `nox -s lint`, `nox -s bench-cpu`, `nox -s bench-gpu`, `nox -s asv -- ARGS`,
`nox -s report`, `nox -s gate`, `nox -s accuracy`.

Torch is the heavy dependency, so sessions reuse an installed one: their virtualenvs see the system
site-packages (the CUDA build on a GPU runner), and when nox itself runs from an environment that has torch
(a project venv), that environment's site-packages is appended to the session's path.  Only where neither has
torch does a session install `$SPACETIME_TORCH` (default the CPU build, torch==2.13.0).  Virtualenvs are kept
between runs, so any install happens once per session.  Tools run as `python -m TOOL`: with the system
site-packages visible, pip may leave a tool (pytest, say) where it already is, and the bare command on PATH
would then run outside the session's environment.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import nox

nox.needs_version = ">=2024.4.15"
nox.options.default_venv_backend = "virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "bench-cpu"]

ROOT = Path(__file__).resolve().parent
TORCH = os.environ.get("SPACETIME_TORCH", "torch==2.13.0")
VENV = ["--system-site-packages"]
STORE = os.environ.get("SPACETIME_STORE", str(ROOT / "spacetime-results"))


def _install(session: nox.Session, extras: str) -> None:
    """The project (editable) with `extras`, on the torch this session can already import, if any."""
    if not _imports(session, "torch"):
        _share_torch(session)
    if not _imports(session, "torch"):
        session.install(TORCH)
    session.install("-e", f".[{extras}]")


def _share_torch(session: nox.Session) -> None:
    """Appends the site-packages holding the torch nox's own interpreter has (if any) to the session's path."""
    found = importlib.util.find_spec("torch")
    if found is None or found.origin is None:
        return
    site = Path(found.origin).parent.parent
    purelib = session.run("python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                          silent=True)
    pth = Path(str(purelib).strip().splitlines()[-1]) / "_spacetime_shared_torch.pth"
    pth.write_text(f"{site}\n")
    session.log(f"reusing torch from {site}")


def _imports(session: nox.Session, code: str) -> bool:
    """Whether `import CODE` runs in the session's python (a silent run returns its output)."""
    out = session.run("python", "-c", f"import {code}; print('spacetime-import-ok')", success_codes=[0, 1],
                      silent=True)
    return "spacetime-import-ok" in str(out)


def _asv_machine(session: nox.Session) -> str:
    """Records this host for asv under a name that carries its GPU model, and returns the name."""
    out = session.run("python", "-m", "harness.run.asv_machine", silent=True)
    return str(out).strip().splitlines()[-1]


def _head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()


def _cuda_devices() -> int:
    """GPUs the driver reports, without importing torch (nvidia-smi -L prints one line per GPU)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    result = subprocess.run([smi, "-L"], capture_output=True, text=True)
    return sum(line.startswith("GPU ") for line in result.stdout.splitlines()) if result.returncode == 0 else 0


def _bench(session: nox.Session, preset: str, sweep: list[str]) -> None:
    """A sweep into the store, then the asv suite at HEAD on this environment's install."""
    env = {"SPACETIME_ASV_PRESET": preset, "SPACETIME_STORE": STORE}
    session.run("spacetime", "sweep", *sweep, "--store", STORE, env=env)
    machine = _asv_machine(session)
    quick = ["--quick"] if preset == "cpu" else []
    session.run("python", "-m", "asv", "run", "--python=same", *quick, "--machine", machine,
                "--set-commit-hash", _head(), "--show-stderr", *session.posargs, env=env)
    session.run("python", "-m", "asv", "publish", env=env)
    session.run("python", str(ROOT / "ci" / "asv-offline"), str(ROOT / ".asv" / "html"))
    session.log(f"asv results for machine {machine}; dashboard in .asv/html (nox -s asv -- preview)")


@nox.session(venv_params=VENV)
def tests(session: nox.Session) -> None:
    """The test suite (pytest arguments after --)."""
    _install(session, "dev")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(venv_params=VENV)
def lint(session: nox.Session) -> None:
    """ruff check, the import contract (no cycles, layers one way: ci/check-imports) and mypy (type check)."""
    _install(session, "dev")
    session.run("python", "-m", "ruff", "check", ".")
    session.run("python", str(ROOT / "ci" / "check-imports"), str(ROOT))
    session.run("python", "-m", "mypy", "harness", "strategies", "benchmarks")


@nox.session(name="bench-cpu", venv_params=VENV)
def bench_cpu(session: nox.Session) -> None:
    """Smoke sweep (tiny, 2 ranks, every core strategy) and asv --quick on the CPU preset."""
    _install(session, "dev,asv")
    _bench(session, "cpu", ["--preset", "smoke", "--device", "cpu"])


@nox.session(name="bench-gpu", venv_params=VENV, default=False)
def bench_gpu(session: nox.Session) -> None:
    """The GPU preset (1b..8b on every GPU of the machine) through the sweep and asv; skipped without CUDA."""
    gpus = _cuda_devices()
    if gpus == 0:
        session.skip("bench-gpu: no CUDA device here (nvidia-smi missing or lists no GPU); nothing measured")
    _install(session, "dev,asv")
    if not _imports(session, "torch; assert torch.cuda.is_available()"):
        session.skip("bench-gpu: the torch this session imports has no CUDA; install a CUDA build of torch")
    sweep = ["--preset", "gpu", "--device", "cuda", "--nproc", str(gpus)]
    if gpus == 1:
        sweep += ["--strategies", "single"]  # the parallel strategies need two ranks or more
    _bench(session, "gpu", sweep)


@nox.session(venv_params=VENV)
def asv(session: nox.Session) -> None:
    """asv with the arguments after -- (e.g. `nox -s asv -- publish`, `-- run HEAD~3..HEAD`)."""
    _install(session, "dev,asv")
    session.run("python", "-m", "asv", *(session.posargs or ["--help"]))


@nox.session(venv_params=VENV)
def report(session: nox.Session) -> None:
    """The store's tables and plots (spacetime report arguments after --)."""
    _install(session, "dev")
    session.run("spacetime", "report", "--store", STORE, *session.posargs)


@nox.session(venv_params=VENV)
def gate(session: nox.Session) -> None:
    """The regression gate over the store (ci/gate arguments after --); fails on a regression."""
    _install(session, "dev")
    session.run(str(ROOT / "ci" / "gate"), "--store", STORE, *session.posargs, external=True)


@nox.session(venv_params=VENV, default=False)
def accuracy(session: nox.Session) -> None:
    """The CPU accuracy matrix measured again (tiny twice, then 125m) with predicted and simulated peaks beside
    it, rewritten into benchmarks/results/accuracy-cpu.json; then tests/accuracy/test_accuracy.py on the new figures.
    Hours on a CPU without fast bf16: 125m's 16-bit rows run about 30x slower than fp32 there."""
    _install(session, "dev")
    runs = Path(session.create_tmp()) / "accuracy"
    session.run("spacetime", "sweep", "--preset", "accuracy", "--store", str(runs / "a"))
    session.run("spacetime", "sweep", "--preset", "accuracy", "--models", "tiny", "--store", str(runs / "b"))
    session.run("python", "-m", "benchmarks.accuracy", str(runs / "a"), str(runs / "b"))
    session.run("python", "-m", "pytest", "tests/accuracy/test_accuracy.py", *session.posargs)
