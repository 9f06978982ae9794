"""Running specs for real: validation, the torchrun launch and the rank entry point, several hosts, sweeps and
their presets, records, the Parquet store, the regression gate."""
