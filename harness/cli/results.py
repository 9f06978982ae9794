"""`spacetime show`, `report` and `compare`: what the store holds, as tables, plots and the regression gate."""

from __future__ import annotations

import argparse
import sys

from harness.core.errors import SpecError
from harness.report.console import console


def cmd_show(args: argparse.Namespace) -> int:
    from harness.core.limits import check_int
    from harness.report.tables import print_records
    from harness.run import store

    if args.last is not None:
        check_int("last", args.last)  # before the store is read
    rows = store.rows(args.store, model=args.model, strategy=args.strategy, status=args.status)
    if args.last is not None:
        rows = rows[-args.last:]
    if not rows:
        print(f"no records in {args.store or store.default_store()} match")
        return 0
    print_records(rows, title=f"{len(rows)} record(s)", fmt=args.format, wide=args.wide)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report.cases import by_model, latest
    from harness.report.html_report import write_report
    from harness.report.tables import print_records
    from harness.run import store

    rows = latest(store.rows(args.store, model=args.model, strategy=args.strategy))
    if not rows:
        print(f"no records in {args.store or store.default_store()} match")
        return 0
    store.check_writable(args.out, flag="out")  # a file or a place that cannot be written: one line, exit 2
    out = console()
    if args.format == "table":
        for model, group in by_model(rows).items():
            print_records(group, title=f"{model}: newest record of each case", out=out, wide=args.wide)
    else:  # every model's records in one document; what was written goes to stderr
        print_records(rows, fmt=args.format)
    try:
        written = write_report(rows, args.out)
    except OSError as failed:  # e.g. the disk filled while the plots were written: one line, not a traceback
        print(f"spacetime: error: report --out {args.out}: {failed.strerror or failed}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}", file=sys.stdout if args.format == "table" else sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Exit 1 when any figure regressed or a run that passed at the baseline failed."""
    from harness.report.gate_table import print_changes
    from harness.run import store
    from harness.run.gate import compare, regressed

    if not 0 <= args.time_tolerance < float("inf"):  # nan fails both comparisons
        raise SpecError("time_tolerance", f"--time-tolerance {args.time_tolerance} is not a fraction",
                        "a number >= 0, e.g. 0.10 for 10%")
    base, cand, changes = compare(store.rows(args.store), args.baseline, args.candidate, args.time_tolerance)
    print_changes(changes, base, cand, fmt=args.format, wide=args.wide)
    verdicts = [c.verdict for c in changes]
    summary = ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts))
    bad = regressed(changes)
    print(f"{'REGRESSION' if bad else 'ok'}: {summary or 'no cases in common'}",
          file=sys.stdout if args.format == "table" else sys.stderr)
    return 1 if bad else 0
