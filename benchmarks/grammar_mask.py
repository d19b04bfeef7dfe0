"""Per-token cost of a grammar's token mask on the CPU at a 151,936-token vocabulary: llguidance against
xgrammar, on a JSON Schema, walking the tokens of a valid document (the work constrained AR does per token).
Also checks the partial-block question: how each library tells how many tokens of a proposed block fit.
Prints a table and writes JSON.

    python benchmarks/grammar_mask.py          # trains the 151,936-token BPE it needs first (about 30 s)
"""
import json
import os
import statistics
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HERE, save_json  # noqa: E402

VOCAB = 151936
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                           "tags": {"type": "array", "items": {"type": "string"}},
                                           "address": {"type": "object", "properties": {"city": {"type": "string"}}}},
          "required": ["name", "age", "tags", "address"]}
DOCUMENT = json.dumps({"name": "Ada Lovelace", "age": 36, "tags": ["mathematician", "writer", "analyst"],
                       "address": {"city": "London"}}, separators=(",", ":"))


def big_tokenizer(directory: Path) -> Path:
    from edgegen.train.tokenizer import train_tokenizer

    if not (directory / "tokenizer.json").is_file():
        files = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
        train_tokenizer((f.read_text(encoding="utf-8", errors="ignore") for f in files), directory, VOCAB, True,
                        show_progress=False)
    return directory / "tokenizer.json"


def time_llguidance(tokenizer_json: Path, ids: list[int]) -> dict:
    from llguidance import LLMatcher, LLTokenizer

    tokenizer = LLTokenizer(tokenizer_json.read_text(), n_vocab=VOCAB, eos_token=2)
    matcher = LLMatcher(tokenizer, LLMatcher.grammar_from_json_schema(SCHEMA), log_level=0)
    times = []
    for token in ids:
        start = time.perf_counter()
        matcher.compute_bitmask()
        times.append(time.perf_counter() - start)
        matcher.consume_token(token)
    fresh = LLMatcher(tokenizer, LLMatcher.grammar_from_json_schema(SCHEMA), log_level=0)
    return {"mask_us_p50": statistics.median(times) * 1e6, "mask_us_max": max(times) * 1e6,
            "block_check": f"validate_tokens: {fresh.validate_tokens(ids[:8] + [ids[0]])} of 9 fit, state unchanged"}


def time_xgrammar(tokenizer_json: Path, ids: list[int]) -> dict:
    import xgrammar as xgr
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(tokenizer_json)).get_vocab()
    encoded = [""] * VOCAB
    for text, index in vocab.items():
        encoded[index] = text
    info = xgr.TokenizerInfo(encoded, vocab_type=xgr.VocabType.BYTE_LEVEL, vocab_size=VOCAB, stop_token_ids=[2])
    matcher = xgr.GrammarMatcher(xgr.GrammarCompiler(info).compile_json_schema(json.dumps(SCHEMA)))
    bitmask = np.zeros((1, (VOCAB + 31) // 32), np.int32)
    times = []
    for token in ids:
        start = time.perf_counter()
        matcher.fill_next_token_bitmask(bitmask)
        times.append(time.perf_counter() - start)
        matcher.accept_token(token)
    return {"mask_us_p50": statistics.median(times) * 1e6, "mask_us_max": max(times) * 1e6,
            "block_check": "no block validation: accept tokens one by one, then rollback(n)"}


def main() -> None:
    tokenizer_json = big_tokenizer(Path(os.environ.get("EDGEGEN_BIG_TOKENIZER", "/tmp/edgegen-bigtok")))
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(tokenizer_json)).encode(DOCUMENT).ids
    rows = {}
    for name, timer in (("llguidance", time_llguidance), ("xgrammar", time_xgrammar)):
        try:
            rows[name] = timer(tokenizer_json, ids)
        except ImportError as e:
            rows[name] = {"error": f"not installed ({e.name})"}
    print(f"{len(ids)} tokens of a JSON document, vocabulary {VOCAB}, load {os.getloadavg()[0]:.2f}")
    print("| library | mask p50 µs | mask max µs | partial blocks |\n|---|---:|---:|---|")
    for name, row in rows.items():
        if "error" in row:
            print(f"| {name} | - | - | {row['error']} |")
        else:
            print(f"| {name} | {row['mask_us_p50']:.0f} | {row['mask_us_max']:.0f} | {row['block_check']} |")
    save_json(HERE / "results" / "grammar_mask.json", {"vocab": VOCAB, "tokens": len(ids), "rows": rows})


if __name__ == "__main__":
    main()
