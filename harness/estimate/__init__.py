"""The analytic memory model (`spacetime estimate`): per-rank peak by phase of the step, and whether it fits a GPU."""
