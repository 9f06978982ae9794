"""spacetime: memory versus time of LLM training, measured per parallel strategy."""
