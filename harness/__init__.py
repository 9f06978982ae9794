"""spacetime: how much memory per rank, and how fast, for a model, a parallel strategy and a set of knobs;
measured, predicted and simulated.

One package per layer, each importing only from the layers below it (ci/check-imports holds the contract):
cli > report > run > estimate | simulate > strategies (top level) > train > models > core.
"""
