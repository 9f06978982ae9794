"""The asv suite: one module per area (`bench_<area>.py`), one class per topic."""
