"""Progress lines (harness/core/progress.py): when they show, how a terminal's line differs from plain lines,
the ranks' phase file the launcher follows, a sweep's rows, and simulate's phases with stdout left clean."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.core import progress
from harness.core.errors import SpecError
from harness.core.progress import PHASE_FILE_ENV, Progress, clock, following, phase_env, rank_phase, wanted
from harness.core.spec import RunSpec
from harness.run.sweep import row_prefix, run_sweep


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def reporter_reset(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv(progress.ENV, raising=False)
    yield
    progress.configure("off")


@pytest.mark.parametrize("mode, env, tty, shown", [
    ("auto", None, True, True), ("auto", None, False, False),
    ("auto", "1", False, True), ("auto", "0", True, False), ("auto", "junk", True, True),
    ("on", None, False, True), ("on", "0", False, True), ("off", "1", True, False), ("off", None, True, False),
])
def test_auto_follows_the_terminal_and_the_environment_a_flag_overrides_both(
        mode: str, env: str | None, tty: bool, shown: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if env is not None:
        monkeypatch.setenv(progress.ENV, env)
    assert wanted(mode, Terminal() if tty else io.StringIO()) is shown


def test_an_unknown_mode_is_one_line_naming_the_flag_and_the_values() -> None:
    with pytest.raises(SpecError) as bad:
        wanted("loud", io.StringIO())
    assert "progress" in str(bad.value) and "auto, on, off" in str(bad.value) and "\n" not in str(bad.value)


def test_plain_lines_off_a_terminal_with_the_prefix_and_no_control_characters() -> None:
    out = io.StringIO()
    shown = Progress(out, enabled=True)
    assert not shown.live
    shown.show("build: the counter")
    with shown.prefixed("sweep 1/2: "):
        shown.show("warmup: step 1/2")
        shown.note("kept")
    shown.show("timed: step 1/2")
    shown.clear()
    assert out.getvalue() == "build: the counter\nsweep 1/2: warmup: step 1/2\nsweep 1/2: kept\ntimed: step 1/2\n"


def test_one_rewritten_line_on_a_terminal_erased_at_the_end() -> None:
    out = Terminal()
    shown = Progress(out, enabled=True, tick_s=60)
    assert shown.live
    shown.show("rendezvous")
    shown.show("warmup: step 1/2")
    shown.note("kept")
    shown.clear()
    text = out.getvalue()
    assert "\n" not in text.replace("kept\n", "")  # the only newline ends the note
    assert text.startswith("\r\x1b[Krendezvous\r\x1b[Kwarmup: step 1/2\r\x1b[Kkept\n\r\x1b[Kwarmup: step 1/2")
    assert text.endswith("\r\x1b[K")


def test_a_terminals_line_ticks_the_seconds_of_the_step() -> None:
    now = [100.0]
    out = Terminal()
    shown = Progress(out, enabled=True, tick_s=3600, now=lambda: now[0])  # the ticker sleeps: drawn by hand
    shown.show("build: the counter")
    now[0] += 75
    with shown._lock:
        shown._draw()
    shown.clear()
    assert out.getvalue().count("build: the counter") == 2
    assert f"build: the counter ({clock(75)})" in out.getvalue() and clock(75) == "1m15s"


def test_a_disabled_reporter_writes_nothing() -> None:
    out = Terminal()
    quiet = Progress(out, enabled=False)
    quiet.show("x")
    quiet.note("y")
    quiet.clear()
    assert out.getvalue() == ""


def test_configure_makes_the_current_reporter_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert progress.configure("auto").enabled is False  # pytest's stderr is no terminal
    progress.configure("on").show("build: x")
    assert progress.current().enabled
    assert capsys.readouterr() == ("", "build: x\n")


def test_the_launcher_follows_the_phase_lines_rank_0_appends(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert phase_env(tmp_path) == {}  # progress off: the ranks are told nothing, write nothing
    progress.configure("on", io.StringIO())
    env = phase_env(tmp_path)
    monkeypatch.setenv(PHASE_FILE_ENV, env[PHASE_FILE_ENV])
    seen: list[str] = []
    with following(env, seen.append, every_s=0.01):
        rank_phase("rendezvous: 2 ranks")
        monkeypatch.setenv("LOCAL_RANK", "1")
        rank_phase("from the host's second rank: not written")
        monkeypatch.setenv("LOCAL_RANK", "0")
        rank_phase("warmup: step 1/2\nsplit")
        with open(env[PHASE_FILE_ENV], "a") as f:
            f.write("timed: half a li")  # not complete yet: not shown
    assert seen == ["rendezvous: 2 ranks", "warmup: step 1/2 split"]


def test_following_nothing_when_progress_is_off() -> None:
    seen: list[str] = []
    with following({}, seen.append):
        pass
    assert seen == []


def test_a_rows_prefix_has_the_sweeps_elapsed_time_and_the_mean_rows_eta() -> None:
    spec = RunSpec(model="tiny", strategy="ddp", nproc=2)
    assert row_prefix(0, 4, 0.0, 5.0, spec) == "sweep 1/4 5 s ETA - | ddp tiny x2 | "
    assert row_prefix(2, 4, 60.0, 0.0, spec) == f"sweep 3/4 1m00s ETA {clock(60.0 / 2 * 2)} | ddp tiny x2 | "
    assert row_prefix(2, 4, 60.0, 20.0, spec) == f"sweep 3/4 {clock(80)} ETA {clock(60.0 - 20)} | ddp tiny x2 | "
    assert row_prefix(2, 4, 60.0, 90.0, spec).startswith(f"sweep 3/4 {clock(150)} ETA 0 s |")  # late: not < 0


def test_a_sweep_shows_each_row_and_its_status(monkeypatch: pytest.MonkeyPatch) -> None:
    from spacetime_testplugins.faults import FAULT_DIR_ENV

    monkeypatch.delenv(FAULT_DIR_ENV, raising=False)  # the fault strategies are then unsupported: no launch
    out = io.StringIO()
    progress.configure("on", out)
    records = run_sweep([RunSpec(strategy="fault_raise", nproc=2), RunSpec(strategy="fault_kill", nproc=2)], None)
    assert [r.status for r in records] == ["unsupported", "unsupported"]
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"sweep 1/2 \d+ s ETA - \| fault_raise tiny x2 \| unsupported in \d+ s", lines[0])
    assert re.fullmatch(r"sweep 2/2 \d+ s ETA \d+ s \| fault_kill tiny x2 \| unsupported in \d+ s", lines[1])
    out.truncate(0)
    run_sweep([RunSpec(strategy="fault_raise", nproc=2)], None, show_progress=False)
    assert out.getvalue() == ""


def test_simulate_shows_its_phases_on_stderr_and_keeps_json_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli.main import main

    args = ["simulate", "--model", "tiny", "--batch-size", "2", "--seq-len", "32", "--device", "cpu", "--json"]
    assert main([*args, "--progress"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["peak_bytes"] > 0 and len(out.splitlines()) == 1
    phases = [line.split(":")[1].split()[0] for line in err.splitlines()]
    assert phases == ["import", "build", "wrap", "step", "step"]
    assert main([*args, "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
