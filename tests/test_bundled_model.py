"""The bundled default MARS model: real acceptance behaviour and real text through every path."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import edgegen

PROMPTS = Path(__file__).resolve().parent.parent / "benchmarks" / "data" / "heldout_prompts.jsonl"


@pytest.fixture(scope="module")
def model():
    return edgegen.load(provider="cpu", threads=2)


@pytest.fixture(scope="module")
def heldout(model):
    """Chat prompts from standard-library modules the model never saw in training, 3 of each task."""
    rows = [json.loads(line) for line in PROMPTS.open(encoding="utf-8")]
    picked = [row for task in ("complete", "strip", "explain") for row in rows if row["task"] == task][::7][:9]
    return [model.tokenizer.encode(model.tokenizer.apply_chat_template(row["messages"][:1]), False) for row in picked]


def run(model, ids, **options):
    generation = model.start(ids, max_new_tokens=64, **options)
    text = "".join(generation)
    return generation.result, text


def test_manifest_describes_a_mars_model(model):
    assert model.manifest.mask_token_id is not None and model.manifest.block_size == 4
    assert model.manifest.dtype == "fp16"


def test_lower_threshold_accepts_several_tokens_per_forward(model, heldout):
    forwards = {tau: 0 for tau in (1.0, 0.9, 0.7)}
    tokens = dict.fromkeys(forwards, 0)
    for ids in heldout:
        for tau in forwards:
            result, _ = run(model, ids, threshold=tau)
            forwards[tau] += result.stats.forwards
            tokens[tau] += result.stats.new_tokens
    per_forward = {tau: tokens[tau] / forwards[tau] for tau in forwards}
    assert per_forward[1.0] == 1.0
    assert per_forward[0.9] > 1.2
    assert per_forward[0.7] >= per_forward[0.9]


def test_threshold_one_is_the_ar_greedy_output(model, heldout):
    for ids in heldout:
        assert run(model, ids, threshold=1.0)[0].token_ids == run(model, ids, block_size=1)[0].token_ids


def test_stop_string_inside_accepted_blocks_on_real_text(model, heldout):
    free, _ = run(model, heldout[0], threshold=0.7)
    assert "\n" in free.text
    stop = free.text[free.text.index("\n") - 2:free.text.index("\n") + 3]
    result, streamed = run(model, heldout[0], threshold=0.7, stop=[stop])
    assert result.stop_reason == "stop" and stop not in streamed
    assert streamed == result.text == free.text[:free.text.index(stop)]


def test_chat_on_real_text_reuses_the_cache(model):
    chat = model.chat(system="You are a Python expert.", max_new_tokens=40, threshold=0.9)
    first = chat.send("In the Python module json, what does the function dumps do?")
    second = chat.send("In the Python module os, what does the function makedirs do?")
    assert first.text.strip() and second.text.strip()
    assert second.stats.cached_prompt_tokens >= first.stats.prompt_tokens


def edgegen_command(*args, stdin=""):
    return subprocess.run([sys.executable, "-m", "edgegen", *args], input=stdin, capture_output=True, text=True,
                          timeout=120)


def test_generate_and_chat_work_without_a_model_argument():
    run_ = edgegen_command("generate", "--chat", "--prompt", "In the Python module shutil, what does the "
                           "function copyfile do?", "--max-new-tokens", "24", "--json")
    assert run_.returncode == 0, run_.stderr
    assert json.loads(run_.stdout)["new_tokens"] > 0
    chat = edgegen_command("chat", "--max-new-tokens", "16", stdin="What does json.loads do?\n/quit\n")
    assert chat.returncode == 0, chat.stderr
    assert "tokens/forward" in chat.stderr and chat.stdout.strip()
