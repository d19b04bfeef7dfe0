"""Structured output: a grammar (JSON Schema, any JSON object, a regex or a Lark grammar) that every generated
token must keep satisfiable, through llguidance (the `structured` extra).

llguidance was chosen for two things a block decoder needs: `validate_tokens` tells how many tokens of a
proposed block the grammar allows without advancing the matcher (threshold and verify check whole blocks of
drafts), and token masks come from its tokenizer slices fast enough at a 150k vocabulary (README, measured).
"""
import json
from pathlib import Path

import numpy as np

from .errors import EdgegenError
from .sampling import Rows

FORMATS = ("json_object", "json_schema", "regex", "grammar")


def grammar_text(response_format: dict) -> str:
    """llguidance's grammar for an OpenAI-style response_format (plus edgegen's regex and grammar types)."""
    from llguidance import LLMatcher

    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_object":
        return LLMatcher.grammar_from_json_schema(compact({"type": "object"}))
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise EdgegenError('a json_schema response_format needs {"json_schema": {"schema": {...}}}')
        return LLMatcher.grammar_from_json_schema(compact(schema))
    if kind == "regex" and isinstance(response_format.get("regex"), str):
        return LLMatcher.grammar_from_regex(response_format["regex"])
    if kind == "grammar" and isinstance(response_format.get("grammar"), str):
        return LLMatcher.grammar_from_lark(response_format["grammar"])
    raise EdgegenError(f"response_format must be {{'type': one of {', '.join(FORMATS)}, ...}}, not {response_format!r}")


def compact(schema: dict) -> dict:
    """No free whitespace between JSON tokens: a small model offered it can spend every token on spaces."""
    return {**schema, "x-guidance": {"whitespace_flexible": False, **schema.get("x-guidance", {})}}


class Constraint:
    """The grammar's state over the tokens generated so far."""

    def __init__(self, ll_tokenizer, response_format: dict):
        self.matcher = new_matcher(ll_tokenizer, grammar_text(response_format))
        self.vocab = ll_tokenizer.vocab_size

    def allowed(self) -> np.ndarray:
        """A bool per vocabulary id: may it come next?"""
        bits = np.frombuffer(self.matcher.compute_bitmask(), np.uint8)
        return np.unpackbits(bits, bitorder="little")[:self.vocab].astype(bool)

    def mask(self, rows: Rows, row: int) -> Rows:
        """One row with every token the grammar forbids at the current state set to -inf."""
        allowed = self.allowed()
        values = np.full(rows.values.shape[-1], -np.inf, rows.values.dtype)
        width = min(len(allowed), len(values))
        values[:width] = np.where(allowed[:width], rows.values[row, :width], -np.inf)
        return Rows(values[None])

    def valid_prefix(self, tokens: list[int]) -> int:
        """How many of these tokens, in order, the grammar allows from the current state (state unchanged)."""
        return self.matcher.validate_tokens(tokens)

    def advance(self, tokens: list[int]) -> None:
        for token in tokens:
            if self.matcher.is_stopped():  # complete: what follows is the end-of-sequence token
                return
            if not self.matcher.consume_token(token):
                raise EdgegenError(f"structured output: the grammar refused token {token} "
                                   f"({self.matcher.get_error()[:300]})")


def new_matcher(ll_tokenizer, grammar: str):
    from llguidance import LLMatcher

    matcher = LLMatcher(ll_tokenizer, grammar, log_level=0)
    if matcher.is_error():
        raise EdgegenError(f"structured output: the grammar was rejected ({matcher.get_error()})")
    return matcher


def ll_tokenizer(model_dir: Path, eos_ids: list[int], vocab_size: int):
    """llguidance's view of the model's tokenizer.json (built once per model: about a second at 150k tokens)."""
    try:
        from llguidance import LLTokenizer
    except ImportError:
        raise EdgegenError("structured output needs llguidance: pip install -e '.[structured]'") from None
    text = (Path(model_dir) / "tokenizer.json").read_text(encoding="utf-8")
    return LLTokenizer(text, n_vocab=vocab_size, eos_token=eos_ids if len(eos_ids) > 1 else eos_ids[0])


def schema_of(path: Path) -> dict:
    """A response_format for a JSON Schema file."""
    try:
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EdgegenError(f"cannot read the JSON Schema {path}: {e}") from None
    return {"type": "json_schema", "json_schema": {"name": Path(path).stem, "schema": schema}}
