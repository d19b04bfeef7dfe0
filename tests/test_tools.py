"""Tool calls: offered through the chat template, read back from the model's text, forced by a grammar."""
import json
import shutil
from pathlib import Path

import pytest

from edgegen import EdgegenError
from edgegen.models import DEFAULT_MODEL
from edgegen.runtime.tokenizer import compile_template
from edgegen.runtime.tools import HERMES, LLAMA3, ToolCallFilter, tool_format

TEMPLATES = Path(__file__).parent / "templates"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather now in a city",
                                            "parameters": {"type": "object", "required": ["city", "unit"],
                                                           "properties": {"city": {"type": "string", "maxLength": 12},
                                                                          "unit": {"enum": ["c", "f"]}}}}}
ADD = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "required": ["a", "b"], "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 999},
                                                            "b": {"enum": [1, 2, 3]}}}}}
TOOLS = [WEATHER, ADD]
QUESTION = [{"role": "user", "content": "Write 31415 in words."}]  # the bundled model knows no tools: it rambles
CALLS = [{"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                           "arguments": {"city": "Paris", "unit": "c"}}},
         {"id": "call_2", "type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}]


def fits(call: dict) -> bool:
    """The call names one of TOOLS and its arguments fit that tool's schema (checked by hand)."""
    arguments = json.loads(call["arguments"])
    if call["name"] == "get_weather":
        return set(arguments) == {"city", "unit"} and isinstance(arguments["city"], str) \
            and len(arguments["city"]) <= 12 and arguments["unit"] in ("c", "f")
    return call["name"] == "add" and set(arguments) == {"a", "b"} and isinstance(arguments["a"], int) \
        and 0 <= arguments["a"] <= 999 and arguments["b"] in (1, 2, 3)


def assistant_text(template: str, content: str, calls: list[dict]) -> str:
    """What the template writes for an assistant turn, between its header and its end-of-turn marker."""
    source = (TEMPLATES / template).read_text()
    before = compile_template(source).render(messages=QUESTION, add_generation_prompt=True)
    whole = compile_template(source).render(
        messages=QUESTION + [{"role": "assistant", "content": content, "tool_calls": calls}])
    return whole[len(before):].rsplit("<|", 1)[0]


@pytest.mark.parametrize("template, fmt, calls", [("hermes.jinja", HERMES, CALLS), ("llama3.jinja", LLAMA3, CALLS[:1])])
def test_calls_the_template_writes_read_back_as_they_were(template, fmt, calls):
    source = (TEMPLATES / template).read_text()
    assert tool_format(source) == fmt
    content = "Let me look." if fmt == HERMES else ""
    text = assistant_text(template, content, calls)
    read_content, read_calls = fmt.split(text)
    assert [(c["name"], json.loads(c["arguments"])) for c in read_calls] == \
        [(c["function"]["name"], c["function"]["arguments"]) for c in calls]
    assert read_content.strip() == content
    streamed = ToolCallFilter(fmt)  # character by character, as tokens arrive: no piece of a call is shown
    shown = "".join(streamed.push(character) for character in text)
    rest, again = streamed.finish(text)
    assert shown + rest == read_content and again == read_calls and "{" not in shown


def test_malformed_calls_and_plain_answers_stay_text():
    broken = 'Sure.\n<tool_call>\n{"name": "add", "arguments": {"a": 2\n</tool_call>'
    assert HERMES.split(broken) == (broken, [])
    assert LLAMA3.split("It is {sunny} today.") == ("It is {sunny} today.", [])
    assert LLAMA3.split('{"weather": "sunny"}') == ('{"weather": "sunny"}', [])
    streamed = ToolCallFilter(LLAMA3)
    shown = "".join(streamed.push(c) for c in "  Sunny {a} day")
    assert shown + streamed.finish("  Sunny {a} day")[0] == "  Sunny {a} day"
    streamed = ToolCallFilter(HERMES)
    shown = "".join(streamed.push(c) for c in broken)
    assert shown == "Sure.\n" and shown + streamed.finish(broken)[0] == broken


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The bundled model under each tool-taking template."""
    import edgegen

    loaded = {}
    for name in ("hermes", "llama3"):
        path = tmp_path_factory.mktemp(name) / "model"
        shutil.copytree(DEFAULT_MODEL, path)
        shutil.copy(TEMPLATES / f"{name}.jinja", path / "chat_template.jinja")
        loaded[name] = edgegen.load(path)
    return loaded


@pytest.mark.parametrize("name", ["hermes", "llama3"])
@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_a_forced_call_fits_its_tool_and_verify_equals_ar(models, name, choice):
    pytest.importorskip("llguidance")
    model = models[name]
    ar = model.generate(QUESTION, tools=TOOLS, tool_choice=choice, mode="ar", max_new_tokens=80)
    verify = model.generate(QUESTION, tools=TOOLS, tool_choice=choice, mode="verify", max_new_tokens=80)
    assert len(ar.tool_calls) == 1 and fits(ar.tool_calls[0]) and ar.text == "" and ar.stop_reason == "eos"
    assert choice == "required" or ar.tool_calls[0]["name"] == "get_weather"
    assert verify.tool_calls == ar.tool_calls and verify.token_ids == ar.token_ids
    streamed = model.stream(QUESTION, tools=TOOLS, tool_choice=choice)
    assert list(streamed) == [] and streamed.result.tool_calls == ar.tool_calls


def test_a_forced_call_admits_only_the_declared_arguments(models):
    pytest.importorskip("llguidance")
    from edgegen.runtime.grammar import Constraint

    model = models["hermes"]
    good = '<tool_call>\n{"name":"get_weather","arguments":{"city":"Paris","unit":"c"}}\n</tool_call>'
    for text, allowed in ((good, True), (good.replace('"c"}', '"c","days":3}'), False),
                          (good.replace("get_weather", "add"), False)):
        ids = model.tokenizer.encode(text, add_special_tokens=False)
        constraint = Constraint(model.grammar_tokenizer(), HERMES.forced([WEATHER]))
        assert (constraint.valid_prefix(ids) == len(ids)) == allowed


def test_tools_are_in_the_prompt_unless_tool_choice_is_none(models):
    model = models["hermes"]
    offered = model.tokenizer.decode(model.encode_prompt(QUESTION, tools=TOOLS))
    assert '"name": "get_weather"' in offered and "<tools>" in offered
    plain = model.generate(QUESTION, tools=TOOLS, tool_choice="none", max_new_tokens=20)
    assert plain.token_ids == model.generate(QUESTION, max_new_tokens=20).token_ids and plain.tool_calls == []
    history = QUESTION + [{"role": "assistant", "content": "", "tool_calls": CALLS[:1]},
                          {"role": "tool", "tool_call_id": "call_1", "content": "18 C"}]
    rendered = model.tokenizer.decode(model.encode_prompt(history, tools=TOOLS))
    assert "<tool_response>\n18 C\n</tool_response>" in rendered


@pytest.mark.parametrize("call, message", [
    (lambda m, d: d.generate(QUESTION, tools=TOOLS), "does not take tools"),
    (lambda m, d: m.generate(QUESTION, tools=[{"name": "f"}]), 'each tool must be {"type": "function"'),
    (lambda m, d: m.generate(QUESTION, tools=[]), "tools must be a non-empty list"),
    (lambda m, d: m.generate(QUESTION, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}),
     r"naming one of the tools \(get_weather, add\)"),
    (lambda m, d: m.generate(QUESTION, tools=TOOLS, tool_choice="required", response_format={"type": "json_object"}),
     "drop response_format"),
    (lambda m, d: m.generate(QUESTION, tool_choice="required"), "tool_choice needs tools"),
    (lambda m, d: m.generate("What is the weather?", tools=TOOLS), "give chat messages"),
])
def test_bad_tool_requests_say_what_to_fix(models, call, message):
    import edgegen

    with pytest.raises(EdgegenError, match=message):
        call(models["hermes"], edgegen.load())


def test_a_template_writing_calls_another_way_is_refused():
    with pytest.raises(EdgegenError, match="does not read yet"):
        tool_format("{% for tool in tools %}[TOOL_CALLS]{{ tool }}{% endfor %}")


def test_the_server_returns_calls_as_openai_tool_calls(models):
    openai = pytest.importorskip("openai")
    pytest.importorskip("starlette")
    from edgegen.serve import spawn

    model = models["hermes"]
    process, url = spawn(model.path)
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
    try:
        reply = client.chat.completions.create(model="m", messages=QUESTION, tools=TOOLS, tool_choice="required")
        local = model.generate(QUESTION, tools=TOOLS, tool_choice="required")
        message = reply.choices[0].message
        assert reply.choices[0].finish_reason == "tool_calls" and message.content is None
        assert [{"name": c.function.name, "arguments": c.function.arguments} for c in message.tool_calls] == \
            local.tool_calls and message.tool_calls[0].id.startswith("call_")
        chunks = list(client.chat.completions.create(model="m", messages=QUESTION, tools=TOOLS, stream=True,
                                                     tool_choice="required"))
        deltas = [call for c in chunks for call in (c.choices[0].delta.tool_calls or [])]
        assert [(d.index, d.function.name, d.function.arguments) for d in deltas] == \
            [(0, c["name"], c["arguments"]) for c in local.tool_calls]
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == ""
        answered = QUESTION + [message.model_dump(exclude_none=True),
                               {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "18 C"}]
        after = client.chat.completions.create(model="m", messages=answered, tools=TOOLS, max_tokens=20)
        history = QUESTION + [{"role": "assistant", "content": "", "tool_calls": [
            {**c.model_dump(), "function": {"name": c.function.name, "arguments": json.loads(c.function.arguments)}}
            for c in message.tool_calls]}, {"role": "tool", "tool_call_id": message.tool_calls[0].id,
                                           "content": "18 C"}]
        assert after.choices[0].message.content == model.generate(history, tools=TOOLS, max_new_tokens=20).text
        with pytest.raises(openai.BadRequestError, match="naming one of the tools"):
            client.chat.completions.create(model="m", messages=QUESTION, tools=TOOLS, stream=True,
                                           tool_choice={"type": "function", "function": {"name": "nope"}})
    finally:
        process.terminate()
        process.wait(timeout=10)
