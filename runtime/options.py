"""Decoding options, declared once: each field's type, default, range and help live here, and the API's
validation, the CLI flags, chat's /set and bench's configurations are all derived from them."""
import math
import numbers
from dataclasses import dataclass, field, fields

from .drafting import MASK, SOURCES
from .errors import EdgegenError
from .manifest import Manifest
from .sampling import ACCEPTANCE_METRICS

DEFAULT_BLOCK_SIZE = 4  # for MARS models whose trained block size is unknown
MODES = ("ar", "threshold", "verify")
THRESHOLD_OPTIONS = ("threshold", "acceptance", "max_accept")  # lossy threshold mode's own knobs
MIN_TEMPERATURE = 1e-3  # below this (but above 0) logits / temperature overflow: 0 is greedy


def option(default, help: str, kind: str, choices: tuple = (), low: float | None = None,
           high: float | None = None, low_open: bool = False):
    """A field with what validation, parsing and help need: kind is int, float, str, block (an int or 'auto'),
    list (of str) or bool; low/high bound numbers (low_open: strictly above low)."""
    metadata = {"help": help, "kind": kind, "choices": choices, "low": low, "high": high, "low_open": low_open}
    if isinstance(default, list):
        return field(default_factory=list, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class GenerationOptions:
    max_new_tokens: int = option(256, "most tokens to generate", "int", low=1)
    mode: str | None = option(None, "verify (the default): lossless, the model checks drafts (its own mask "
                              "predictions, lookup in the text so far) and the output is exactly AR's; ar: one token "
                              "per forward; threshold: MARS, faster but lossy, accepts mask predictions with "
                              "confidence >= threshold (implied by threshold, acceptance or max_accept)", "str",
                              MODES)
    drafts: str = option("auto", "verify's draft sources: mask predictions (MARS models), lookup, or auto (every "
                         "source the model has)", "str", SOURCES)
    block_size: int | str | None = option(None, "tokens per forward to propose, or auto (measured costs and running "
                                          "acceptance pick it each step; the default; a fixed 4 for threshold mode "
                                          "on a model whose trained block size is unknown)", "block", low=1)
    max_block_size: int | None = option(None, "upper bound for auto (default: the trained block size for mask "
                                        "drafts, 17 for lookup drafts)", "int", low=2)
    threshold: float | None = option(None, "threshold mode: accept block tokens while confidence >= this (default "
                                     "0.95; within 0..1 unless acceptance is entropy)", "float", low=0)
    acceptance: str | None = option(None, "threshold mode's confidence (default probability)", "str",
                                    ACCEPTANCE_METRICS)
    max_accept: int | None = option(None, "threshold mode: accept at most this many tokens per forward", "int", low=1)
    temperature: float = option(0.0, f"0 is greedy; else at least {MIN_TEMPERATURE}", "float", low=0)
    top_k: int = option(0, "sample among the k most likely tokens (0: off)", "int", low=0)
    top_p: float = option(1.0, "sample among the most likely tokens holding this much probability (1: off)",
                          "float", low=0, high=1, low_open=True)
    seed: int | None = option(None, "random seed for sampling", "int", low=0)
    stop: list[str] = option([], "stop before this text (repeatable)", "list")
    full_logits: bool = option(False, "decide from whole logit rows even on a graph exported with --topk", "bool")
    response_format: dict | None = option(None, "structured output: {'type': 'json_object'}, {'type': 'json_schema', "
                                          "'json_schema': {'schema': ...}}, {'type': 'regex', 'regex': ...} or "
                                          "{'type': 'grammar', 'grammar': LARK}", "format")

    def __post_init__(self):
        for f in fields(self):
            setattr(self, f.name, checked_value(f, getattr(self, f.name)))

    def check(self, manifest: Manifest) -> "GenerationOptions":
        """Fill the model-dependent defaults and reject combinations that cannot work, saying which fix applies."""
        lossy = [name for name in THRESHOLD_OPTIONS if getattr(self, name) is not None]
        if self.mode is None:
            self.mode = "threshold" if lossy else "ar" if self.block_size == 1 else "verify"
        if self.mode != "threshold" and lossy:
            raise EdgegenError(f"invalid generation option: {', '.join(lossy)} belong(s) to mode='threshold', not "
                               f"mode={self.mode!r}; drop it, or ask for threshold mode")
        if self.mode == "threshold":
            self.threshold = 0.95 if self.threshold is None else self.threshold
            self.acceptance = self.acceptance or "probability"
        if self.block_size is None or self.mode == "ar":
            unknown_size = self.mode == "threshold" and not manifest.block_size
            self.block_size = 1 if self.mode == "ar" else DEFAULT_BLOCK_SIZE if unknown_size else "auto"
        problems = [
            (self.mode == "threshold" and manifest.mask_token_id is None,
             "this model has no <|mask|> token, so threshold mode cannot run: use mode='verify' (lossless, "
             "lookup drafts) or mode='ar'"),
            (self.mode != "verify" and self.drafts != "auto",
             f"drafts={self.drafts!r} belongs to mode='verify', not mode={self.mode!r}"),
            (self.drafts == MASK and manifest.mask_token_id is None,
             "this model has no <|mask|> token, so it has no mask drafts: use drafts='lookup' or 'auto'"),
            (self.mode == "threshold" and self.acceptance != "entropy" and not 0 <= self.threshold <= 1,
             f"threshold for acceptance={self.acceptance!r} must be within 0..1"),
        ]
        for bad, message in problems:
            if bad:
                raise EdgegenError(f"invalid generation option: {message}")
        return self


def checked_value(f, value):
    """`value` if it suits field `f` (a str stop becomes a list of one), else a clear error."""
    meta, name = f.metadata, f.name
    kind = meta["kind"]
    if value is None and f.default is None:
        return None
    if kind == "list":
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise EdgegenError(f"invalid generation option: {name} must be a list of strings, not {value!r}")
        return value
    if kind == "format":
        if not isinstance(value, dict) or not isinstance(value.get("type"), str):
            raise EdgegenError(f"invalid generation option: {name} must be a dict with a 'type', not {value!r}")
        return None if value["type"] == "text" else value
    if kind == "bool":
        if not isinstance(value, bool):
            raise EdgegenError(f"invalid generation option: {name} must be True or False, not {value!r}")
        return value
    if kind == "str" or (kind == "block" and value == "auto"):
        if meta["choices"] and value not in meta["choices"] or kind == "block" and value != "auto":
            raise EdgegenError(f"invalid generation option: {name} must be one of {', '.join(meta['choices'])}, "
                               f"not {value!r}")
        return value
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    whole = kind in ("int", "block")
    if not number or whole and not float(value).is_integer() or not math.isfinite(value):
        wanted = "a whole number" + (" or 'auto'" if kind == "block" else "") if whole else "a finite number"
        raise EdgegenError(f"invalid generation option: {name} must be {wanted}, not {value!r}")
    value = int(value) if whole else float(value)
    low, high = meta["low"], meta["high"]
    if low is not None and (value <= low if meta["low_open"] else value < low) or high is not None and value > high:
        bounds = f"{'above' if meta['low_open'] else 'at least'} {low}" + (f" and at most {high}" if high else "")
        raise EdgegenError(f"invalid generation option: {name} must be {bounds}, not {value!r}")
    if name == "temperature" and 0 < value < MIN_TEMPERATURE:
        raise EdgegenError(f"invalid generation option: temperature must be 0 (greedy) or at least "
                           f"{MIN_TEMPERATURE}, not {value!r}")
    return value


OPTION_FIELDS = {f.name: f for f in fields(GenerationOptions)}


def parse_option(name: str, text: str):
    """An option's value from text (a CLI flag, chat's /set, a bench configuration), checked."""
    f = OPTION_FIELDS[name]
    kind = f.metadata["kind"]
    if kind in ("int", "block", "float") and text != "auto":
        try:
            value = float(text)
        except ValueError:
            raise EdgegenError(f"invalid generation option: {name} needs a number, not {text!r}") from None
        value = int(value) if kind != "float" and value.is_integer() else value
    elif kind == "bool":
        value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.lower(), text)
    else:
        value = text
    return checked_value(f, value)
