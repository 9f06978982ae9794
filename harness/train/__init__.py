"""One rank's training machinery: the world (process groups, meshes), the step, the optimizer, the memory probes
and timers, the CPU allocation counter."""
