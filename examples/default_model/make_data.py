"""Chat data from Python's own standard library: text that exists offline on every machine.

Each function with a docstring gives up to three chat pairs:
  complete  -- signature + docstring -> the body
  strip     -- the whole function -> the same function without docstring and comments
  explain   -- "what does NAME do?" -> the docstring's first paragraph
Modules are split by a hash of their name: held-out modules never reach training.

A fourth, synthetic task teaches a regular, predictable answer format that a model this small can
master on a CPU budget:
  numbers   -- "Write 4821 in words." -> "four thousand eight hundred twenty-one"
Numbers are split by their value: held-out numbers (value % 10 == 7) never reach training.

    python examples/default_model/make_data.py OUT_DIR
writes OUT_DIR/train.jsonl and heldout.jsonl (the code tasks), numbers.jsonl and numbers_heldout.jsonl,
and corpus.jsonl (the training modules' sources as {"text": ...} rows, for the tokenizer and pre-training).
"""
import ast
import hashlib
import io
import json
import random
import sys
import sysconfig
import textwrap
import tokenize
from pathlib import Path

MAX_FUNCTION_CHARS = 900
HELDOUT_PERCENT = 10
NUMBER_PAIRS = 40000
ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
       "seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def words(n: int) -> str:
    """English words for 0 <= n < 10**9."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("-" + ONES[n % 10] if n % 10 else "")
    for size, name in ((10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = n % size
            return f"{words(n // size)} {name}" + (f" {words(rest)}" if rest else "")
    raise ValueError(n)


def number_examples(count: int, seed: int):
    """(split, row) pairs; numbers of every size from 0 to 999,999,999, held out by value."""
    rng = random.Random(seed)
    for _ in range(count):
        n = rng.randrange(10 ** rng.randint(1, 9))
        question = rng.choice(["Write {} in words.", "How do you say {} in English words?", "Spell out the number {}."])
        yield ("heldout" if n % 10 == 7 else "train"), {"task": "numbers", "messages": [
            {"role": "user", "content": question.format(n)}, {"role": "assistant", "content": words(n)}]}


def stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = ("test", "site-packages", "idlelib", "lib2to3", "tkinter", "turtledemo", "ensurepip", "encodings")
    return sorted(p for p in root.rglob("*.py") if not any(part in skip for part in p.relative_to(root).parts))


def is_heldout(module: str) -> bool:
    return int(hashlib.sha256(module.encode()).hexdigest(), 16) % 100 < HELDOUT_PERCENT


def without_docstring_and_comments(source: str, node: ast.FunctionDef) -> str | None:
    """The function's source with its docstring statement and its comments removed."""
    lines = source.splitlines(keepends=True)
    doc = node.body[0]
    kept = lines[:doc.lineno - 1] + lines[doc.end_lineno:]
    text = "".join(kept)
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type != tokenize.COMMENT]
        text = tokenize.untokenize(tokens)
    except (tokenize.TokenError, IndentationError):
        return None
    text = "\n".join(line.rstrip() for line in text.splitlines() if line.strip())
    return text + "\n" if len(node.body) > 1 else None


def function_examples(path: Path, root: Path):
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return
    module = ".".join(path.relative_to(root).with_suffix("").parts)
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef) or not ast.get_docstring(node) or len(node.body) < 2:
            continue
        function = ast.get_source_segment(source, node, padded=True)
        if not function or len(function) > MAX_FUNCTION_CHARS:
            continue
        function = textwrap.dedent(function)
        try:
            inner = ast.parse(function).body[0]
        except SyntaxError:  # a multi-line string that dedent cannot shift
            continue
        head_lines = function.splitlines(keepends=True)[:inner.body[0].end_lineno]
        head, body = "".join(head_lines), "".join(function.splitlines(keepends=True)[inner.body[0].end_lineno:])
        stripped = without_docstring_and_comments(function, inner)
        summary = ast.get_docstring(node).split("\n\n")[0].strip()
        yield module, "complete", f"Complete this Python function from the standard library module {module}:\n\n" \
                                  f"{head}", body
        if stripped:
            yield module, "strip", f"Remove the docstring and comments from this function:\n\n{function}", stripped
        yield module, "explain", f"In the Python module {module}, what does the function {node.name} do?", summary


def main(out: Path) -> None:
    root = Path(sysconfig.get_paths()["stdlib"])
    out.mkdir(parents=True, exist_ok=True)
    splits = {"train": [], "heldout": []}
    corpus = []
    for path in stdlib_files():
        for module, task, question, answer in function_examples(path, root):
            split = "heldout" if is_heldout(module) else "train"
            splits[split].append({"task": task, "module": module, "messages": [
                {"role": "user", "content": question}, {"role": "assistant", "content": answer}]})
        if not is_heldout(".".join(path.relative_to(root).with_suffix("").parts)):
            corpus.append({"text": path.read_text(encoding="utf-8", errors="ignore")})
    random.Random(0).shuffle(splits["train"])
    random.Random(1).shuffle(corpus)
    numbers = {"numbers": [], "numbers_heldout": []}
    for split, row in number_examples(NUMBER_PAIRS, seed=0):
        numbers["numbers" if split == "train" else "numbers_heldout"].append(row)
    for name, rows in {**splits, "corpus": corpus, **numbers}.items():
        with (out / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{name}: {len(rows)} rows", file=sys.stderr)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
