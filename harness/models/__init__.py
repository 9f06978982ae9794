"""The zoo's shapes and model, and what the model-side knobs do to it: materialization, LoRA, quantization,
activation checkpointing, Hugging Face config.json files."""
