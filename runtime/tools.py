"""Tool calls: offering tools through the model's own chat template and reading the calls back out of its text.

Every model family writes calls its own way, and its chat template shows which. Two ways are read here:
Hermes-style `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks (Qwen2, Qwen2.5, Qwen3 and the
MARS releases built on them) and Llama 3's bare `{"name": ..., "parameters": {...}}` answer. A template that
takes tools but writes calls some other way is refused with a clear error rather than read wrongly.
"""
import json
import re
import uuid
from dataclasses import dataclass

from .errors import EdgegenError
from .text import StopFilter

CHOICES = ("none", "auto", "required")


@dataclass(frozen=True)
class ToolFormat:
    name: str
    start: str  # text that opens a call
    end: str  # text that closes it ("": the call is the whole answer)
    arguments: str  # the key holding the arguments

    def split(self, text: str) -> tuple[str, list[dict]]:
        """The answer's text without its well-formed calls, and those calls ({"name", "arguments": JSON text});
        a call that does not parse stays in the text."""
        if not self.end:
            call = self.read_call(text.strip()) if text.lstrip().startswith(self.start) else None
            return ("", [call]) if call else (text, [])
        calls, kept, position = [], [], 0
        pattern = re.compile(re.escape(self.start) + r"(.*?)" + re.escape(self.end), re.DOTALL)
        for match in pattern.finditer(text):
            if (call := self.read_call(match.group(1).strip())) is not None:
                kept.append(text[position:match.start()])
                calls.append(call)
                position = match.end()
        kept.append(text[position:])
        content = "".join(kept)
        return ("" if calls and not content.strip() else content), calls

    def read_call(self, source: str) -> dict | None:
        try:
            call = json.loads(source)
        except ValueError:
            return None
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return None
        arguments = call.get(self.arguments, call.get("arguments", {}))
        if isinstance(arguments, str):  # some models write the arguments as a JSON string already
            try:
                arguments = json.loads(arguments)
            except ValueError:
                return None
        if not isinstance(arguments, dict):
            return None
        return {"name": call["name"], "arguments": json.dumps(arguments, ensure_ascii=False)}

    def forced(self, tools: list[dict]) -> dict:
        """A response_format that makes the answer exactly one call of one of these tools, with arguments that
        fit its parameters schema."""
        options = [{"type": "object", "properties": {"name": {"const": tool["function"]["name"]},
                                                     self.arguments: declared_only(tool)},
                    "required": ["name", self.arguments], "additionalProperties": False} for tool in tools]
        schema = options[0] if len(options) == 1 else {"oneOf": options}
        call = json.dumps({**schema, "x-guidance": {"whitespace_flexible": False}})
        if not self.end:
            return {"type": "grammar", "grammar": f"start: %json {call}"}
        return {"type": "grammar",
                "grammar": f"start: {json.dumps(self.start + chr(10))} call {json.dumps(chr(10) + self.end)}\n"
                           f"call: %json {call}"}


def declared_only(tool: dict) -> dict:
    """A tool's parameters schema holding only the parameters it declares (as OpenAI's strict mode does): JSON
    Schema's default would let a forced call invent any other argument."""
    parameters = tool["function"].get("parameters") or {"type": "object", "properties": {}}
    return {"additionalProperties": False, **parameters}


HERMES = ToolFormat("hermes", "<tool_call>", "</tool_call>", "arguments")
LLAMA3 = ToolFormat("llama3", "{", "", "parameters")


def tool_format(template_source: str | None) -> ToolFormat:
    """How this chat template's model writes tool calls; an error when it takes no tools or writes them in a
    way edgegen does not read."""
    source = template_source or ""
    if "tools" not in source:
        raise EdgegenError("this model's chat template does not take tools, so it was not trained to call them; "
                           "use a model whose template does (Qwen2.5, Qwen3, Llama 3.1+), or describe the tools in "
                           "the prompt and ask for a response_format")
    if HERMES.start in source:
        return HERMES
    if '"parameters": ' in source:
        return LLAMA3
    raise EdgegenError("this model's chat template takes tools but writes calls in a form edgegen does not read yet "
                       "(it reads Hermes <tool_call> blocks and Llama 3 JSON); leave tools out of the request")


def checked_tools(tools, tool_choice) -> tuple[list[dict], str | None]:
    """The tools to offer and, when the answer must call one, the name ("" for any); errors name the problem."""
    if not isinstance(tools, list) or not tools:
        raise EdgegenError('tools must be a non-empty list like [{"type": "function", "function": {"name": ..., '
                           '"parameters": {...}}}]')
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise EdgegenError(f'each tool must be {{"type": "function", "function": {{"name": ..., ...}}}}, '
                               f'not {str(tool)[:120]}')
        if not isinstance(function.get("parameters", {}), dict):
            raise EdgegenError(f"tool {function['name']!r}: parameters must be a JSON Schema object")
    names = [tool["function"]["name"] for tool in tools]
    if tool_choice in ("auto", None):
        return tools, None
    if tool_choice == "required":
        return tools, ""
    name = tool_choice.get("function", {}).get("name") if isinstance(tool_choice, dict) else None
    if name in names:
        return tools, name
    raise EdgegenError(f"tool_choice must be one of {', '.join(CHOICES)} or "
                       f'{{"type": "function", "function": {{"name": NAME}}}} naming one of the tools '
                       f"({', '.join(names)}), not {str(tool_choice)[:120]}")


class ToolCallFilter:
    """Streams an answer's text up to where a tool call may begin; the rest waits for `finish`."""

    def __init__(self, fmt: ToolFormat):
        self.format, self.shown = fmt, ""
        self.marker = StopFilter([fmt.start]) if fmt.end else None  # calls open with a marker anywhere
        self.is_call: bool | None = None  # else the whole answer is a call or not: its first character tells
        self.waiting = ""

    def push(self, text: str) -> str:
        if self.marker is not None:
            piece = "" if self.marker.stopped else self.marker.push(text)
        else:
            self.waiting += text
            if self.is_call is None and self.waiting.strip():
                self.is_call = self.waiting.lstrip().startswith(self.format.start)
            if self.is_call is not False:
                return ""
            piece, self.waiting = self.waiting, ""
        self.shown += piece
        return piece

    def finish(self, text: str) -> tuple[str, list[dict]]:
        """The rest of the answer's text (all of `text` not shown yet, less its calls) and the calls."""
        content, calls = self.format.split(text)
        return content[len(self.shown):], calls


def openai_tool_calls(calls: list[dict]) -> list[dict]:
    return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": call} for call in calls]
