"""Stop strings, UTF-8-safe streaming, chat templates and multi-turn KV reuse, on real tokenizers."""
import pytest
from transformers import AutoTokenizer

from edgegen.runtime.text import INCOMPLETE, IncrementalDecoder, StopFilter
from edgegen.runtime.tokenizer import Tokenizer

RARE_TEXT = "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ✨ Ωμέγα ŋ ǂ"  # characters the tokenizer never merged: split across byte tokens


def test_incremental_decoder_never_splits_a_character(exported):
    tokenizer = Tokenizer(exported["mars"])
    ids = tokenizer.encode(RARE_TEXT)
    assert any(INCOMPLETE in tokenizer.decode([i]) for i in ids), "the text should contain split characters"
    decoder = IncrementalDecoder(tokenizer)
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert all(INCOMPLETE not in piece for piece in pieces)
    assert "".join(pieces) == RARE_TEXT


def test_stop_filter_holds_back_possible_starts_only():
    stops = StopFilter(["END", "<|x|>"])
    assert stops.push("abc E") == "abc "
    assert stops.push("x") == "Ex"  # "Ex" can no longer start a stop string
    assert stops.push("yz <|") == "yz "
    assert stops.push("x|> tail") == ""
    assert stops.stopped


def test_stop_filter_releases_held_text_at_the_end():
    stops = StopFilter(["STOP"])
    assert stops.push("go ST") == "go "
    assert stops.flush() == "ST" and not stops.stopped


@pytest.mark.parametrize("options", [{"block_size": 1}, {"block_size": 4, "threshold": 0.0}])
def test_stop_string_spanning_tokens_never_appears(mars_model, options):
    prompt = "import json\ndef load(fp):"
    free = mars_model.generate(prompt, max_new_tokens=60, **options)
    ids = free.token_ids
    pieces = [mars_model.tokenizer.decode(ids[:n]) for n in range(len(ids) + 1)]
    # a stop string that starts inside token 10's text and ends inside token 13's
    start, end = len(pieces[10]) - 1, len(pieces[13]) + 1
    assert 0 < start and len(pieces[12]) < end <= len(free.text)
    stop = free.text[start:end]
    generation = mars_model.stream(prompt, max_new_tokens=60, stop=["@@never@@", stop], **options)
    streamed = list(generation)
    result = generation.result
    assert result.stop_reason == "stop"
    assert result.text == free.text[:free.text.index(stop)]
    assert "".join(streamed) == result.text
    assert stop not in result.text and all(stop not in piece for piece in streamed)
    assert result.token_ids == ids[:len(result.token_ids)] and len(result.token_ids) <= 14


def test_stream_joins_to_the_full_decode(mars_model):
    generation = mars_model.stream("héllo wörld 🎉", max_new_tokens=50, block_size=4, threshold=0.05)
    pieces = list(generation)
    assert "".join(pieces) == generation.result.text
    assert generation.result.text == mars_model.tokenizer.decode(generation.result.token_ids)


RICH_TEMPLATE = """{%- if messages[0]['role'] == 'system' %}{%- set system = messages[0]['content'] %}\
{%- set messages = messages[1:] %}{%- else %}{%- set system = 'You are a helpful assistant.' %}{%- endif %}
<|im_start|>system
{{ system }}<|im_end|>
{% for message in messages %}
  {%- if message['role'] not in ['user', 'assistant'] %}{{ raise_exception('unknown role ' + message['role']) }}\
{%- endif %}
  {%- if loop.index0 > 8 %}{% break %}{% endif %}
<|im_start|>{{ message['role'] }}
{{ message['content'] | trim }}{% if message.meta is defined %} {{ message.meta | tojson }}{% endif %}<|im_end|>
{% endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}{{ eos_token if false else '' }}"""


@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("template", ["model", "rich"])
def test_chat_template_renders_like_transformers(exported, tmp_path, add_generation_prompt, template):
    model_dir = exported["mars"]
    if template == "rich":
        model_dir = tmp_path / "rich"
        model_dir.mkdir()
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (model_dir / name).write_bytes((exported["mars"] / name).read_bytes())
        (model_dir / "chat_template.jinja").write_text(RICH_TEMPLATE)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "  héllo <b>&</b> "},
                {"role": "assistant", "content": "hi", "meta": {"ünï": "<&>", "n": [1, 2]}},
                {"role": "user", "content": "again"}]
    expected = AutoTokenizer.from_pretrained(model_dir).apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    assert Tokenizer(model_dir).apply_chat_template(messages, add_generation_prompt) == expected


def test_chat_reuses_the_kv_cache_of_earlier_turns(mars_model):
    chat = mars_model.chat(system="You are terse.", max_new_tokens=12, block_size=1)
    first = chat.send("hello")
    history_tokens = first.stats.prompt_tokens
    second = chat.send("and again")
    assert second.stats.cached_prompt_tokens >= history_tokens
    assert [m["role"] for m in chat.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert chat.messages[2]["content"] == first.text
    # the same prompt from an empty cache gives the same answer
    prompt = mars_model.tokenizer.apply_chat_template(chat.messages[:4])
    mars_model.engine.rewind(0)
    fresh = mars_model.stream(mars_model.tokenizer.encode(prompt, add_special_tokens=False), max_new_tokens=12,
                             block_size=1)
    assert "".join(fresh) == second.text


def test_abandoned_stream_still_records_the_turn(mars_model):
    chat = mars_model.chat(max_new_tokens=30, block_size=1)
    generation = chat.stream("tell me")
    next(iter(generation))
    generation.close()
    assert generation.result.stop_reason == "cancelled"
    assert chat.messages[-1] == {"role": "assistant", "content": generation.result.text}


def test_chat_drops_the_oldest_turns_when_the_context_fills(exported):
    from edgegen import load

    model = load(exported["mars"], provider="cpu", max_context=96)
    chat = model.chat(system="Be brief.", max_new_tokens=16, mode="ar")
    for turn in range(6):
        result = chat.send(f"question number {turn} about the weather today")
        assert result.stats.prompt_tokens <= 96 - 16  # room was kept for the answer
    assert chat.dropped_turns > 0
    assert chat.messages[0] == {"role": "system", "content": "Be brief."}
    assert chat.messages[-2]["content"] == "question number 5 about the weather today"
