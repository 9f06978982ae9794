"""The two ways a spec is refused: bad input (SpecError, exit 2) and a valid spec that cannot run here
(Unsupported, stored as a record with status `unsupported`)."""

from __future__ import annotations

_FLAGS = {"timeout_s": "--timeout", "loss_type": "--loss"}  # fields whose CLI flag is not the field name


class SpecError(ValueError):
    """Bad input: names the field (as its CLI flag) and, where there is a list, the valid values."""

    def __init__(self, field: str, message: str, valid: str | None = None) -> None:
        self.field = field
        flag = _FLAGS.get(field, "--" + field.replace("_", "-"))
        text = f"{flag}: {message}" + (f"; valid: {valid}" if valid else "")
        super().__init__(text)


class Unsupported(Exception):
    """A valid spec this machine or strategy cannot run (recorded with status `unsupported`)."""


class NotModelled(Exception):
    """`estimate` or `simulate` has no rule for this spec (a knob whose effect is not known, e.g. a compiled
    model's fused kernels): the figure is reported as not modelled, with this reason, never guessed."""
