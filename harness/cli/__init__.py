"""The `spacetime` command (`python -m harness.cli`)."""
