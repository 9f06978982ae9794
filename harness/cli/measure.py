"""`spacetime run` (one measured spec) and `spacetime sweep` (a preset matrix of them)."""

from __future__ import annotations

import argparse
import functools
import json
import signal
import sys
from collections.abc import Callable
from typing import Any

from harness.cli.flags import NPROC_HELP, PRESETS_DEFAULT, int_arg, rendezvous_from, spec_fields, spec_flags
from harness.cli.generate_flags import generate_flags
from harness.cli.output_flags import add_output_flags
from harness.cli.progress_flag import add_progress_flags
from harness.core.errors import SpecError, Unsupported
from harness.core.progress import current
from harness.core.spec import RunSpec
from harness.run.presets import PRESETS


def add_parsers(sub: Any) -> None:
    run = sub.add_parser("run", help="measure one spec under torchrun")
    spec_flags(run, sweep=False)
    generate_flags(run)
    run.add_argument("--json", action="store_true", help="print the record as one JSON line, last on stdout")
    _add_side_by_side_flags(run)
    add_output_flags(run)
    add_progress_flags(run)
    run.add_argument("--dry-run", action="store_true", help="validate and print the spec and the framework's "
                     "config (DeepSpeed's JSON) without launching; --device cuda is checked for a host with "
                     "the GPUs it needs")
    sweep = sub.add_parser("sweep", help="measure a preset matrix of specs")
    sweep.add_argument("--preset", default="smoke", help=f"{', '.join(PRESETS)} (harness/run/presets.py)")
    sweep.add_argument("--models", help="comma-separated zoo names (replace the preset's)")
    sweep.add_argument("--strategies", help="comma-separated strategy names (replace the preset's)")
    sweep.add_argument("--nproc", type=int_arg, default=None, help=f"{NPROC_HELP}, for every strategy but single "
                       f"{PRESETS_DEFAULT}")
    sweep.add_argument("--global-batch", type=int_arg, default=None, help="sequences per step, all ranks "
                       f"{PRESETS_DEFAULT}")
    sweep.add_argument("--repeat", type=int_arg, default=1, help="run the whole matrix N times (the gate uses the "
                       "spread of repeats)")
    sweep.add_argument("--exact-preset", action="store_true", help="run the preset as defined, without the "
                       "substitutions it makes on this machine (16-bit rows on a CPU without fast bf16)")
    sweep.add_argument("--fail-on-error", action="store_true", help="exit 1 if any run is not ok")
    sweep.add_argument("--dry-run", action="store_true", help="validate the planned specs and print each as one "
                       "JSON line (planned, or unsupported with the reason) without launching")
    _add_side_by_side_flags(sweep)
    add_output_flags(sweep)
    add_progress_flags(sweep)
    spec_flags(sweep, sweep=True)
    generate_flags(sweep, sweep=True)


def _add_side_by_side_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--predict", action="store_true", help="store estimate's peak beside the measured one")
    parser.add_argument("--simulate", action="store_true", help="store simulate's peak beside the measured one "
                        "(a fake-tensor run of the same spec, in a process of its own)")


def _stoppable(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Ctrl-C or SIGTERM: the run measuring is killed and stored as `interrupted` (by launch, and by the sweep
    or cmd_run), the records finished before it are kept, one line says so, and the exit status is 128 + the
    signal's number (130 for SIGINT, 143 for SIGTERM), as a shell reports a command the signal stopped."""
    @functools.wraps(command)
    def stoppable(args: argparse.Namespace) -> int:
        from harness.run.processes import sigterm_interrupts, stop_signal

        try:
            with sigterm_interrupts():
                return command(args)
        except KeyboardInterrupt as stop:
            current().clear()
            print(f"spacetime: {_stopped(stop, args)}", file=sys.stderr)
            return 128 + stop_signal(stop)

    return stoppable


def _stopped(stop: KeyboardInterrupt, args: argparse.Namespace) -> str:
    from harness.run.processes import stop_signal
    from harness.run.store import default_store

    line = f"interrupted by {signal.Signals(stop_signal(stop)).name}"
    if getattr(stop, "record", None) is not None:
        line += "; the run measuring was killed" + ("" if args.no_store else " and stored as `interrupted`")
    if not args.no_store:
        kept = "records finished before it are kept" if args.command == "sweep" else "store"
        line += f"; {kept}: {args.store or default_store()}"
    return line


@_stoppable
def cmd_run(args: argparse.Namespace) -> int:
    from harness.core.record import FOLLOWER, Record
    from harness.report.tables import print_records
    from harness.run import store
    from harness.run.annotate import annotate
    from harness.run.launch import launch
    from harness.run.processes import Interrupted
    from harness.run.records import failed_record
    from harness.run.validate import validate
    from strategies import get_strategy

    spec = RunSpec(**spec_fields(args))
    rdzv = rendezvous_from(args)
    _check_store(args)
    record: Record | None = None
    try:
        spec = validate(spec, planned=args.dry_run)
        if args.dry_run:  # what would run, launching nothing
            config = get_strategy(spec.strategy).framework_config(spec)
            print(json.dumps({"spec": json.loads(spec.to_json()), "framework_config": config}, indent=2))
            return 0
        record = launch(spec, rdzv)
        annotate(record, args.predict, args.simulate)
    except Interrupted as stop:  # the run, killed, is kept as `interrupted`
        if stop.record is not None and not args.no_store:
            store.save([stop.record], args.store)
        raise
    except KeyboardInterrupt:  # stopped while predicting or simulating: the measured record is whole; keep it
        if record is not None and not args.no_store:
            store.save([record], args.store)
        raise
    except Unsupported as why:
        if args.dry_run:  # a dry run stores nothing, whatever it finds
            print(f"spacetime: unsupported: {why}", file=sys.stderr)
            return 1
        record = failed_record(spec, "unsupported", str(why))
    stored = args.no_store or record.status == FOLLOWER or store.save([record], args.store)
    current().clear()  # the progress line goes before the record is printed
    if args.json:
        print(json.dumps(record.to_row()))
    else:
        print_records([record.to_row()], fmt=args.format, wide=args.wide)
    return 0 if record.status in ("ok", FOLLOWER) and stored else 1


def _check_store(args: argparse.Namespace) -> None:
    """Before anything runs, the store must take a record, or one line says why (exit 2).  A dry run and a
    follower node store nothing."""
    from harness.run.store import check_writable, default_store

    if not (args.no_store or getattr(args, "dry_run", False) or args.node_rank > 0):
        check_writable(args.store or default_store())


def _names(text: str | None, flag: str) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise SpecError(flag, f"names nothing: {text!r}", "comma-separated names")
    return names


def _planned(args: argparse.Namespace, notes: list[str] | None = None) -> list[RunSpec]:
    """The sweep's specs from the preset and the flags, repeats included; the preset's note for this machine,
    if any, is added to `notes`."""
    from harness.core.limits import check_int
    from harness.run.presets import plan, plan_note

    check_int("repeat", args.repeat)
    models = _names(args.models, "models")
    if (args.model_config_file or args.sets) and models and len(models) > 1:
        raise SpecError("models", "--model-config/--set describe one model", "a single name")
    fields = spec_fields(args, model=models[0] if models else "tiny")
    if "model" in fields:
        models = (fields.pop("model"),)  # the custom model replaces the preset's
    overrides = {k: fields.pop(k, None) for k in ("seq_len", "warmup", "steps", "nproc")}
    specs = plan(args.preset, RunSpec(**fields), exact=args.exact_preset, global_batch=args.global_batch,
                 models=models, strategies=_names(args.strategies, "strategies"), **overrides)
    note = None if args.exact_preset else plan_note(args.preset, RunSpec(**fields))
    if note and notes is not None:
        notes.append(note)
    return [spec for _ in range(args.repeat) for spec in specs]


def _dry_sweep(checked: list[Any]) -> int:
    """Each validated spec (a RunSpec, or an `unsupported` Record) as one JSON line, launching nothing."""
    from harness.core.record import Record

    for item in checked:
        if isinstance(item, Record):
            line = {"status": "unsupported", "reason": item.error, "spec": json.loads(item.spec.to_json())}
        else:
            line = {"status": "planned", "spec": json.loads(item.to_json())}
        print(json.dumps(line))
    return 0


@_stoppable
def cmd_sweep(args: argparse.Namespace) -> int:
    from harness.report.console import console
    from harness.report.knob_tables import TABLES
    from harness.report.tables import print_records
    from harness.run.presets import PRESETS, sweep_error
    from harness.run.store import UNSAVED, default_store
    from harness.run.sweep import run_sweep, validate_all

    notes: list[str] = []
    try:  # bad input: one line naming the sweep's flag, before the preset's note or any run
        specs = _planned(args, notes)
        rdzv = rendezvous_from(args)
        checked = validate_all(specs[: len(specs) // args.repeat])
    except SpecError as bad:
        raise sweep_error(bad) from None
    for note in notes:
        print(note, file=sys.stderr)
    if args.dry_run:
        return _dry_sweep(checked)
    store_path = None if args.no_store else (args.store or default_store())
    _check_store(args)
    unsaved = len(UNSAVED)
    records = run_sweep(specs, store_path, rdzv=rdzv,
                        predict=args.predict, simulate=args.simulate)
    rows = [r.to_row() for r in records]
    print_records(rows, title=f"spacetime sweep --preset {args.preset}", fmt=args.format, wide=args.wide)
    extra = TABLES.get(PRESETS[args.preset].table)
    if extra and args.format == "table":
        console().print(extra(rows[: len(rows) // args.repeat], wide=args.wide))
    ok = sum(r["status"] == "ok" for r in rows)
    where = f" -> {store_path}" if store_path else ""
    print(f"{ok}/{len(rows)} ok{where}", file=sys.stdout if args.format == "table" else sys.stderr)
    lost = len(UNSAVED) - unsaved
    if lost:
        print(f"spacetime: {lost} record(s) could not be stored in {store_path}; the lines above say where "
              "each is kept", file=sys.stderr)
    return 1 if (args.fail_on_error and ok < len(rows)) or lost else 0
