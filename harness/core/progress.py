"""Progress lines on stderr for the steps that take a while: builds, rendezvous, warmup, memory and timed steps,
simulate's phases, a sweep's rows.

Any layer may report through `current()`, the reporter the command line configured (`--progress auto|on|off`,
default auto: on where stderr is a terminal, or where $SPACETIME_PROGRESS says 1/0).  On a terminal the progress
is one line, rewritten in place (carriage return, line cleared) and ticking the seconds the step has taken; on
anything else it is one plain line per step.  It goes to stderr only, so stdout (a `--json` line, a CSV table)
stays what it was.

The ranks under torchrun cannot reach the user's terminal: torchrun writes their output to log files.  The first
rank on each host appends its phase lines to a file in the run's temporary folder (`rank_phase`, where
$SPACETIME_PROGRESS_FILE names it), and that host's launcher follows the file while it waits (`following`).
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from harness.core.errors import SpecError

MODES = ("auto", "on", "off")
ENV = "SPACETIME_PROGRESS"  # 1/on or 0/off: what `auto` means, whatever stderr is
PHASE_FILE_ENV = "SPACETIME_PROGRESS_FILE"  # where rank 0 appends its phase lines (set by the launcher)
TICK_S = 1.0  # how often a terminal's line is redrawn with the step's seconds
FOLLOW_S = 0.2  # how often the launcher reads the ranks' phase file
_ON, _OFF = ("1", "on", "true", "yes"), ("0", "off", "false", "no")
_ERASE = "\r\x1b[K"


def wanted(mode: str, stream: TextIO) -> bool:
    """Whether progress shows for `mode` on `stream`: on/off as asked; auto: $SPACETIME_PROGRESS if it says, else
    whether `stream` is a terminal."""
    if mode not in MODES:
        raise SpecError("progress", f"unknown mode {mode!r}", ", ".join(MODES))
    if mode != "auto":
        return mode == "on"
    env = os.environ.get(ENV, "").strip().lower()
    if env in _ON or env in _OFF:
        return env in _ON
    return _isatty(stream)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream
        return False


def clock(seconds: float) -> str:
    """12 s, 3m05s, 1h02m."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """One progress line: `show` replaces it, `note` adds a line that stays, `clear` removes it.  A disabled
    reporter does nothing.  `live` (default: the stream is a terminal) rewrites one line and ticks its seconds;
    otherwise each `show` and `note` is a plain line."""

    def __init__(self, stream: TextIO | None = None, enabled: bool = True, live: bool | None = None,
                 tick_s: float = TICK_S, now: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.live = _isatty(self.stream) if live is None else live
        self.prefix: str | Callable[[], str] = ""  # before every line (a sweep's row, its time and ETA)
        self._tick_s = tick_s
        self._now = now
        self._text: str | None = None
        self._since = now()
        self._lock = threading.Lock()
        self._ticker: tuple[threading.Thread, threading.Event] | None = None  # the thread, its own stop

    def show(self, text: str) -> None:
        """The step now under way."""
        if not self.enabled:
            return
        with self._lock:
            self._text, self._since = text, self._now()
            self._draw()
            if self.live and self._ticker is None:
                self._ticker = self._start_ticker()

    def note(self, text: str) -> None:
        """A line that stays (above the live line on a terminal)."""
        if not self.enabled:
            return
        with self._lock:
            if self.live:
                self.stream.write(_ERASE)
            self.stream.write(self._prefix() + text + "\n")
            self._draw(plain=False)

    def clear(self) -> None:
        """Remove the line (a terminal's is erased) and stop ticking; what follows starts on a clean line."""
        with self._lock:
            ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker[1].set()
            if ticker[0] is not threading.current_thread():
                ticker[0].join()
        with self._lock:
            if self.enabled and self.live and self._text is not None:
                self.stream.write(_ERASE)
                self.stream.flush()
            self._text = None

    @contextmanager
    def prefixed(self, prefix: str | Callable[[], str]) -> Iterator[None]:
        """Every line shown inside starts with `prefix` (or what it returns, asked at each drawing)."""
        before, self.prefix = self.prefix, prefix
        try:
            yield
        finally:
            self.prefix = before

    def _draw(self, plain: bool = True) -> None:
        """Write the current line (the lock held): rewritten with its seconds on a terminal; a plain line
        otherwise, unless `plain` is False (a redraw after a note)."""
        if self._text is None or not (self.live or plain):
            return
        line = self._prefix() + self._text
        if not self.live:
            self.stream.write(line + "\n")
        else:
            took = self._now() - self._since
            line += f" ({clock(took)})" if took >= 1.0 else ""
            width = shutil.get_terminal_size((100, 24)).columns - 1
            self.stream.write(_ERASE + (line if len(line) <= width else line[: width - 1] + "…"))
        self.stream.flush()

    def _prefix(self) -> str:
        return self.prefix() if callable(self.prefix) else self.prefix

    def _start_ticker(self) -> tuple[threading.Thread, threading.Event]:
        stop = threading.Event()
        thread = threading.Thread(target=self._tick, args=(stop,), name="spacetime-progress", daemon=True)
        thread.start()
        return thread, stop

    def _tick(self, stop: threading.Event) -> None:
        while not stop.wait(self._tick_s):
            with self._lock:
                if self._now() - self._since >= 1.0:  # a step under a second keeps the line it has
                    self._draw()


_CURRENT = [Progress(enabled=False)]


def configure(mode: str, stream: TextIO | None = None) -> Progress:
    """Make the reporter for `mode` (auto, on, off) on `stream` (default stderr) the current one."""
    out = stream if stream is not None else sys.stderr
    _CURRENT[0].clear()
    _CURRENT[0] = Progress(out, enabled=wanted(mode, out))
    return _CURRENT[0]


def current() -> Progress:
    """The reporter the command line configured; a disabled one until then (a library call shows nothing)."""
    return _CURRENT[0]


def rank_phase(text: str) -> None:
    """On a rank: append a phase line to the file this host's launcher follows.  Only the first rank on each host
    (torchrun's LOCAL_RANK 0) writes, and nothing is written when progress is off."""
    path = os.environ.get(PHASE_FILE_ENV)
    if path and os.environ.get("LOCAL_RANK", "0") == "0":
        with open(path, "a") as f:
            f.write(text.replace("\n", " ") + "\n")


def phase_env(folder: Path) -> dict[str, str]:
    """The environment that has rank 0 write its phases into `folder`, when the current reporter shows them."""
    return {PHASE_FILE_ENV: str(folder / "progress.log")} if current().enabled else {}


@contextmanager
def following(env: dict[str, str], show: Callable[[str], None] | None = None,
              every_s: float = FOLLOW_S) -> Iterator[None]:
    """While the body runs, each complete line the ranks append to the phase file `env` names goes to `show`
    (default: the current reporter's)."""
    path = env.get(PHASE_FILE_ENV)
    if path is None:
        yield
        return
    show = show or current().show
    done = threading.Event()
    reader = _LineReader(Path(path))
    thread = threading.Thread(target=_follow, args=(reader, show, done, every_s), daemon=True,
                              name="spacetime-phases")
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _follow(reader: _LineReader, show: Callable[[str], None], done: threading.Event, every_s: float) -> None:
    while True:
        finished = done.wait(every_s)
        for line in reader.new_lines():
            show(line)
        if finished:
            return


class _LineReader:
    """The complete lines appended to a file since the last call (the file may not exist yet)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        return [ln for ln in complete.decode(errors="replace").splitlines() if ln.strip()]
