"""The nightly workflow, the nox sessions and the asv machine naming: the pieces CI runs, checked on CPU."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.run.asv_machine import asv_machine_args, machine_name

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "nightly-gpu.yml"


def _steps() -> list[dict[str, Any]]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    return doc["jobs"]["bench-gpu"]["steps"]


def test_workflow_is_nightly_and_dispatchable_on_a_gpu_runner() -> None:
    doc = yaml.safe_load(WORKFLOW.read_text())
    triggers = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True
    (cron,) = [s["cron"] for s in triggers["schedule"]]
    assert len(cron.split()) == 5 and cron.split()[2:] == ["*", "*", "*"]  # every day
    assert "workflow_dispatch" in triggers
    assert {"self-hosted", "gpu"} <= set(doc["jobs"]["bench-gpu"]["runs-on"])
    assert (ROOT / "ci" / "nightly-gpu.yml").resolve() == WORKFLOW.resolve()


def test_workflow_runs_bench_gpu_uploads_and_gates_last() -> None:
    steps = _steps()
    runs = [s.get("run", "") for s in steps]
    bench = next(i for i, r in enumerate(runs) if "nox -s bench-gpu" in r)
    gate = next(i for i, r in enumerate(runs) if "nox -s gate" in r)
    upload = next(i for i, s in enumerate(steps) if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert bench < upload < gate == len(steps) - 1
    assert steps[upload]["if"] == "always()"  # results are kept even when the benchmarks fail
    paths = steps[upload]["with"]["path"].split()
    assert {"spacetime-results", ".asv/html"} <= set(paths)
    assert "continue-on-error" not in steps[gate] and "if" not in steps[gate]  # a regression fails the job
    assert any(s.get("uses", "").startswith("actions/cache/restore@") for s in steps[:bench])


def _nox(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)


def test_nox_sessions_and_defaults() -> None:
    listing = _nox("-l")
    assert listing.returncode == 0, listing.stderr
    marks = {line[2:].split(" -> ")[0]: line[0] for line in listing.stdout.splitlines() if " -> " in line}
    assert marks == {"tests": "*", "lint": "*", "bench-cpu": "*", "bench-gpu": "-", "asv": "-", "report": "-",
                     "gate": "-", "accuracy": "-"}


def test_bench_gpu_skips_cleanly_without_cuda(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]))
    if any((Path(d) / "nvidia-smi").exists() for d in env["PATH"].split(os.pathsep)):
        pytest.skip("this machine has nvidia-smi: bench-gpu would run, not skip")
    result = _nox("-s", "bench-gpu", "--envdir", str(tmp_path / "nox"), env=env)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "no CUDA device here" in out and "Session bench-gpu skipped" in out


def test_asv_machine_name_carries_the_gpu_model() -> None:
    assert machine_name("node7.example", []) == "node7.example-cpu"
    assert machine_name("node7", ["NVIDIA H100 80GB HBM3"] * 8) == "node7-8xNVIDIA-H100-80GB-HBM3"
    mixed = machine_name("ws", ["NVIDIA A100-SXM4-40GB", "NVIDIA GeForce RTX 4090"])
    assert mixed == "ws-1xNVIDIA-A100-SXM4-40GB-1xNVIDIA-GeForce-RTX-4090"
    args = asv_machine_args("ws-cpu")
    assert args[:5] == ["asv", "machine", "--yes", "--machine", "ws-cpu"] and "--num_cpu" in args


def test_asv_offline_points_every_cdn_file_at_a_vendored_copy(tmp_path: Path) -> None:
    import shutil

    import asv

    html = tmp_path / "html"
    shutil.copytree(Path(asv.__file__).parent / "www", html)  # the pages `asv publish` writes
    result = subprocess.run([sys.executable, str(ROOT / "ci" / "asv-offline"), str(html)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    page = (html / "index.html").read_text()
    assert not [t for t in re.findall(r"<(?:script|link)\b[^>]*>", page) if "https://" in t]
    local = re.findall(r'(?:src|href)="(vendor/[^"]+)"', page)
    assert len(local) >= 10 and all((html / name).is_file() for name in local)
    assert (html / "fonts" / "glyphicons-halflings-regular.woff").is_file()


def test_asv_offline_fails_on_a_remote_script_it_has_no_copy_of(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text('<script src="https://cdn.example.org/new-lib.min.js"></script>')
    result = subprocess.run([sys.executable, str(ROOT / "ci" / "asv-offline"), str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "new-lib.min.js" in result.stderr


def test_slurm_script_starts_one_sweep_per_node_with_the_rendezvous_flags(tmp_path: Path) -> None:
    """Run the batch script with stand-ins for scontrol, srun (one task per node, as Slurm starts them)
    and spacetime (records its arguments); every node's command line must parse and meet at node 0."""
    from harness.cli.flags import rendezvous_from
    from harness.cli.main import build_parser

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/sh\nprintf 'gpu-a17\\ngpu-a18\\n'\n")
    (bin_dir / "srun").write_text('#!/bin/bash\nwhile [[ $1 == --* ]]; do shift; done\n'
                                  'for n in 0 1; do SLURM_NODEID=$n "$@" || exit 1; done\n')
    (bin_dir / "spacetime").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/node$SLURM_NODEID.args\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_NODELIST="gpu-a[17-18]",
               SLURM_NNODES="2", SLURM_JOB_ID="4242", SLURM_GPUS_ON_NODE="8")
    result = subprocess.run(["bash", str(ROOT / "ci" / "slurm-sweep.sbatch"), "--models", "1b"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for node in (0, 1):
        argv = (tmp_path / f"node{node}.args").read_text().splitlines()
        args = build_parser().parse_args(argv)
        assert (args.command, args.preset, args.nproc, args.nnodes, args.models) == ("sweep", "gpu", 16, 2, "1b")
        rdzv = rendezvous_from(args)
        assert rdzv is not None and (rdzv.endpoint, rdzv.node_rank, rdzv.run_id) == (
            "gpu-a17:29500", node, "spacetime-4242")


def test_workflow_keeps_deepspeeds_compiled_ops_between_nights() -> None:
    doc = yaml.safe_load(WORKFLOW.read_text())
    folder = doc["jobs"]["bench-gpu"]["env"]["TORCH_EXTENSIONS_DIR"]
    assert folder.endswith("/.torch-extensions")
    steps = _steps()
    cached = [s for s in steps if s.get("uses", "").startswith("actions/cache/") and
              s["with"]["path"] == ".torch-extensions"]
    assert [s["uses"].split("@")[0] for s in cached] == ["actions/cache/restore", "actions/cache/save"]
    assert cached[1].get("if") == "always()"


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DASHBOARD_CHECK = ROOT / "ci" / "dashboard-check"


def _sh_lines(page: Path) -> list[str]:
    blocks = re.findall(r"^```sh\n(.*?)^```$", page.read_text(), flags=re.M | re.S)
    return [line.strip() for block in blocks for line in block.replace("\\\n", " ").splitlines()]


def test_every_asv_run_line_the_pages_show_names_its_machine() -> None:
    """Without --machine, asv asks for the machine's details on a host it has no entry for (EOFError where
    nothing can answer): every documented `asv run` passes the name asv_machine records."""
    runs = [(page.name, part.strip()) for page in PAGES for line in _sh_lines(page) for part in line.split("&&")
            if part.strip().startswith("asv run")]
    assert runs, "the pages show no asv run line"
    unnamed = [(page, run) for page, run in runs if '--machine "$(python -m harness.run.asv_machine)"' not in run]
    assert not unnamed, unnamed


def _dashboard_check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(DASHBOARD_CHECK), *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)


def test_dashboard_check_docstring_names_only_flags_it_has() -> None:
    helped = set(re.findall(r"--[a-z][\w-]*", _dashboard_check("--help").stdout))
    doc = ast.get_docstring(ast.parse(DASHBOARD_CHECK.read_text())) or ""
    named = set(re.findall(r"--[a-z][\w-]*", doc))
    assert named and named <= helped, named - helped


def _published(folder: Path, with_results: bool = True) -> Path:
    """The files `asv publish` writes that dashboard-check reads before it opens a browser."""
    (folder / "graphs" / "summary").mkdir(parents=True)
    (folder / "index.html").write_text("<html></html>")
    (folder / "index.json").write_text(json.dumps({"benchmarks": {"b.T.track_peak_bytes": {}},
                                                   "revision_to_hash": {"1": "abc"}}))
    if with_results:
        (folder / "graphs" / "summary" / "b.T.track_peak_bytes.json").write_text("[[1, 2.0]]")
    return folder


def test_dashboard_check_says_in_one_line_why_it_cannot_judge(tmp_path: Path) -> None:
    committed = ROOT / "docs" / "asv-dashboard.png"
    before = committed.read_bytes()
    no_browser = tmp_path / "bin"
    no_browser.mkdir()
    for tool in ("git",):
        (no_browser / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    cases = [
        ([], None, "the following arguments are required: --out"),
        (["--out", str(tmp_path / "a.png"), "--html", str(tmp_path / "none")], None, "run `asv publish` first"),
        (["--out", str(tmp_path / "a.png"), "--html", str(_published(tmp_path / "empty", with_results=False))],
         None, "no benchmark in"),
        (["--out", str(committed), "--html", str(_published(tmp_path / "html"))], None, "which git tracks"),
        (["--out", str(tmp_path / "a.png"), "--html", str(tmp_path / "html")],
         {"PATH": str(no_browser), "HOME": str(tmp_path)}, "no Chromium found"),
    ]
    for args, env, why in cases:
        result = _dashboard_check(*args, env=env)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and why in lines[-1], (args, result.stdout, result.stderr)
        assert "cannot judge" in lines[-1] or "required" in lines[-1]
    assert committed.read_bytes() == before and not (tmp_path / "a.png").exists()
