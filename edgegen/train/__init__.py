"""edgegen.train: make models where none can be downloaded (needs the `train` extra: torch, transformers).

tokenizer -> init -> ar (pre-training or SFT) -> mars (multi-token fine-tuning) -> `edgegen export`.
"""
