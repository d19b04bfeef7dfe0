"""The prompt cache: a later process loads a prompt prefix's KV from disk instead of prefilling it."""
import json
import subprocess
import sys

import numpy as np

import edgegen
from edgegen.runtime.prompt_cache import INDEX

SYSTEM = "You are a careful assistant who writes numbers in words. " * 6
RUN = """
import json, sys
import edgegen
model = edgegen.load(prompt_cache=sys.argv[1])
messages = [{"role": "system", "content": sys.argv[2]}, {"role": "user", "content": sys.argv[3]}]
result = model.generate(messages, max_new_tokens=12)
print(json.dumps({"text": result.text, "cached": result.stats.cached_prompt_tokens,
                  "prompt": result.stats.prompt_tokens}))
"""


def run(cache, question: str) -> dict:
    out = subprocess.run([sys.executable, "-c", RUN, str(cache), SYSTEM, question], capture_output=True, text=True,
                         check=True, timeout=120)
    return json.loads(out.stdout)


def test_a_later_process_reuses_the_saved_prefix_and_answers_the_same(tmp_path):
    first = run(tmp_path, "Write 4821 in words.")
    assert first["cached"] == 0 and (tmp_path / INDEX).is_file()
    again = run(tmp_path, "Write 4821 in words.")
    assert again == {**first, "cached": first["prompt"] - 1}  # all but the last token, which starts the answer
    other = run(tmp_path, "Write 566 in words.")  # shares the system prompt: that much comes from disk
    fresh = edgegen.load().generate([{"role": "system", "content": SYSTEM},
                                     {"role": "user", "content": "Write 566 in words."}], max_new_tokens=12)
    assert other["text"] == fresh.text and 40 < other["cached"] < other["prompt"] - 1


def test_damaged_entries_are_ignored_and_the_size_is_bounded(tmp_path):
    run(tmp_path, "Write 4821 in words.")
    for entry in tmp_path.glob("*.npy"):
        entry.write_bytes(b"not an array")
    assert run(tmp_path, "Write 4821 in words.")["cached"] == 0  # ignored, then saved again
    (tmp_path / INDEX).write_text("[")
    assert run(tmp_path, "Write 4821 in words.")["cached"] == 0
    model = edgegen.load(prompt_cache=tmp_path)
    model.prompt_cache.max_bytes = 1
    model.generate([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Write 7 in words."}],
                   max_new_tokens=4)
    assert len(list(tmp_path.glob("*.npy"))) <= 1 and isinstance(json.loads((tmp_path / INDEX).read_text()), dict)


def test_kv_read_back_is_what_the_engine_holds():
    engine = edgegen.load(max_context=128).engine
    engine.forward(list(range(5, 25)), 1)
    kv = engine.read_kv(20)
    engine.rewind(0)
    engine.write_kv(list(range(5, 25)), kv)
    np.testing.assert_array_equal(engine.read_kv(20), kv)
    assert engine.tokens == list(range(5, 25))


def test_chat_resumes_a_saved_conversation_with_its_prefix_from_the_cache(tmp_path):
    def chat(stdin: str, *args) -> str:
        return subprocess.run([sys.executable, "-m", "edgegen", "chat", "--prompt-cache", str(tmp_path / "cache"),
                               "--max-new-tokens", "8", *args], input=stdin, capture_output=True, text=True,
                              check=True, timeout=120).stderr

    saved = tmp_path / "conversation.json"
    chat(f"Write 12 in words.\n/save {saved}\n/quit\n", "--system", SYSTEM)
    messages = json.loads(saved.read_text())
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    resumed = chat("Write 7 in words.\n/stats\n/quit\n", "--resume", str(saved))
    assert "[resumed 3 messages" in resumed
    cached = int(next(line.split()[1] for line in resumed.splitlines() if "cached_prompt_tokens" in line))
    assert cached > 40
    (tmp_path / "bad.json").write_text('{"role": "user"}')
    bad = subprocess.run([sys.executable, "-m", "edgegen", "chat", "--resume", str(tmp_path / "bad.json")],
                         input="/quit\n", capture_output=True, text=True, check=False, timeout=60)
    assert bad.returncode == 1 and "is not a conversation saved by /save" in bad.stderr
