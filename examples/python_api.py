"""The Python API on an exported model directory: generate, stream, chat.

    edgegen export path/to/MARS-Qwen2.5-0.5B-blk4 models/mars-0.5b
    python examples/python_api.py models/mars-0.5b
"""
import sys

import edgegen

model = edgegen.load(sys.argv[1], provider="auto")

# one call: lossless by default (mask and lookup drafts checked by the model: exactly the greedy AR text)
result = model.generate("Write a haiku about the sea.", max_new_tokens=64)
print(result.text)
print(f"{result.stats.tokens_per_forward:.2f} tokens/forward, {result.stats.decode_tokens_per_s:.1f} tokens/s, "
      f"drafts {result.stats.drafts_by_source}")

# MARS threshold mode: keeps confident mask predictions unchecked; faster, but the text may drift from AR
print(model.generate("Write a haiku about the sea.", max_new_tokens=64, threshold=0.9).text)

# streaming: pieces never split a UTF-8 character, and stop strings never appear
for piece in model.stream("List three colours:\n1.", max_new_tokens=40, stop=["\n4."]):
    print(piece, end="", flush=True)
print()

# multi-turn chat: each turn reuses the KV cache of the conversation so far
chat = model.chat(system="You are a concise assistant.", max_new_tokens=64)
print(chat.send("What is the capital of France?").text)
reply = chat.send("And of Italy?")
print(reply.text, f"(reused {reply.stats.cached_prompt_tokens} of {reply.stats.prompt_tokens} prompt tokens)")
