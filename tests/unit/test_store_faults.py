"""The store's faults through the commands, launching nothing: a damaged file is named and skipped by `show`,
`report`, `compare`, the gate and the asv suite's reader; a store that cannot be written is refused before
anything runs, in one line, by `run` and `sweep` (--predict/--simulate too) and `report --out`; a record the
store refuses mid-sweep is kept, said where, and the sweep goes on.  Every test checks that the earlier
records are still readable.  tests/filesystems.py makes the unwritable stores (ids name how)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

import harness.run.launch
import harness.run.sweep
from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.run import store
from harness.run.records import environment
from tests.filesystems import UNWRITABLE_HOW, can_mount, fill, ids, inject, tmpfs, unwritable
from tests.store_damage import DAMAGE, damaged_store, record

ROOT = Path(__file__).resolve().parents[2]
SWEEP = ["sweep", "--preset", "smoke", "--models", "tiny", "--strategies", "single,ddp,tp"]
COMMANDS = {"run": ["run"], "run --predict --simulate": ["run", "--predict", "--simulate"], "sweep": SWEEP,
            "sweep --predict --simulate": [*SWEEP, "--predict", "--simulate"]}
NOT_A_FOLDER = {"a-file": "is a file, not a folder", "under-a-file": "Not a directory",
                "under-proc": "a kernel file system"}
WHY = {"full": os.strerror(errno.ENOSPC), "read-only": os.strerror(errno.EROFS),
       "immutable": os.strerror(errno.EPERM), "no-permission": os.strerror(errno.EACCES), **NOT_A_FOLDER}
KINDS = {**{kind: ("real", 0) for kind in NOT_A_FOLDER}, **UNWRITABLE_HOW}
# the commands in a process of their own (to run under setpriv), each launch failing the command with 99
NO_LAUNCH = """
import contextlib, io, json, sys
import harness.run.launch, harness.run.sweep
def launched(*args, **kwargs):
    raise SystemExit(99)
harness.run.launch.launch = harness.run.sweep.launch = launched
from harness.cli.main import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


@pytest.fixture
def no_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    def launched(*args: object, **kwargs: object) -> None:
        raise AssertionError("a run was launched")

    monkeypatch.setattr(harness.run.launch, "launch", launched)
    monkeypatch.setattr(harness.run.sweep, "launch", launched)


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from harness.cli.main import main

    try:
        code = main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _commands(argvs: list[list[str]], prefix: list[str], capsys: pytest.CaptureFixture[str]) -> list[Any]:
    """(exit code, stderr) of each command: in this process, or in one under `prefix` (launch refused there)."""
    if not prefix:
        return [_main(argv, capsys)[::2] for argv in argvs]
    done = subprocess.run([*prefix, sys.executable, "-c", NO_LAUNCH, json.dumps(argvs)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@contextlib.contextmanager
def _store_of_kind(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """(the store folder, the CLI's prefix, the earlier records' seeds): earlier records where it can hold any."""
    seeds = [0, 1]

    def seed(folder: Path) -> None:
        for s in seeds:
            store.append([record(s)], folder)

    if kind in NOT_A_FOLDER:
        (tmp_path / "file").write_text("not a folder")
        where = {"a-file": tmp_path / "file", "under-a-file": tmp_path / "file" / "store",
                 "under-proc": Path("/proc/spacetime-store")}[kind]
        yield where, [], []
        return
    with unwritable(kind, tmp_path, monkeypatch, seed) as (folder, prefix):
        yield folder, prefix, seeds


def _files(folder: Path) -> list[tuple[str, int]]:
    if not folder.is_dir():
        return [(folder.name, folder.stat().st_size)] if folder.exists() else []
    return sorted((p.name, p.stat().st_size) for p in folder.iterdir())


@pytest.mark.parametrize("kind", list(KINDS), ids=ids(KINDS))
def test_a_store_that_cannot_be_written_is_refused_before_anything_runs(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        no_launch: None) -> None:
    with _store_of_kind(kind, tmp_path, monkeypatch) as (folder, prefix, seeds):
        before = _files(folder)
        results = _commands([[*argv, "--store", str(folder)] for argv in COMMANDS.values()], prefix, capsys)
        for name, (code, err) in zip(COMMANDS, results, strict=True):
            assert code == 2, (name, err)
            assert err.count("\n") == 1 and err.startswith(f"spacetime: error: --store: {folder} "), (name, err)
            assert WHY[kind] in err, (name, err)
        assert _files(folder) == before  # no probe, no record, no temporary left
        if folder.is_dir():  # the earlier records, where the kind can hold any
            assert [r["seed"] for r in store.rows(folder)] == seeds


@pytest.mark.parametrize("kind", list(KINDS), ids=ids(KINDS))
def test_report_out_that_cannot_be_written_is_refused_before_anything_is_written(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    records = tmp_path / "records"
    store.append([record(0), record(1)], records)
    (tmp_path / "out").mkdir()
    with _store_of_kind(kind, tmp_path / "out", monkeypatch) as (out, prefix, _):
        before = _files(out)
        [(code, err)] = _commands([["report", "--store", str(records), "--out", str(out)]], prefix, capsys)
        assert code == 2 and err.count("\n") == 1 and err.startswith(f"spacetime: error: --out: {out} "), err
        assert WHY[kind] in err and _files(out) == before
    assert [r["seed"] for r in store.rows(records)] == [0, 1]


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[Path, list[int], list[Path]]:
    """A store of good records from two commits, a damaged file of every kind between them."""
    where = tmp_path / "store"
    seeds, bad = damaged_store(where, list(DAMAGE), commits=("aaaa", "bbbb"))
    return where, seeds, bad


def _skipped_lines(err: str, bad: list[Path]) -> None:
    lines = err.splitlines()
    assert "Traceback" not in err
    for path in bad:
        assert sum(line.startswith(f"spacetime: skipped {path}: ") for line in lines) == 1, (path, err)


def test_show_report_and_compare_name_and_skip_each_damaged_file(
        damaged: tuple[Path, list[int], list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where, seeds, bad = damaged
    code, out, err = _main(["show", "--store", str(where)], capsys)
    assert code == 0 and f"{len(seeds)} record(s)" in out
    _skipped_lines(err, bad)
    code, out, err = _main(["report", "--store", str(where), "--out", str(tmp_path / "report")], capsys)
    assert code == 0 and (tmp_path / "report" / "index.html").is_file()
    _skipped_lines(err, bad)
    code, out, err = _main(["compare", "--store", str(where), "--baseline", "aaaa", "--candidate", "bbbb"],
                           capsys)
    assert code == 0 and "ok:" in out
    _skipped_lines(err, bad)
    assert [r["seed"] for r in store.rows(where)] == seeds


def test_the_gate_and_the_command_in_its_own_process_skip_each_damaged_file(
        damaged: tuple[Path, list[int], list[Path]]) -> None:
    where, _, bad = damaged
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    gate = subprocess.run([str(ROOT / "ci" / "gate"), "--store", str(where)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert gate.returncode == 0 and "ok:" in gate.stdout, gate.stdout + gate.stderr
    _skipped_lines(gate.stderr, bad)
    show = subprocess.run([sys.executable, "-m", "harness.cli", "show", "--store", str(where)], capture_output=True,
                          text=True, timeout=300)
    assert show.returncode == 0, show.stderr
    _skipped_lines(show.stderr, bad)


def test_the_asv_suites_reader_skips_each_damaged_file(
        damaged: tuple[Path, list[int], list[Path]], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.accuracy import gather

    where, seeds, bad = damaged
    [case] = gather([where]).values()
    assert case["measured_per_rank"] == [None] * len(seeds)  # one case, every good record a sample of it
    _skipped_lines(capsys.readouterr().err, bad)


def test_the_asv_suite_refuses_a_store_that_cannot_be_written_before_it_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_launch: None) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.common import measure_specs
    from harness.core.errors import SpecError

    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("SPACETIME_STORE", str(tmp_path / "file"))
    with pytest.raises(SpecError, match="^--store: .* is a file, not a folder$"):
        measure_specs({"tiny/single": RunSpec()})


FULL_HOW = "tmpfs-filled" if can_mount() else "injected-ENOSPC"


@pytest.mark.parametrize("command", ["run", "sweep"])
@pytest.mark.parametrize("how", [FULL_HOW])
def test_a_disk_that_fills_while_measuring_loses_no_record(
        how: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The disk fills while the second run measures: the first run's record is in the store, the later ones
    are kept in a store in the temporary folder and named, every run still runs, and the exit code is 1."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with contextlib.ExitStack() as stack:
        disk = stack.enter_context(tmpfs(tmp_path / "disk")) if how == "tmpfs-filled" else tmp_path / "disk"
        folder = disk / "store"
        store.append([record(0)], folder)  # an earlier record
        launched: list[RunSpec] = []

        def launch(spec: RunSpec, rdzv: object = None) -> Record:
            launched.append(spec)
            if len(launched) == (2 if command == "sweep" else 1):
                fill(disk) if how == "tmpfs-filled" else inject(monkeypatch, folder, errno.ENOSPC)
            return Record(spec=spec, status="ok", peak_bytes=len(launched), env=environment({}))

        monkeypatch.setattr(harness.run.launch, "launch", launch)
        monkeypatch.setattr(harness.run.sweep, "launch", launch)
        code, _, err = _main([*COMMANDS[command], "--store", str(folder)], capsys)
        stored = store.rows(folder)
    kept = [Path(line.split("kept the record in ")[1].split(" (")[0]) for line in err.splitlines()
            if line.startswith(f"spacetime: {folder} cannot be written: {os.strerror(errno.ENOSPC)}; kept")]
    assert code == 1 and "Traceback" not in err
    assert len(launched) == (3 if command == "sweep" else 1)  # the sweep went on
    assert [r["peak_bytes"] for r in stored] == [1000] + ([1] if command == "sweep" else [])
    assert [store.rows(path.parent)[i]["peak_bytes"] for i, path in enumerate(kept)] == (
        [2, 3] if command == "sweep" else [1])
    assert [r["strategy"] for r in store.rows(kept[0].parent)] == [s.strategy for s in launched][-len(kept):]


def test_a_record_that_no_folder_takes_is_printed_whole_as_json(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    for folder in (tmp_path / "store", tmp_path / "tmp"):
        folder.mkdir()
        inject(monkeypatch, folder, errno.ENOSPC)
    lost = record(7)
    assert store.save([lost], tmp_path / "store") is False
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"spacetime: {tmp_path / 'store'} cannot be written: ")
    assert json.loads(line.split("; the record, as JSON: ", 1)[1]) == json.loads(json.dumps(lost.to_row()))
    assert store.UNSAVED[-1] == "stderr"


def test_the_check_leaves_nothing_behind(tmp_path: Path) -> None:
    store.check_writable(tmp_path / "a" / "b" / "store")
    assert list(tmp_path.iterdir()) == []  # not even the folders it made to probe
    (tmp_path / "store").mkdir()
    store.check_writable(tmp_path / "store")
    assert list((tmp_path / "store").iterdir()) == []


