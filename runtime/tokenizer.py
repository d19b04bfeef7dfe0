"""Tokenizer and chat template of an exported model, rendered exactly as transformers does."""
import json
from datetime import datetime
from pathlib import Path

from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer as FastTokenizer

from .errors import EdgegenError
from .jsonl import read_json_object, read_text

SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
MASK_TOKEN = "<|mask|>"  # MARS models' mask token, when tokenizer_config.json names none


def token_value(entry) -> str | None:
    """tokenizer_config stores special tokens as strings or as AddedToken dicts."""
    return entry.get("content") if isinstance(entry, dict) else entry


def as_list(value) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]


def special_token_ids(directory: Path, tokenizer: FastTokenizer, fix: str) -> dict:
    """eos/pad/bos/mask ids from tokenizer_config.json, config.json and generation_config.json (those present)."""
    tok_config, config, gen_config = (
        read_json_object(directory / name, fix) if (directory / name).is_file() else {}
        for name in ("tokenizer_config.json", "config.json", "generation_config.json"))

    def lookup(key: str) -> int | None:
        text = token_value(tok_config.get(key))
        return tokenizer.token_to_id(text) if text else None

    eos = [lookup("eos_token")] + as_list(config.get("eos_token_id")) + as_list(gen_config.get("eos_token_id"))
    mask = lookup("mask_token")
    return {
        "eos_token_ids": list(dict.fromkeys(i for i in eos if i is not None)),
        "pad_token_id": lookup("pad_token") if lookup("pad_token") is not None else config.get("pad_token_id"),
        "bos_token_id": lookup("bos_token") if lookup("bos_token") is not None else config.get("bos_token_id"),
        "mask_token_id": mask if mask is not None else tokenizer.token_to_id(MASK_TOKEN),
    }


def raise_exception(message):
    raise TemplateError(message)


def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    """transformers' tojson: unlike jinja's own filter, no HTML escaping."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def compile_template(source: str):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


def read_chat_template(model_dir: Path, config: dict) -> str | None:
    template_file = model_dir / "chat_template.jinja"
    if template_file.is_file():
        return read_text(template_file, "re-export the model")
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: use the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    return template


class Tokenizer:
    def __init__(self, model_dir: Path):
        model_dir = Path(model_dir)
        path = model_dir / "tokenizer.json"
        if not path.is_file():
            raise EdgegenError(f"missing file {path}; re-export the model")
        try:
            self.fast = FastTokenizer.from_file(str(path))
        except Exception as e:  # noqa: BLE001 - the tokenizers library raises plain Exceptions
            raise EdgegenError(f"{path} is not a readable tokenizer ({str(e)[:200]}); re-export the model") from e
        config_path = model_dir / "tokenizer_config.json"
        config = read_json_object(config_path, "re-export the model") if config_path.is_file() else {}
        self.special_tokens = {key: value.get("content") if isinstance(value, dict) else value
                               for key in SPECIAL_TOKEN_KEYS if (value := config.get(key)) is not None}
        source = self.template_source = read_chat_template(model_dir, config)
        self.chat_template, self.template_error = None, None
        try:
            self.chat_template = compile_template(source) if source else None
        except TemplateError as e:  # plain prompts work without it: fail only when the template is needed
            self.template_error = f"this model's chat template does not compile ({e}); fix chat_template.jinja " \
                                  "(or tokenizer_config.json's chat_template) in the model directory"

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if not isinstance(text, str):
            raise EdgegenError(f"text to encode must be a str, not {type(text).__name__}")
        try:
            return self.fast.encode(text, add_special_tokens=add_special_tokens).ids
        except TypeError:  # lone surrogates (from JSON "\ud800"): not encodable text; read them as U+FFFD
            text = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
            return self.fast.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int]) -> str:
        return self.fast.decode(ids, skip_special_tokens=True)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True,
                            tools: list[dict] | None = None) -> str:
        if self.template_error:
            raise EdgegenError(self.template_error)
        if self.chat_template is None:
            raise EdgegenError("this model's tokenizer has no chat_template; use a plain prompt instead of chat, "
                               "or add a chat_template to tokenizer_config.json before exporting")
        try:
            return self.chat_template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                             tools=tools, **self.special_tokens)
        except TemplateError as e:
            raise EdgegenError(f"the chat template rejected the messages: {e}") from e
