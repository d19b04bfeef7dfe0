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


def heldout_prompts(model, tasks: tuple[str, ...], per_task: int = 3) -> list[list[int]]:
    """Chat prompts the model never saw in training (held-out modules and numbers)."""
    rows = [json.loads(line) for line in PROMPTS.open(encoding="utf-8")]
    picked = [row for task in tasks for row in [r for r in rows if r["task"] == task][:per_task]]
    return [model.tokenizer.encode(model.tokenizer.apply_chat_template(row["messages"][:1]), False) for row in picked]


@pytest.fixture(scope="module")
def heldout(model):
    return heldout_prompts(model, ("numbers", "complete", "strip", "explain"))


def run(model, ids, **options):
    generation = model.stream(ids, max_new_tokens=64, **options)
    text = "".join(generation)
    return generation.result, text


def test_manifest_describes_a_mars_model(model):
    assert model.manifest.mask_token_id is not None and model.manifest.block_size == 4
    assert model.manifest.dtype == "fp32"


def tokens_per_forward(model, prompts, **options) -> float:
    results = [run(model, ids, **options)[0] for ids in prompts]
    return sum(r.stats.new_tokens for r in results) / sum(r.stats.forwards - (r.stop_reason == "eos") for r in results)


def test_lower_threshold_accepts_several_tokens_per_forward(model):
    numbers = heldout_prompts(model, ("numbers",), per_task=6)
    per_forward = {tau: tokens_per_forward(model, numbers, mode="threshold", block_size=4, threshold=tau)
                   for tau in (1.0, 0.9, 0.7)}
    assert per_forward[1.0] == 1.0
    assert per_forward[0.9] > 1.5
    assert per_forward[0.7] >= per_forward[0.9]


def test_verify_accepts_drafts_and_matches_ar(model, heldout):
    accepted = 0
    for ids in heldout:
        verified, _ = run(model, ids, mode="verify", block_size=4)
        assert verified.token_ids == run(model, ids, mode="ar")[0].token_ids
        accepted += verified.stats.drafts_accepted
    assert accepted > 0


def test_threshold_one_is_the_ar_greedy_output(model, heldout):
    for ids in heldout:
        assert run(model, ids, threshold=1.0)[0].token_ids == run(model, ids, block_size=1)[0].token_ids


def test_stop_string_inside_accepted_blocks_on_real_text(model, heldout):
    options = dict(mode="threshold", block_size=4, threshold=0.7)
    free, _ = run(model, heldout[0], **options)
    start = len(free.text) // 3
    stop = free.text[start:start + 7]  # several tokens, in the middle of multi-token blocks
    result, streamed = run(model, heldout[0], stop=[stop], **options)
    assert free.stats.tokens_per_forward > 1.5
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


def test_ar_counts_the_forward_that_made_the_end_of_sequence_token(model):
    result = model.generate([{"role": "user", "content": "Write 12 in words."}], mode="ar")
    assert result.stop_reason == "eos" and result.stats.decoded_tokens == result.stats.new_tokens + 1
    assert result.stats.tokens_per_forward == 1.0
