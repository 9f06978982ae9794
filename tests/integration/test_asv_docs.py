"""The asv lines docs/benchmarking.md shows, run as written in a fresh clone on a host asv has never seen (an
empty $HOME, nothing on stdin): no line asks for the machine's details, each exits 0, and `ci/dashboard-check`
passes on the one-commit dashboard and again once a commit range is published.  The `asv run` lines get a
benchmark filter (`-b`), so only the estimate timings run; `asv preview`, which serves until stopped, is left
out.  The one-commit flow takes about a minute; the range line builds a virtualenv with torch and three commits
(several minutes more)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "benchmarking.md"
ONLY = " -b '^bench_predict\\.Estimate\\.'"
ASKED = ("EOFError", "No information stored about machine", "Run asv at the console")


def _documented() -> list[str]:
    """The page's shell lines that drive asv (the machine, runs, publish, the dashboard check), in order."""
    blocks = re.findall(r"^```sh\n(.*?)^```$", PAGE.read_text(), flags=re.M | re.S)
    starts = ("asv ", "python -m harness.run.asv_machine", "ci/dashboard-check")
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip().startswith(starts)]


def _fresh_clone(tmp_path: Path) -> Path:
    """A clone of the repository with the working tree's files committed on top (when they differ)."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    subprocess.run(["git", "add", "-A"], cwd=clone, check=True)
    if subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=clone).returncode:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm",
                        "the working tree"], cwd=clone, check=True)
    return clone


def _run(line: str, clone: Path, env: dict[str, str]) -> str:
    command = re.sub(r"\s+# .*$", "", line) + ONLY if line.startswith("asv run") else line  # before any comment
    result = subprocess.run(["bash", "-c", command], cwd=clone, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=1200)
    out = result.stdout + result.stderr
    assert not [word for word in ASKED if word in out], f"`{command}` asked about the machine:\n{out[-3000:]}"
    assert result.returncode == 0, f"`{command}` exited {result.returncode}:\n{out[-3000:]}"
    return out


@pytest.mark.timeout(2400)  # the range line builds a virtualenv with torch: 4-15 min on a busy 2-core machine
@pytest.mark.skipif(shutil.which("chromium") is None and not os.environ.get("CHROMIUM"),
                    reason="ci/dashboard-check needs Chromium: apt-get install chromium")
def test_the_documented_asv_lines_run_on_a_fresh_clone_without_a_question(tmp_path: Path) -> None:
    lines = _documented()
    assert [line.split()[1] for line in lines if line.startswith("asv run")] == ["run", "run"]
    clone = _fresh_clone(tmp_path)
    (tmp_path / "home").mkdir()
    env = {**os.environ, "HOME": str(tmp_path / "home"), "SPACETIME_ASV_PRESET": "cpu",
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    env.pop("SPACETIME_STORE", None)
    committed = (clone / "docs" / "asv-dashboard.png").read_bytes()
    in_range = [line for line in lines if "HEAD~" in line]
    publish = [line for line in lines if line.startswith(("asv publish", "ci/dashboard-check"))]
    for line in lines:  # the one-commit flow first: the range line waits
        if line not in in_range and not line.startswith("asv preview"):
            out = _run(line, clone, env)
    assert "1 commit(s)" in out and "no lines (one commit)" in out  # dashboard-check's verdict line
    for line in in_range + publish:  # then a range of commits: the summary draws lines
        out = _run(line, clone, env)
    assert re.search(r"[2-9] commit\(s\)", out) and "coloured pixels of lines" in out
    assert (clone / ".asv" / "screenshots" / "dashboard.png").stat().st_size > 10_000
    assert (clone / "docs" / "asv-dashboard.png").read_bytes() == committed
