"""Question-answering data over evidence items, laid out exactly as `edgegen rag` prompts the generator.

Two files: evidence JSONL ({"id", "text"}) and questions JSONL ({"question", "answer", "positive_ids",
"hard_negative_ids"}), as examples/latent_memory/make_kb.py writes them. Prompts are built with the
runtime's own `build_prompt`, so training sees the token segmentation that inference sees.
"""
import random
from dataclasses import dataclass
from pathlib import Path

from ..runtime.compressor import REFERENCE_LAYOUT
from ..runtime.errors import EdgegenError
from ..runtime.jsonl import jsonl_rows
from ..runtime.rag import build_prompt
from ..runtime.tokenizer import Tokenizer
from .data import Example


@dataclass
class Question:
    ids: list[int]  # the question's tokens (batches group similar lengths)
    question: str
    answer: str
    positives: list[str]  # evidence texts that answer it
    negatives: list[str]  # similar evidence that does not


def read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    rows = []
    for number, row in jsonl_rows(path):
        missing = [key for key in required if key not in row]
        if missing:
            raise EdgegenError(f"{path}:{number} lacks {', '.join(missing)}; each row needs {', '.join(required)}")
        rows.append(row)
    if not rows:
        raise EdgegenError(f"{path} holds no rows")
    return rows


def read_questions(evidence: Path, questions: Path, tokenizer: Tokenizer) -> list[Question]:
    texts = {row["id"]: row["text"] for row in read_jsonl(evidence, ("id", "text"))}
    result = []
    for row in read_jsonl(questions, ("question", "answer", "positive_ids")):
        unknown = [i for i in row["positive_ids"] + row.get("hard_negative_ids", []) if i not in texts]
        if unknown:
            raise EdgegenError(f"question {row['question']!r} names evidence {unknown[0]!r}, which {evidence} lacks")
        result.append(Question(tokenizer.encode(row["question"], add_special_tokens=False), row["question"],
                               row["answer"], [texts[i] for i in row["positive_ids"]],
                               [texts[i] for i in row.get("hard_negative_ids", [])]))
    return result


def answer_ids(tokenizer: Tokenizer, answer: str) -> list[int]:
    """The assistant turn after the generation prompt: the answer and the template's end of turn."""
    turn = [{"role": "user", "content": "?"}]
    prompt = tokenizer.apply_chat_template(turn, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(turn + [{"role": "assistant", "content": answer}], add_generation_prompt=False)
    return tokenizer.encode(full[len(prompt):].rstrip("\n"), add_special_tokens=False)


def shown_evidence(q: Question, contexts: int, rng: random.Random) -> list[str]:
    """The question's positives and 0 or more random hard negatives, `contexts` items at most."""
    extra = rng.randint(0, max(0, contexts - len(q.positives)))
    return q.positives + rng.sample(q.negatives, min(len(q.negatives), extra))


def reader_examples(questions: list[Question], tokenizer: Tokenizer, contexts: int, seed: int) -> list[Example]:
    """Each question over its positives and up to `contexts` - 1 hard negatives, shuffled, as raw text:
    the generator learns to find the answer among retrieved evidence (the teacher for latent memory).
    Answers start with a space: a byte-level BPE gives a word at the start of a line other tokens than
    mid-sentence, where the evidence has it, and a small model copies identical tokens far more easily."""
    rng = random.Random(seed)
    examples = []
    for q in questions:
        shown = shown_evidence(q, contexts, rng)
        rng.shuffle(shown)
        prompt, _ = build_prompt(tokenizer, REFERENCE_LAYOUT, q.question, shown)
        answer = answer_ids(tokenizer, " " + q.answer)
        examples.append(Example(prompt + answer, [False] * len(prompt) + [True] * len(answer)))
    return examples
