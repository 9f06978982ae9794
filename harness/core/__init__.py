"""The bottom layer: RunSpec and its errors, knob values, the memory-profile and record types, units and host
facts. Imports nothing else of the project."""
