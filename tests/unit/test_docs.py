"""Every command line the README and the docs show still works, so no page names a flag or a session that no
longer exists: each `spacetime` line in a sh block parses and its spec validates (nothing is launched; an
estimate is computed), each `$ spacetime` example in a console block prints the error the page shows, and each
`nox -s` session, `python -m` module and `ci/` script a page names is there."""

from __future__ import annotations

import ast
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from harness.cli.flags import rendezvous_from, spec_fields
from harness.cli.main import build_parser, main
from harness.core.errors import Unsupported
from harness.core.spec import RunSpec
from harness.run.validate import validate

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "tests" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def _blocks(page: Path) -> list[tuple[str, str]]:
    """(language, text) of every fenced block, with `\\` line continuations joined."""
    return [(lang, text.replace("\\\n", " ")) for lang, text in FENCE.findall(page.read_text())]


def _shell(prefix: str) -> list[tuple[str, str]]:
    """(page, command) for every command of sh blocks that starts with `prefix` (`&&` chains split)."""
    found = []
    for page in PAGES:
        for lang, text in _blocks(page):
            if lang != "sh":
                continue
            for line in text.splitlines():
                for part in line.split("&&"):
                    if part.strip().startswith(prefix):
                        found.append((page.name, part.strip()))
    return found


def _console() -> list[tuple[str, str, list[str]]]:
    """(page, command, the lines the page shows it printing) for every `$ spacetime` in a console block."""
    found = []
    for page in PAGES:
        for lang, text in _blocks(page):
            if lang != "console":
                continue
            for chunk in re.split(r"^\$ ", text, flags=re.M)[1:]:
                command, *output = chunk.strip().splitlines()
                found.append((page.name, command, output))
    return found


SPACETIME = _shell("spacetime ")


def test_the_pages_show_commands() -> None:
    assert len(SPACETIME) >= 30 and {page for page, _ in SPACETIME} >= {"README.md", "measuring.md", "estimate.md"}


@pytest.mark.parametrize(("page", "command"), SPACETIME, ids=[f"{p}: {c}" for p, c in SPACETIME])
def test_every_spacetime_line_parses_and_its_spec_validates(page: str, command: str) -> None:
    argv = shlex.split(command, comments=True)[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{page}: `{command}` does not parse")
    if args.command in ("run", "sweep", "estimate", "simulate"):
        _check_spec(args)


def _check_spec(args: object) -> None:
    """What the command would run, checked as the command checks it before it launches anything."""
    from harness.cli.figures import estimate_figures
    from harness.cli.measure import _planned
    from harness.simulate.runner import check_simulable

    rendezvous_from(args) if args.command in ("run", "sweep") else None  # type: ignore[attr-defined]
    if args.command == "sweep":  # type: ignore[attr-defined]
        specs = _planned(args)  # type: ignore[arg-type]
    else:
        specs = [RunSpec(**spec_fields(args))]  # type: ignore[arg-type]
    for spec in specs:
        try:
            if args.command == "estimate":  # type: ignore[attr-defined]
                estimate_figures(validate(spec.with_(device="cuda"), measure=False), args)  # type: ignore[arg-type]
            elif args.command == "simulate":  # type: ignore[attr-defined]
                check_simulable(validate(spec.with_(device="cuda"), measure=False))
            else:
                validate(spec)
        except Unsupported:
            pass  # a valid spec this machine cannot run: the record would say why


@pytest.mark.parametrize(("page", "command", "output"), _console(), ids=[f"{p}: {c}" for p, c, _ in _console()])
def test_every_console_example_prints_what_the_page_shows(page: str, command: str, output: list[str],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert output and output[0].startswith("spacetime: error:"), f"{page}: only error examples are checked"
    assert main(shlex.split(command)[1:]) == 2
    assert capsys.readouterr().err.strip().splitlines() == output


def _sessions() -> set[str]:
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    names = set()
    for node in tree.body:
        for deco in getattr(node, "decorator_list", []):
            if isinstance(deco, ast.Call) and ast.unparse(deco.func) == "nox.session":
                given = [k.value.value for k in deco.keywords if k.arg == "name"]  # type: ignore[attr-defined]
                names.add(given[0] if given else node.name)  # type: ignore[attr-defined]
    return names


def test_every_nox_session_ci_script_and_module_a_page_names_exists() -> None:
    sessions = [c.split()[2] for _, c in _shell("nox -s ")]
    assert sessions and set(sessions) <= _sessions(), set(sessions) - _sessions()
    text = "\n".join(page.read_text() for page in PAGES)
    scripts = set(re.findall(r"(?<![\w.])ci/[\w.-]+", text))
    assert scripts and all((ROOT / s).is_file() for s in scripts), [s for s in scripts if not (ROOT / s).is_file()]
    modules = set(re.findall(r"python -m ([\w.]+)", text)) - {"venv"}
    assert modules and all(importlib.util.find_spec(m) for m in modules), modules
