"""The training loop: AdamW with warmup + cosine decay, a progress bar, and checkpoints that resume."""
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..runtime.errors import EdgegenError
from ..status import StatusLine
from .data import batches

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


@dataclass
class TrainConfig:
    steps: int
    lr: float = 1e-3
    batch_size: int = 8
    max_length: int = 512
    warmup: float = 0.03  # fraction of the steps
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    save_every: int = 200
    log_every: int = 10


class ProgressBar:
    """Step, losses, tokens/s and ETA; off a terminal, a line every `log_every` steps."""

    def __init__(self, total: int, start: int, log_every: int):
        self.total, self.start, self.line = total, start, StatusLine(log_every)
        self.began, self.tokens = time.perf_counter(), 0

    def update(self, step: int, losses: dict, tokens: int) -> None:
        self.tokens += tokens
        elapsed = time.perf_counter() - self.began
        done = step + 1 - self.start
        eta = elapsed / done * (self.total - step - 1)
        bar = "#" * int(20 * (step + 1) / self.total)
        text = (f"step {step + 1}/{self.total} [{bar:<20}] " + " ".join(f"{k} {v:.3f}" for k, v in losses.items())
                + f" | {self.tokens / elapsed:.0f} tok/s | ETA {int(eta // 60)}m{int(eta % 60):02d}s")
        self.line.show(text, last=step + 1 == self.total)


def learning_rate(step: int, config: TrainConfig) -> float:
    warmup = max(1, int(config.warmup * config.steps))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(model, examples, loss_fn, config: TrainConfig, out: Path, resume: bool = False) -> list[dict]:
    """Run `loss_fn(model, batch) -> {"loss": ..., ...}` for config.steps steps; returns the loss log."""
    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    checkpoint = out / "checkpoint"
    start, log = 0, []
    if (checkpoint / "state.pt").is_file():
        if not resume:
            raise EdgegenError(f"{checkpoint} holds an unfinished run; pass --resume to continue it, or choose "
                               "another output directory")
        state = torch.load(checkpoint / "state.pt", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, log = state["step"], state["log"]
        print(f"resuming at step {start}", file=sys.stderr)
    data = batches(examples, config.batch_size, config.seed)
    for _ in range(start):  # the batch order is a function of the seed: skip what was already trained on
        next(data)
    progress = ProgressBar(config.steps, start, config.log_every)
    model.train()
    for step in range(start, config.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        batch = next(data)
        losses = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        values = {k: float(v.detach()) for k, v in losses.items()}
        log.append({"step": step + 1, **values})
        progress.update(step, values, sum(len(e.ids) for e in batch))
        if (step + 1) % config.save_every == 0 and step + 1 < config.steps:
            save_state(checkpoint, model, optimizer, step + 1, log, config)
    model.eval()
    return log


def save_state(checkpoint: Path, model, optimizer, step: int, log: list, config: TrainConfig) -> None:
    """Write the resumable state atomically: a crash mid-save keeps the previous checkpoint."""
    checkpoint.mkdir(parents=True, exist_ok=True)
    partial = checkpoint / "state.pt.partial"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "log": log,
                "config": asdict(config)}, partial)
    partial.replace(checkpoint / "state.pt")


def finish(model, tokenizer_dir: Path, out: Path, log: list, config_updates: dict | None = None) -> None:
    """Save the trained model in Hugging Face layout with its tokenizer and loss log; drop the checkpoint."""
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file() and tokenizer_dir.resolve() != out.resolve():
            shutil.copy2(tokenizer_dir / name, out / name)
    if config_updates:
        config_path = out / "config.json"
        config_path.write_text(json.dumps({**json.loads(config_path.read_text()), **config_updates}, indent=2))
    with (out / "train_log.jsonl").open("w") as f:
        f.writelines(json.dumps(row) + "\n" for row in log)
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
