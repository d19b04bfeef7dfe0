"""Loss curves of the default model's three training stages, from their train_log.jsonl files.

    python examples/default_model/plot_losses.py WORK_DIR examples/default_model/loss_curve.png
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def smooth(values: list[float], window: int = 20) -> list[float]:
    return [sum(values[max(0, i - window + 1):i + 1]) / len(values[max(0, i - window + 1):i + 1])
            for i in range(len(values))]


def main(work: Path, out: Path) -> None:
    stages = {"pretrained": ("1. pre-training (sources)", ["loss"]), "sft": ("2. chat SFT, code tasks", ["loss"]),
              "sft-numbers": ("3. chat SFT, number words", ["loss"]), "mars": ("4. MARS, block 4", ["noisy", "clean"])}
    fig, axes = plt.subplots(1, len(stages), figsize=(16, 3.6))
    for ax, (stage, (title, keys)) in zip(axes, stages.items()):
        rows = [json.loads(line) for line in (work / stage / "train_log.jsonl").open()]
        for key in keys:
            ax.plot([r["step"] for r in rows], smooth([r[key] for r in rows]), label=key)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (nats)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
