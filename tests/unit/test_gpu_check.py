"""ci/gpu-check, on a CPU: its dry run plans and checks every case's command, its budget writes every case
(run or skipped), and a case that outlives its timeout is killed with its whole process group."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "ci"))

from gpu_check.budget import INTERRUPTED, SKIPPED_BUDGET, SKIPPED_INTERRUPTED, run_within  # noqa: E402
from gpu_check.cases import CASES, Case, total_expected_s  # noqa: E402
from gpu_check.results import execute, figures_of_run, summary, write_result  # noqa: E402

BUDGET_S = 480


def test_the_dry_run_plans_every_case_and_every_command_parses() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "ci" / "gpu-check"), "--dry-run"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {}
    for line in done.stdout.splitlines()[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0].isdigit():
            rows[cells[1]] = cells
    assert list(rows) == [case.name for case in CASES]
    assert {cells[4] for cells in rows.values()} == {"parsed"}, done.stdout
    total = float(re.search(r"total expected (\d+) s", done.stdout).group(1))  # type: ignore[union-attr]
    assert total == total_expected_s() <= BUDGET_S
    assert sum(float(cells[2]) for cells in rows.values()) == total


def test_the_cases_cover_the_issue() -> None:
    specs = [dict(zip(c.flags[::2], c.flags[1::2], strict=True)) for c in CASES if not c.is_context]
    singles = {s["--model"] for s in specs if s["--strategy"] == "single" and "--lora-rank" not in s
               and "--activation-checkpointing" not in s}
    assert singles == {"125m", "1b", "3b", "8b"} and all(s["--dtype"] == "bf16" for s in specs)
    eight = [s for s in specs if s["--model"] == "8b"]
    assert any(s.get("--lora-rank") == "8" and "--quant" not in s for s in eight)
    assert any(s.get("--activation-checkpointing") == "full" for s in eight)
    assert any(s.get("--quant") == "nf4" for s in eight)
    sharded = {s["--strategy"]: s["--nproc"] for s in specs if "--nproc" in s}
    assert sharded == dict.fromkeys(("fsdp_full_shard", "ddp", "zero3", "fsdp_offload", "fsdp1_offload"), "1")
    assert CASES[0].is_context and all(c.expected_s <= c.timeout_s for c in CASES)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cases(*expected: float) -> tuple[Case, ...]:
    return tuple(Case(f"c{i}", "test", ("--model", "tiny"), e, 3 * e) for i, e in enumerate(expected))


def _written(out: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}


def test_cases_the_budget_cannot_fit_are_written_as_skipped(tmp_path: Path) -> None:
    clock, timeouts = FakeClock(), {}

    def runner(case: Case, timeout_s: float) -> dict[str, Any]:
        timeouts[case.name] = timeout_s
        clock.now += case.expected_s  # each case takes what it was expected to
        return {"case": case.name, "status": "ok"}

    cases = _cases(40, 30, 50, 20)
    write = lambda case, result: write_result(tmp_path, {"gpu": "test"}, case, result)  # noqa: E731
    results = run_within(cases, 100, runner, write, clock=clock, spent_s=5)
    assert [r["status"] for r in results] == ["ok", "ok", SKIPPED_BUDGET, "ok"]  # c3 fits what c2 could not
    assert timeouts == {"c0": 95, "c1": 55, "c3": 25}  # the smaller of the case's timeout and what is left
    written = _written(tmp_path)
    assert set(written) == {"c0", "c1", "c2", "c3"} and written["c2"]["status"] == SKIPPED_BUDGET
    assert "25 s left of the 100 s budget" in written["c2"]["reason"] and written["c2"]["machine"] == {"gpu": "test"}


def test_ctrl_c_keeps_what_finished_and_names_the_rest(tmp_path: Path) -> None:
    def runner(case: Case, timeout_s: float) -> dict[str, Any]:
        if case.name == "c1":
            raise KeyboardInterrupt
        return {"case": case.name, "status": "ok"}

    write = lambda case, result: write_result(tmp_path, {}, case, result)  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        run_within(_cases(1, 1, 1), 100, runner, write)
    statuses = {name: r["status"] for name, r in _written(tmp_path).items()}
    assert statuses == {"c0": "ok", "c1": INTERRUPTED, "c2": SKIPPED_INTERRUPTED}


def test_a_case_past_its_timeout_is_killed_with_its_children() -> None:
    child = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);" \
            " print('started', flush=True); time.sleep(60)"
    started = time.monotonic()
    killed, out, _, wall_s = execute([sys.executable, "-c", child], 2)
    assert killed == "killed-timeout" and out.strip() == "started" and wall_s < 30
    assert time.monotonic() - started < 30  # the grandchild, killed with the group, held no pipe open


def test_errors_against_measured_and_the_summary() -> None:
    row = {"status": "ok", "peak_bytes": 4 * 2**30, "predicted_peak_bytes": 5 * 2**30,
           "simulated_peak_bytes": 3 * 2**30, "reserved_peak_bytes": 6 * 2**30, "step_s_p50": 0.5, "mfu": 0.4}
    figures = figures_of_run(row)
    assert figures["errors"] == {"estimate_vs_measured": 0.25, "simulate_vs_measured": -0.25}
    assert figures_of_run({"peak_bytes": None, "predicted_peak_bytes": 1})["errors"]["estimate_vs_measured"] is None
    table = summary([{"case": "a", "status": "ok", "wall_s": 12.0, **figures},
                     {"case": "b", "status": SKIPPED_BUDGET}])
    lines = table.splitlines()
    assert lines[1].split() == ["a", "ok", "12", "4.00", "6.00", "0.500", "40.0%", "+25.00%", "-25.00%"]
    assert lines[2].split() == ["b", SKIPPED_BUDGET, "-", "-", "-", "-", "-", "-", "-"]


def test_a_dry_run_checks_a_cuda_spec_on_a_host_without_cuda(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from harness.cli.main import main
    from harness.core.errors import SpecError
    from harness.core.spec import RunSpec
    from harness.run.validate import validate

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SpecError, match="no CUDA device"):
        validate(RunSpec(model="tiny", device="cuda"))
    assert main(["run", "--dry-run", "--device", "cuda", "--strategy", "ddp", "--nproc", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["spec"]["device"] == "cuda"
    assert main(["run", "--dry-run", "--device", "cuda", "--strategy", "nope"]) == 2  # the rest is still checked


@pytest.mark.parametrize(("dtype", "kind"), [("bf16", "bf16"), ("bf16-pure", "bf16"), ("fp16", "bf16"),
                                             ("fp32", "fp32")])
def test_mfu_is_against_the_datasheet_peak_of_the_runs_precision(dtype: str, kind: str) -> None:
    from harness.core.spec import RunSpec
    from harness.models.zoo import config_for
    from harness.run.records import from_result
    from harness.train.measure import PEAK_FLOPS

    spec = RunSpec(model="1b", device="cuda", dtype=dtype, batch_size=4, seq_len=2048)
    rank = {"rank": 0, "step_s": [0.4, 0.5, 0.6], "alloc_peak_bytes": 1, "rss_peak_bytes": 1,
            "reserved_peak_bytes": 1, "device_used_bytes": 1, "param_bytes": 1, "param_digest": 0.0, "loss": 1.0}
    result = {"ranks": [rank], "layout": {"dp_replicate": 1, "dp_shard": 1, "tp": 1}, "device_name": "NVIDIA H200"}
    record = from_result(spec, result, 1.0)
    flops = config_for(spec).flops_per_token(spec.seq_len, frozen_base=False)
    assert record.mfu == pytest.approx(4 * 2048 / 0.5 * flops / PEAK_FLOPS[("H200", kind)])


def test_the_docs_page_lists_every_case_and_the_accuracy_table_every_case() -> None:
    page = (ROOT / "docs" / "cuda.md").read_text()
    cases, accuracy = page.split("## The cases")[1].split("## CUDA accuracy")
    planned = {m[0]: float(m[1]) for m in re.findall(r"^\| `([\w.-]+)` \|.*\| (\d+) \|$", cases, re.M)}
    assert planned == {case.name: case.expected_s for case in CASES}
    assert f"All together {total_expected_s():.0f} s" in cases
    assert re.findall(r"^\| `([\w.-]+)` \|", accuracy, re.M) == [case.name for case in CASES]


def test_the_scripts_docstring_names_only_flags_it_has() -> None:
    script = ROOT / "ci" / "gpu-check"
    helped = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60)
    usage = [line for line in script.read_text().split('"""')[1].splitlines() if line.strip().startswith("ci/")]
    named = set(re.findall(r"--[a-z][\w-]*", "\n".join(usage)))
    assert named and named <= set(re.findall(r"--[a-z][\w-]*", helped.stdout)), named


def test_the_accuracy_table_from_a_results_folder(tmp_path: Path) -> None:
    row = {"status": "ok", "peak_bytes": 8 * 2**30, "reserved_peak_bytes": 9 * 2**30, "step_s_p50": 0.25,
           "mfu": 0.5, "predicted_peak_bytes": 6 * 2**30, "simulated_peak_bytes": 8 * 2**30}
    single, oom, *_ = (case for case in CASES if not case.is_context)
    write_result(tmp_path, {}, single, {"case": single.name, "status": "ok", **figures_of_run(row)})
    write_result(tmp_path, {}, oom, {"case": oom.name, "status": "oom", **figures_of_run({"status": "oom"})})
    done = subprocess.run([sys.executable, str(ROOT / "ci" / "gpu-check"), "--table", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    page = (ROOT / "docs" / "cuda.md").read_text().split("## CUDA accuracy")[1].splitlines()
    assert lines[:2] == [line for line in page if line.startswith("|")][:2]  # the page's header
    rows = {cells[1].strip(" `"): [c.strip() for c in cells[2:-1]] for cells in (r.split("|") for r in lines[2:])}
    assert list(rows) == [case.name for case in CASES]
    assert rows[single.name] == ["8.00", "9.00", "6.00", "-25.00%", "8.00", "+0.00%", "0.250", "50.0%"]
    assert rows[oom.name][0] == "oom" and rows["cuda-context"][0] == "not run"


def test_the_install_pins_the_installed_cuda_torch_and_goes_one_by_one_when_all_at_once_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from gpu_check import machine

    cuda_torch = {"torch": "2.11.0+cu128", "cuda": "12.8", "cuda_available": True, "devices": 1}
    missing = [["peft", "deepspeed"], ["peft", "deepspeed"], ["deepspeed"]]
    calls: list[tuple[list[str], str]] = []

    def pip(command: list[str], timeout_s: float) -> tuple[bool, str]:
        constraints = Path(command[command.index("-c") + 1]).read_text()
        calls.append((command, constraints))
        return (len(calls) == 2, "no matching distribution")  # all at once fails, peft alone installs

    monkeypatch.setattr(machine, "torch_facts", lambda: cuda_torch)
    monkeypatch.setattr(machine, "missing_packages", lambda: missing.pop(0))
    monkeypatch.setattr(machine, "_pip", pip)
    done = machine.install(Path("/wheels"), 300)
    wanted = machine.requirements(["peft", "deepspeed"])
    assert [line.split(">")[0] for line in wanted] == ["peft", "deepspeed"]  # pyproject's lines, its order
    assert [c[1] for c in calls] == ["torch==2.11.0+cu128\n"] * 3  # every pip call keeps this torch
    assert [c[0][6:c[0].index("-c")] for c in calls] == [wanted, wanted[:1], wanted[1:]]
    assert all(c[0][-3:] == ["--no-index", "--find-links", "/wheels"] for c in calls)
    assert done["status"] == "incomplete" and done["still_missing"] == ["deepspeed"]
    assert not done["cuda_torch_replaced"] and done["one_by_one"] == {wanted[0]: "ok", wanted[1]: "failed"}


def test_the_dry_run_finds_a_command_the_cli_refuses(tmp_path: Path) -> None:
    from gpu_check.plan import check_plan

    bad = Case("bad", "test", ("--model", "nope", "--strategy", "single"), 1, 2)
    other = Case("other", "test", ("--model", "tiny", "--strategy", "fsdp_full_shard", "--nproc", "2"), 1, 2)
    checked = check_plan((bad, other), str(tmp_path))
    assert [c["check"] for c in checked] == ["failed", "parsed"]
    assert checked[0]["detail"].startswith("spacetime: error: --model: unknown model 'nope'")
    assert "tiny fsdp_full_shard x2" in checked[1]["detail"] and "--dry-run" not in checked[1]["command"]
