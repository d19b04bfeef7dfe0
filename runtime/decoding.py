"""MARS block decoding over the engine; block size 1 is plain autoregressive decoding.

Each forward feeds the tokens committed by the previous step (their KV is not cached yet)
followed by block_size - 1 mask tokens. Block token 0 comes from the last committed token's
logits (the exact AR prediction), token j from mask j-1. The last of the block_size masks of
the reference sampler is never fed: its output is unused and, under causal attention, it
cannot change the other rows.
"""
from collections.abc import Iterator

import numpy as np

from .engine import Engine
from .sampling import Sampler, accepted_length, confidence


def reuse_cached_prefix(engine: Engine, prompt_ids: list[int]) -> list[int]:
    """Keep the cached KV of the longest prefix shared with the prompt; return the tokens still to feed.

    At least the last prompt token is always fed again, since its logits start the answer.
    """
    shared = 0
    for cached, new in zip(engine.tokens, prompt_ids[:-1]):
        if cached != new:
            break
        shared += 1
    engine.rewind(shared)
    return prompt_ids[shared:]


def block_length(logits: np.ndarray, tokens: np.ndarray, probs: np.ndarray | None, sampler: Sampler,
                 threshold: float, metric: str, max_accept: int | None) -> int:
    """How many tokens of this block to accept (always at least token 0).

    A probability reaches 1.0 only by rounding, so threshold 1.0 accepts no mask token and is
    exactly greedy AR decoding.
    """
    if len(tokens) == 1 or (metric == "probability" and threshold >= 1.0):
        return 1
    draft_probs = probs[1:] if probs is not None else sampler.distributions(logits[1:])
    return accepted_length(confidence(draft_probs, tokens[1:], metric), threshold, metric, max_accept)


def decode_blocks(engine: Engine, pending: list[int], block_size: int, mask_id: int | None, sampler: Sampler,
                  threshold: float = 1.0, metric: str = "probability",
                  max_accept: int | None = None) -> Iterator[list[int]]:
    """Yield the tokens each forward commits; ends when the context has no room for the next step."""
    while (room := engine.max_context - len(engine.tokens) - len(pending)) >= 0:
        masks = [mask_id] * min(block_size - 1, room)
        logits = engine.forward(pending + masks, logits_to_keep=1 + len(masks))
        engine.rewind(len(engine.tokens) - len(masks))  # mask KV is dropped by a length update
        tokens, probs = sampler.sample(logits)
        pending = tokens[:block_length(logits, tokens, probs, sampler, threshold, metric, max_accept)].tolist()
        yield pending
