"""The Python API: generate, stream, chat; on an exported model directory, or the bundled model.

    python examples/python_api.py                        # the bundled demonstration model
    edgegen export path/to/MARS-Qwen2.5-0.5B-blk4 models/mars-0.5b
    python examples/python_api.py models/mars-0.5b
"""
import sys

import edgegen

model = edgegen.load(sys.argv[1] if len(sys.argv) > 1 else None, provider="auto")
bundled = len(sys.argv) == 1  # it writes numbers in words; other prompts give it little to say
haiku = "Write 31415 in words." if bundled else "Write a haiku about the sea."
as_chat = [{"role": "user", "content": haiku}]

# one call: lossless by default (mask and lookup drafts checked by the model: exactly the greedy AR text)
result = model.generate(as_chat, max_new_tokens=64)
print(result.text)
print(f"{result.stats.tokens_per_forward:.2f} tokens/forward, {result.stats.decode_tokens_per_s:.1f} tokens/s, "
      f"drafts {result.stats.drafts_by_source}")

# MARS threshold mode: keeps confident mask predictions unchecked; faster, but the text may drift from AR
print(model.generate(as_chat, max_new_tokens=64, threshold=0.9).text)

# streaming: pieces never split a UTF-8 character, and stop strings never appear
for piece in model.stream([{"role": "user", "content": "Write 4821 in words."}] if bundled else
                          "List three colours:\n1.", max_new_tokens=40, stop=["\n4."]):
    print(piece, end="", flush=True)
print()

# multi-turn chat: each turn reuses the KV cache of the conversation so far
chat = model.chat(system=None if bundled else "You are a concise assistant.", max_new_tokens=64)
print(chat.send("Write 566 in words." if bundled else "What is the capital of France?").text)
reply = chat.send("Write 777 in words." if bundled else "And of Italy?")
print(reply.text, f"(reused {reply.stats.cached_prompt_tokens} of {reply.stats.prompt_tokens} prompt tokens)")
