"""Training examples: token ids plus which positions are trained on (assistant tokens, or all of a text)."""
import random
from dataclasses import dataclass
from pathlib import Path

from ..runtime.errors import EdgegenError
from ..runtime.jsonl import jsonl_rows
from ..runtime.tokenizer import Tokenizer


@dataclass
class Example:
    ids: list[int]
    trained: list[bool]  # True where the token is a label (predicted from what precedes it)


def chat_example(tokenizer: Tokenizer, messages: list[dict], max_length: int) -> Example | None:
    """Render with the model's chat template; label every assistant turn's tokens (its end-of-turn included)."""
    ids = tokenizer.encode(tokenizer.apply_chat_template(messages, add_generation_prompt=False), False)
    trained = [False] * len(ids)
    for turn, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(tokenizer.encode(tokenizer.apply_chat_template(messages[:turn], True), False))
        end = len(tokenizer.encode(tokenizer.apply_chat_template(messages[:turn + 1], False), False))
        trained[start:end] = [True] * (end - start)
    if len(ids) > max_length or not any(trained):
        return None
    return Example(ids, trained)


def text_examples(tokenizer: Tokenizer, text: str, max_length: int, eos_id: int) -> list[Example]:
    """A plain text, cut into windows of max_length tokens, every token trained."""
    ids = tokenizer.encode(text, add_special_tokens=False) + [eos_id]
    return [Example(ids[i:i + max_length], [True] * len(ids[i:i + max_length]))
            for i in range(0, len(ids) - 1, max_length) if len(ids[i:i + max_length]) > 1]


def read_examples(path: Path, tokenizer: Tokenizer, max_length: int, eos_id: int) -> list[Example]:
    """JSONL rows with "messages" (chat; loss on assistant turns) or "text" (loss on everything)."""
    examples, skipped = [], 0
    for number, row in jsonl_rows(path):
        if "messages" in row:
            example = chat_example(tokenizer, row["messages"], max_length)
            skipped += example is None
            examples += [example] if example else []
        elif "text" in row:
            examples += text_examples(tokenizer, row["text"], max_length, eos_id)
        else:
            raise EdgegenError(f'{path}:{number} has neither "messages" nor "text"; each JSONL row needs one')
    if not examples:
        raise EdgegenError(f"{path} gave no training examples (skipped {skipped} longer than --max-length "
                           f"{max_length} or without an assistant turn)")
    return examples


def batches(examples: list[Example], batch_size: int, seed: int):
    """Endless shuffled batches; examples of similar length are batched together to save padding."""
    rng = random.Random(seed)
    while True:
        order = sorted(rng.sample(range(len(examples)), len(examples)), key=lambda i: len(examples[i].ids) // 32)
        chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        rng.shuffle(chunks)
        for chunk in chunks:
            yield [examples[i] for i in chunk]
