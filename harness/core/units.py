"""Byte units, one definition for the whole project."""

MIB = 2**20
GIB = 2**30
GB = 10**9  # GPU datasheets give some memories in decimal gigabytes
