"""Bad input never crashes: hypothesis builds flag combinations for `run --dry-run`, `sweep --dry-run`,
`estimate` and `simulate` (its parser and validation; the fake-tensor run itself is stubbed) from valid values,
boundary values and garbage, and feeds them to `harness.cli.main.main` in this process.

Each must end one of three ways, never with a traceback:
- exit 0 (what it prints parses: the dry runs' JSON, estimate's `--json` line);
- exit 2 with exactly one stderr line, `spacetime: error: --FLAG...`, where --FLAG is an option of that command;
- exit 1 with exactly one stderr line, `spacetime: unsupported: ...`: a well-formed spec this machine or
  strategy cannot run, which is what `run --dry-run`, `estimate` and `simulate` answer for one; or
  `spacetime: not modelled: ...`, estimate's and simulate's answer for a knob they have no rule for.

Nothing is launched or stored: the launcher, the sweep's runner, the store's writers and subprocesses fail the
test if called, and the store folder the flags name must stay empty.

Profile (`PROFILE` below): 1,200 examples, derandomized (the same examples on every run, here and in CI), no
example database, a 10 s deadline per example (each takes milliseconds once the module fixture has imported
torch and every strategy).  $SPACETIME_BAD_INPUT_EXAMPLES runs more.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from harness.cli.main import build_parser, main
from tests.bad_input_values import COMMANDS, argv_for

PROFILE = settings(max_examples=int(os.environ.get("SPACETIME_BAD_INPUT_EXAMPLES", 1200)), derandomize=True,
                   database=None, deadline=timedelta(seconds=10), print_blob=True)
FLAG = re.compile(r"^spacetime: error: (?:argument )?(--[a-z][a-z0-9-]*)")


class SimulationReached(Exception):
    """The spec passed simulate's validation; the fake-tensor run would start here."""


def _forbidden(what: str) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{what} was called: bad input must launch and store nothing")

    return call


@functools.cache
def _options(command: str) -> frozenset[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return frozenset(option for action in sub.choices[command]._actions for option in action.option_strings)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder for the generated files, with every strategy and command imported once and the launcher, the
    store's writers and subprocesses replaced by failures."""
    from harness.core.host import git_commit, gpu_driver
    from harness.run import launch, store, sweep
    from harness.simulate import generate_runner, runner, separate_process
    from strategies import list_strategies

    folder = tmp_path_factory.mktemp("bad-input")
    list_strategies()
    gpu_driver(), git_commit()  # a record's environment (an `unsupported` row's too), read once and cached
    for command in (["estimate"], ["run", "--dry-run"], ["sweep", "--dry-run", "--preset", "gpu"]):
        _run(command if command == ["estimate"] else command + ["--no-store"])
    for name in ("zero3", "accelerate_ddp", "fsdp1_full_shard"):
        _run(["run", "--dry-run", "--strategy", name, "--nproc", "2"])
    real_check = runner.check_simulable

    real_generation_check = generate_runner.check_generation_simulable

    def stub(spec: Any, device: str = "cpu") -> Any:
        real_check(spec)
        raise SimulationReached

    def generation_stub(spec: Any, device: str = "cpu") -> Any:
        real_generation_check(spec)
        raise SimulationReached

    with pytest.MonkeyPatch.context() as patch:
        for module, name in ((launch, "launch"), (sweep, "launch"), (sweep, "run_sweep"), (store, "append"),
                             (store, "save"), (separate_process, "simulated_peak"), (subprocess, "Popen")):
            patch.setattr(module, name, _forbidden(f"{module.__name__}.{name}"), raising=False)
        patch.setattr(runner, "simulate", stub)
        patch.setattr(generate_runner, "simulate_generation", generation_stub)
        yield folder


def _run(argv: list[str]) -> tuple[int, str, str]:
    """main(argv) with stdout and stderr as the terminal's are: UTF-8, strict on stdout, backslashreplace on
    stderr (Python's own setting), so output that cannot be encoded fails as it would there."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except SimulationReached:
            code = 0
        out.flush()
        err.flush()
    return code, out.buffer.getvalue().decode(), err.buffer.getvalue().decode()  # type: ignore[attr-defined]


def _check_output(command: str, argv: list[str], stdout: str) -> None:
    if command == "run":
        json.loads(stdout)
    elif command == "sweep":
        for line in stdout.splitlines():
            assert json.loads(line)["status"] in ("planned", "unsupported")
    elif command == "estimate" and "--json" in argv:
        json.loads(stdout.strip().splitlines()[-1])


@PROFILE
@given(st.data())
def test_generated_flags_end_in_exit_0_1_or_one_line_naming_the_flag(sandbox: Path, data: st.DataObject) -> None:
    command = data.draw(st.sampled_from(COMMANDS))
    argv = data.draw(argv_for(command, sandbox))
    store = sandbox / "store"
    code, stdout, stderr = _run(argv)
    lines = stderr.splitlines()
    event(f"{command}: exit {code}")
    context = f"spacetime {' '.join(map(repr, argv))}\nexit {code}\nstderr: {stderr[-2000:]}"
    assert not (store.exists() and any(store.iterdir())), context
    if code == 0:
        _check_output(command, argv, stdout)
    elif code == 2:
        assert len(lines) == 1, context
        match = FLAG.match(lines[0])
        assert match and match.group(1) in _options(command), context
    else:
        assert code == 1 and len(lines) == 1, context
        assert lines[0].startswith(("spacetime: unsupported: ", "spacetime: not modelled: ")), context


def test_every_option_of_the_four_commands_is_generated() -> None:
    """A flag added to run, sweep, estimate or simulate is fuzzed too (tests/bad_input_values.py)."""
    from tests.bad_input_values import FILE_FLAGS, FLAGS

    for command in COMMANDS:
        generated = {flag for flag, _ in FLAGS[command]} | {*FILE_FLAGS[command], "--dry-run", "-h", "--help"}
        assert _options(command) <= generated, _options(command) - generated
