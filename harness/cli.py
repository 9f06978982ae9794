"""The `spacetime` command: run, sweep, strategies, zoo, show."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from rich.table import Table

from harness import estimate, simulate_cli
from harness.cli_flags import float_arg, int_arg, spec_fields, spec_flags
from harness.nodes import rendezvous_from
from harness.report import console
from harness.spec import RunSpec, SpecError, Unsupported

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one line (no usage block) and exits 2."""

    def error(self, message: str) -> NoReturn:
        print(f"spacetime: error: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="spacetime", description="Memory versus time of LLM training, per strategy.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="measure one spec under torchrun")
    spec_flags(run, sweep=False)
    run.add_argument("--json", action="store_true", help="print the record as one JSON line, last on stdout")
    add_side_by_side_flags(run)
    run.add_argument("--dry-run", action="store_true", help="validate and print the spec and the framework's "
                     "config (DeepSpeed's JSON) without launching")
    sweep = sub.add_parser("sweep", help="measure a preset matrix of specs")
    sweep.add_argument("--preset", default="smoke", help="smoke, strategies, memory, gpu, levers, lora-ranks "
                       "or accuracy (harness/sweep.py)")
    sweep.add_argument("--models", help="comma-separated zoo names (replace the preset's)")
    sweep.add_argument("--strategies", help="comma-separated strategy names (replace the preset's)")
    sweep.add_argument("--nproc", type=int_arg, default=None, help="ranks for every strategy but single")
    sweep.add_argument("--global-batch", type=int_arg, default=None, help="sequences per step, all ranks")
    sweep.add_argument("--repeat", type=int_arg, default=1, help="run the whole matrix N times (the gate uses the "
                       "spread of repeats)")
    sweep.add_argument("--exact-preset", action="store_true", help="run the preset as defined, without the "
                       "substitutions it makes on this machine (16-bit rows on a CPU without fast bf16)")
    sweep.add_argument("--fail-on-error", action="store_true", help="exit 1 if any run is not ok")
    add_side_by_side_flags(sweep)
    spec_flags(sweep, sweep=True)
    estimate.add_parser(sub, spec_flags)
    simulate_cli.add_parser(sub, spec_flags)
    sub.add_parser("strategies", help="list strategies")
    sub.add_parser("zoo", help="list models with exact parameter counts")
    show = sub.add_parser("show", help="stored records as a table")
    show.add_argument("--model")
    show.add_argument("--strategy")
    show.add_argument("--status")
    show.add_argument("--last", type=int_arg, default=None, help="only the newest N")
    show.add_argument("--store", type=Path, default=None)
    report = sub.add_parser("report", help="newest record of each case: tables per model, plots, HTML page")
    report.add_argument("--model")
    report.add_argument("--strategy")
    report.add_argument("--out", type=Path, default=Path("spacetime-report"), help="folder for PNGs and HTML")
    report.add_argument("--store", type=Path, default=None)
    compare = sub.add_parser("compare", help="regression gate: a commit's records against a baseline commit's")
    compare.add_argument("--baseline", help="commit (prefix) to compare against; default: the one stored "
                         "before the candidate")
    compare.add_argument("--candidate", help="commit (prefix) to check; default: the newest stored")
    compare.add_argument("--time-tolerance", type=float_arg, default=0.10,
                         help="smallest relative slowdown that counts (the records' spread can widen it)")
    compare.add_argument("--store", type=Path, default=None)
    return parser


def add_side_by_side_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--predict", action="store_true", help="store estimate's peak beside the measured one")
    parser.add_argument("--simulate", action="store_true", help="store simulate's peak beside the measured one "
                        "(a fake-tensor run of the same spec, in a process of its own)")


def cmd_run(args: argparse.Namespace) -> int:
    from harness import store
    from harness.launch import launch
    from harness.record import FOLLOWER, failed
    from harness.report import print_records
    from harness.side_by_side import annotate
    from strategies import get_strategy

    spec = RunSpec(**spec_fields(args))
    rdzv = rendezvous_from(args)
    try:
        spec = spec.validate()
        if args.dry_run:  # what would run, launching nothing
            config = get_strategy(spec.strategy).framework_config(spec)
            print(json.dumps({"spec": json.loads(spec.to_json()), "framework_config": config}, indent=2))
            return 0
        record = annotate(launch(spec, rdzv), args.predict, args.simulate)
    except Unsupported as why:
        record = failed(spec, "unsupported", str(why))
    if not args.no_store and record.status != FOLLOWER:
        store.append([record], args.store)
    if args.json:
        print(json.dumps(record.to_row()))
    else:
        print_records([record.to_row()])
    return 0 if record.status in ("ok", FOLLOWER) else 1


def _names(text: str | None) -> tuple[str, ...] | None:
    return tuple(n.strip() for n in text.split(",") if n.strip()) if text else None


def cmd_sweep(args: argparse.Namespace) -> int:
    from harness.knob_tables import TABLES
    from harness.report import print_records
    from harness.store import default_store
    from harness.sweep import PRESETS, plan, plan_note, run_sweep

    models = _names(args.models)
    if (args.model_config_file or args.sets) and models and len(models) > 1:
        raise SpecError("models", "--model-config/--set describe one model", "a single name")
    fields = spec_fields(args, model=models[0] if models else "tiny")
    if "model" in fields:
        models = (fields.pop("model"),)  # the custom model replaces the preset's
    overrides = {k: fields.pop(k, None) for k in ("seq_len", "warmup", "steps", "nproc")}
    specs = plan(args.preset, RunSpec(**fields), exact=args.exact_preset, global_batch=args.global_batch,
                 models=models, strategies=_names(args.strategies), **overrides)
    if args.repeat < 1:
        raise SpecError("repeat", f"must be >= 1, got {args.repeat}")
    specs = [spec for _ in range(args.repeat) for spec in specs]
    note = None if args.exact_preset else plan_note(args.preset, RunSpec(**fields))
    if note:
        print(note, file=sys.stderr)
    store_path = None if args.no_store else (args.store or default_store())
    records = run_sweep(specs, store_path, show_progress=sys.stderr.isatty(), rdzv=rendezvous_from(args),
                        predict=args.predict, simulate=args.simulate)
    rows = [r.to_row() for r in records]
    print_records(rows, title=f"spacetime sweep --preset {args.preset}")
    extra = TABLES.get(PRESETS[args.preset].table)
    if extra:
        console().print(extra(rows[: len(rows) // args.repeat]))
    ok = sum(r["status"] == "ok" for r in rows)
    where = f" -> {store_path}" if store_path else ""
    print(f"{ok}/{len(rows)} ok{where}")
    return 1 if args.fail_on_error and ok < len(rows) else 0


def cmd_strategies(_: argparse.Namespace) -> int:
    from strategies import list_strategies

    table = Table(header_style="bold")
    for col in ("strategy", "what it does", "shards / offloads", "estimate", "simulate"):
        table.add_column(col)
    for s in list_strategies():
        table.add_row(s.name, s.description, s.shards, "yes" if _has_memory_model(s) else "no",
                      "no" if s.simulate_why_not else "yes")
    console().print(table)
    return 0


def _has_memory_model(strategy: Any) -> bool:
    """Whether `spacetime estimate` models the strategy (asked for a 2-rank spec)."""
    from harness.spec import RunSpec

    try:
        return strategy.memory_profile(RunSpec(strategy=strategy.name, nproc=2)) is not None
    except Exception:  # a plugin's profile may need a spec it validates first: it says so when estimated
        return False


def cmd_zoo(_: argparse.Namespace) -> int:
    from harness.zoo import ZOO

    table = Table(header_style="bold")
    for col in ("model", "params", "dim", "layers", "heads", "kv heads", "ffn", "vocab", "tied", "measure"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for c in ZOO.values():
        table.add_row(c.name, f"{c.param_count():,}", str(c.dim), str(c.n_layers), str(c.n_heads),
                      str(c.n_kv_heads), str(c.ffn_dim), f"{c.vocab_size:,}", "yes" if c.tie_embeddings else "no",
                      "yes" if c.measurable else "predict/simulate only")
    console().print(table)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from harness import store
    from harness.report import print_records

    rows = store.rows(args.store, model=args.model, strategy=args.strategy, status=args.status)
    if args.last:
        rows = rows[-args.last:]
    if not rows:
        print(f"no records in {args.store or store.default_store()} match")
        return 0
    print_records(rows, title=f"{len(rows)} record(s)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness import store
    from harness.plots import by_model, latest, write_report
    from harness.report import print_records

    rows = latest(store.rows(args.store, model=args.model, strategy=args.strategy))
    if not rows:
        print(f"no records in {args.store or store.default_store()} match")
        return 0
    out = console()
    for model, group in by_model(rows).items():
        print_records(group, title=f"{model}: newest record of each case", out=out)
    for path in write_report(rows, args.out):
        print(f"wrote {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Exit 1 when any figure regressed or a run that passed at the baseline failed."""
    from harness import store
    from harness.compare import compare, failed
    from harness.report import changes_table

    base, cand, changes = compare(store.rows(args.store), args.baseline, args.candidate, args.time_tolerance)
    console().print(changes_table(changes, base, cand))
    verdicts = [c.verdict for c in changes]
    summary = ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts))
    bad = failed(changes)
    print(f"{'REGRESSION' if bad else 'ok'}: {summary or 'no cases in common'}")
    return 1 if bad else 0


COMMANDS = {"run": cmd_run, "sweep": cmd_sweep, "strategies": cmd_strategies, "zoo": cmd_zoo, "show": cmd_show,
            "report": cmd_report, "compare": cmd_compare, "estimate": estimate.cmd_estimate,
            "simulate": simulate_cli.cmd_simulate}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SpecError as bad:
        print(f"spacetime: error: {bad}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
