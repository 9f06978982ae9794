"""The `spacetime` command: the parser of every subcommand and the dispatch to its function.

Each command's work is in its own module (measure, results, listings, figures) and imports what it needs when
it runs, so `spacetime zoo` or a bad flag answers without loading torch's distributed stack.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from harness.cli import figures, listings, measure, results
from harness.cli.flags import STORE_HELP, DefaultsFormatter, float_arg, int_arg
from harness.cli.output_flags import add_output_flags
from harness.core import progress
from harness.core.errors import SpecError
from harness.core.record import STATUSES

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one line (no usage block) and exits 2, and shows each option's default
    in --help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"spacetime: error: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)

    def parse_known_args(  # type: ignore[override]  # one signature for typeshed's three overloads
            self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        """argparse reads `--flag=--` as an empty list, past the flag's type: refused as a missing value."""
        parsed, extras = super().parse_known_args(args, namespace)
        for action in self._actions:
            value = getattr(parsed, action.dest, None)
            if action.option_strings and isinstance(value, list) and (value == [] or [] in value):
                self.error(f"argument {'/'.join(action.option_strings)}: expected one argument")
        return parsed, extras


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="spacetime", description="Memory versus time of LLM training, per strategy.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    measure.add_parsers(sub)
    figures.add_parsers(sub)
    sub.add_parser("strategies", help="list strategies")
    sub.add_parser("zoo", help="list models with exact parameter counts")
    _add_result_parsers(sub)
    return parser


def _add_result_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    show = sub.add_parser("show", help="stored records as a table")
    show.add_argument("--model", help="only this model's records")
    show.add_argument("--strategy", help="only this strategy's records")
    show.add_argument("--status", help=f"only records with this status: {', '.join(STATUSES)}")
    show.add_argument("--last", type=int_arg, default=None, help="only the newest N")
    show.add_argument("--store", type=Path, default=None, help=STORE_HELP)
    add_output_flags(show)
    report = sub.add_parser("report", help="newest record of each case: tables per model, plots, HTML page")
    report.add_argument("--model", help="only this model's records")
    report.add_argument("--strategy", help="only this strategy's records")
    report.add_argument("--out", type=Path, default=Path("spacetime-report"), help="folder for PNGs and HTML")
    report.add_argument("--store", type=Path, default=None, help=STORE_HELP)
    add_output_flags(report)
    compare = sub.add_parser("compare", help="regression gate: a commit's records against a baseline commit's")
    compare.add_argument("--baseline", help="commit (prefix) to compare against; default: the one stored "
                         "before the candidate")
    compare.add_argument("--candidate", help="commit (prefix) to check; default: the newest stored")
    compare.add_argument("--time-tolerance", type=float_arg, default=0.10,
                         help="smallest relative slowdown that counts (the records' spread can widen it)")
    compare.add_argument("--store", type=Path, default=None, help=STORE_HELP)
    add_output_flags(compare)


COMMANDS = {"run": measure.cmd_run, "sweep": measure.cmd_sweep, "estimate": figures.cmd_estimate,
            "simulate": figures.cmd_simulate, "strategies": listings.cmd_strategies, "zoo": listings.cmd_zoo,
            "show": results.cmd_show, "report": results.cmd_report, "compare": results.cmd_compare}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress.configure(getattr(args, "progress", "off"))  # run, sweep and simulate have --progress
    try:
        return COMMANDS[args.command](args)
    except SpecError as bad:
        progress.current().clear()
        print(f"spacetime: error: {bad}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        progress.current().clear()
