"""`edgegen chat`: an offline terminal chat with streaming, history and in-chat settings."""
import json
import os
import sys
import textwrap
from pathlib import Path

from .runtime import EdgegenError, GenerationOptions
from .runtime.cache import cache_dir
from .runtime.jsonl import read_text
from .runtime.options import OPTION_FIELDS, THRESHOLD_OPTIONS, parse_option

ALIASES = {"block": "block_size"}
TEXT_ONLY = ("stop", "response_format")  # not settable with /set: lists and formats
SETTINGS = ", ".join(f"{name} ({'|'.join(f.metadata['choices'])})" if f.metadata["choices"] else name
                     for name, f in OPTION_FIELDS.items() if name not in TEXT_ONLY)
HELP = f"""commands:
  /reset            start a new conversation (the system prompt stays)
  /stats            statistics of the last answer
  /set KEY=VALUE    change a decoding option (KEY= alone restores its default; block is block_size):
{textwrap.fill(SETTINGS, 100, initial_indent=" " * 20, subsequent_indent=" " * 20)}
  /save FILE        write the conversation to FILE as JSON
  /help             this text
  /quit             leave (Ctrl-D does too)
Ctrl-C stops an answer; at the prompt, press it twice to leave."""

def history_file() -> Path:
    """$EDGEGEN_HISTORY, else chat_history in edgegen's cache directory ($EDGEGEN_CACHE, $XDG_CACHE_HOME/edgegen)."""
    return Path(os.environ["EDGEGEN_HISTORY"]) if os.environ.get("EDGEGEN_HISTORY") else cache_dir() / "chat_history"


def enable_line_editing() -> None:
    """Arrow keys, editing and a persistent history where the readline module exists."""
    try:
        import atexit
        import readline
    except ImportError:
        return
    path = history_file()
    try:
        readline.read_history_file(path)
    except OSError:
        pass
    readline.set_history_length(1000)
    atexit.register(lambda: _write_history(readline, path))


def _write_history(readline, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        readline.write_history_file(path)
    except OSError:
        pass


def parse_setting(text: str, options: dict, model) -> dict:
    """Apply one KEY=VALUE to a copy of the options, checked against the model before it is kept; an empty
    VALUE (or none) goes back to the default."""
    key, _, value = text.partition("=")
    key, value = ALIASES.get(key.strip(), key.strip()), value.strip()
    if key not in OPTION_FIELDS or key in TEXT_ONLY:
        raise EdgegenError(f"unknown setting {key!r}; /help lists them")
    updated = dict(options)
    if value.lower() in ("", "none"):
        updated.pop(key, None)
    else:
        updated[key] = parse_option(key, value)
    if key == "mode":  # a block size or threshold chosen for one mode does not carry over to another
        for name in ("block_size",) + (THRESHOLD_OPTIONS if updated.get(key) != "threshold" else ()) + \
                (("drafts",) if updated.get(key) != "verify" else ()):
            updated.pop(name, None)
    GenerationOptions(**updated).check(model.manifest)
    return updated


def saved_conversation(path: Path) -> list[dict]:
    """The messages /save wrote: a JSON list of {"role", "content"}."""
    try:
        messages = json.loads(read_text(path))
    except ValueError as e:
        raise EdgegenError(f"{path} is not a conversation saved by /save ({e})") from None
    if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages):
        raise EdgegenError(f"{path} is not a conversation saved by /save (a JSON list of role/content messages)")
    return messages


def stats_table(stats) -> str:
    """The last answer's statistics, one per line, numbers rounded for reading (step times summarized)."""
    rows = {name: value for name, value in vars(stats).items() if name != "step_ms"}
    if stats.step_ms:
        rows["step_ms"] = f"{len(stats.step_ms)} steps, median {sorted(stats.step_ms)[len(stats.step_ms) // 2]:.2f}"
    shown = {name: round(value, 2) if isinstance(value, float) else
             [round(v, 2) for v in value] if isinstance(value, list) else value for name, value in rows.items()}
    return "\n".join(f"  {name:30} {value}" for name, value in shown.items())


def footer(result) -> str:
    s = result.stats
    return (f"[{s.new_tokens} tokens · {s.tokens_per_forward:.2f} tokens/forward · TTFT {s.ttft_ms:.0f} ms · "
            f"{s.decode_tokens_per_s:.1f} tokens/s · {result.stop_reason}]")


def answer(chat, text: str, out=sys.stdout) -> object:
    dropped = chat.dropped_turns
    generation = chat.stream(text)
    if chat.dropped_turns > dropped:
        print(f"[context full: dropped the {chat.dropped_turns - dropped} oldest turn(s)]", file=sys.stderr)
    try:
        for piece in generation:
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        generation.close()
    out.write("\n")
    print(footer(generation.result), file=sys.stderr, flush=True)
    return generation.result


def run_chat(model, system: str | None, options: dict, resume: Path | None = None) -> int:
    chat = model.chat(system=system, **options)
    if resume:
        chat.messages = saved_conversation(resume)
        print(f"[resumed {len(chat.messages)} messages from {resume}]", file=sys.stderr)
    enable_line_editing()
    print(f"edgegen chat · {model.path.name} · max context {model.max_context} · /help for commands",
          file=sys.stderr)
    last, interrupted = None, False
    while True:
        try:
            line = input("> ").strip()
            interrupted = False
        except KeyboardInterrupt:
            if interrupted:
                print(file=sys.stderr)
                return 0
            interrupted = True
            print("\n(press Ctrl-C again to leave)", file=sys.stderr)
            continue
        except EOFError:
            print(file=sys.stderr)
            return 0
        if not line:
            continue
        try:
            if not line.startswith("/"):
                last = answer(chat, line)
            elif line in ("/quit", "/exit"):
                return 0
            elif line == "/help":
                print(HELP, file=sys.stderr)
            elif line == "/reset":
                chat.reset()
                print("[new conversation]", file=sys.stderr)
            elif line == "/stats":
                print(stats_table(last.stats) if last else "[no answer yet]", file=sys.stderr)
            elif line.split()[0] in ("/set", "/save") and len(line.split()) == 1:
                print(f"[usage: {line} {'KEY=VALUE' if line == '/set' else 'FILE'}; /help says more]", file=sys.stderr)
            elif line.startswith("/set "):
                chat.options = parse_setting(line[5:], chat.options, model)
                print(f"[{line[5:].strip()}]", file=sys.stderr)
            elif line.startswith("/save "):
                path = Path(line[6:].strip()).expanduser()
                path.write_text(json.dumps(chat.messages, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
                print(f"[saved {len(chat.messages)} messages to {path}]", file=sys.stderr)
            else:
                print(f"[unknown command {line.split()[0]}; /help lists them]", file=sys.stderr)
        except (EdgegenError, OSError) as e:
            print(f"[error: {e}]", file=sys.stderr)
