"""What the benchmark scripts share: held-out chat prompts and running a generation to its end."""
import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
HELDOUT_PROMPTS = HERE / "data" / "heldout_prompts.jsonl"


def benchmark_arguments(description: str, results_name: str) -> argparse.ArgumentParser:
    """The options every held-out-prompt benchmark takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", type=Path, help="exported model directory (default: the bundled model)")
    parser.add_argument("--prompts", type=Path, default=HELDOUT_PROMPTS)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / f"{results_name}.json")
    return parser


def load_prompts(model, path: Path, max_new_tokens: int) -> tuple[list[dict], list[list[int]]]:
    """Rows of a chat JSONL and their prompt token ids (every message but the assistant's answer),
    keeping those that leave room for max_new_tokens in the model's context."""
    rows, ids = [], []
    for line in path.open(encoding="utf-8"):
        row = json.loads(line)
        messages = [m for m in row["messages"] if m["role"] != "assistant"]
        text = model.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        prompt = model.tokenizer.encode(text, add_special_tokens=False)
        if len(prompt) + max_new_tokens <= model.max_context:
            rows.append(row)
            ids.append(prompt)
    return rows, ids


def run_to_end(model, prompt_ids: list[int], **options):
    return model.stream(prompt_ids, **options).run()


def tokens_per_forward(results) -> float:
    return sum(r.stats.decoded_tokens for r in results) / sum(r.stats.forwards for r in results)


def save_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
