"""Decoding loops over the engine: MARS threshold block decoding (block size 1 is plain AR) and
lossless speculative verification of mask and lookup drafts.

Each forward feeds the tokens committed by the previous step (their KV is not cached yet)
followed by block_size - 1 mask tokens. Block token 0 comes from the last committed token's
logits (the exact AR prediction), token j from mask j-1. The last of the block_size masks of
the reference sampler is never fed: its output is unused and, under causal attention, it
cannot change the other rows.
"""
from collections.abc import Iterator

import numpy as np

from .drafting import MASK, DraftPilot, DraftStats, FixedDrafts
from .engine import Engine
from .grammar import Constraint
from .lookup import PromptLookup
from .pilot import BlockPilot, FixedBlock
from .sampling import Rows, Sampler, accepted_length, confidence

BlockPolicy = FixedBlock | BlockPilot
DraftPolicy = FixedDrafts | DraftPilot


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


def block_length(logits: Rows, tokens: np.ndarray, probs: Rows | None, sampler: Sampler,
                 threshold: float, metric: str, max_accept: int | None) -> int:
    """How many tokens of this block to accept (always at least token 0).

    A probability reaches 1.0 only by rounding, so threshold 1.0 accepts no mask token and is
    exactly greedy AR decoding.
    """
    if len(tokens) == 1 or (metric == "probability" and threshold >= 1.0):
        return 1
    draft_probs = probs[1:] if probs is not None else sampler.distributions(logits[1:])
    return accepted_length(confidence(draft_probs, tokens[1:], metric), threshold, metric, max_accept)


def decode_blocks(engine: Engine, pending: list[int], policy: BlockPolicy, mask_id: int | None, sampler: Sampler,
                  threshold: float = 1.0, metric: str = "probability", max_accept: int | None = None,
                  top_k: bool = False, constraint: Constraint | None = None) -> Iterator[list[int]]:
    """Yield the tokens each forward commits; ends when the context has no room for the next step.
    `top_k`: decide from the graph's top-k outputs instead of whole logit rows. `constraint`: token 0 comes
    from the grammar-masked row, and acceptance also ends at the first token the grammar forbids."""
    while (room := engine.max_context - len(engine.tokens) - len(pending)) >= 0:
        masks = [mask_id] * min(policy.choose(len(pending)), room)
        logits = engine.forward(pending + masks, 1 + len(masks), top_k)
        engine.rewind(len(engine.tokens) - len(masks))  # mask KV is dropped by a length update
        tokens, probs = sampler.sample(logits)
        if constraint is not None:
            tokens[0] = sampler.sample(constraint.mask(logits, 0))[0][0]
        length = block_length(logits, tokens, probs, sampler, threshold, metric, max_accept)
        if constraint is not None:
            length = max(1, constraint.valid_prefix(tokens[:length].tolist()))
            constraint.advance(tokens[:length].tolist())
        pending = tokens[:length].tolist()
        policy.observe(len(masks), len(pending) - 1)
        yield pending


def verify_drafts(logits: Rows, drafts: list[int], draft_probs: Rows | None, sampler: Sampler) -> tuple[int, int]:
    """Check drafts against the exact AR predictions (logits row i precedes draft i; the last row
    follows the last draft). Returns how many drafts stand and the token that comes after them.

    Greedy: a draft stands while it equals the argmax. Sampling: the speculative-sampling rule
    (accept with probability min(1, p/q), else draw from max(p - q, 0)), so the output follows
    the model's own distribution. Drafts without probabilities (lookup) were proposed with certainty:
    q is one-hot, so a draft stands with probability p and a rejection draws from p without it.
    """
    if sampler.greedy:
        targets = sampler.sample(logits)[0].tolist()
        accepted = next((i for i, token in enumerate(drafts) if token != targets[i]), len(drafts))
        return accepted, targets[accepted]
    target = sampler.distributions(logits)
    for i, token in enumerate(drafts):
        q = draft_probs.at(i, token) if draft_probs is not None else 1.0
        if sampler.rng.random() * q >= target.at(i, token):
            ids = target.row_ids(i)
            q = draft_probs.at(i, ids) if draft_probs is not None else ids == token
            return i, int(ids[sampler.draw(np.maximum(target.values[i] - q, 0.0))])
    return len(drafts), int(target.row_ids(-1)[sampler.draw(target.values[-1])])


def verify_under_grammar(logits: Rows, drafts: list[int], draft_probs: Rows | None, sampler: Sampler,
                         constraint: Constraint) -> tuple[int, int]:
    """verify_drafts with each AR row masked by the grammar's state after the drafts before it, so the output
    is constrained AR's. The constraint ends advanced past the committed tokens."""
    for i, draft in enumerate(drafts):
        target = sampler.distributions(constraint.mask(logits, i)).values[0]
        if sampler.greedy:
            stands, token = draft == int(target.argmax()), int(target.argmax())
        else:
            q = draft_probs.at(i, draft) if draft_probs is not None else 1.0
            stands = sampler.rng.random() * q < target[draft]
            if not stands:
                ids = np.arange(len(target))
                token = int(sampler.draw(np.maximum(target - (draft_probs.at(i, ids) if draft_probs is not None
                                                              else ids == draft), 0.0)))
        if not stands:
            constraint.advance([token])
            return i, token
        constraint.advance([draft])
    target = sampler.distributions(constraint.mask(logits, len(drafts))).values[0]
    token = int(target.argmax()) if sampler.greedy else int(sampler.draw(target))
    constraint.advance([token])
    return len(drafts), token


def decode_verified(engine: Engine, pending: list[int], policy: DraftPolicy, mask_id: int | None, sampler: Sampler,
                    stats: DraftStats, lookup: PromptLookup | None = None,
                    top_k: bool = False, constraint: Constraint | None = None) -> Iterator[list[int]]:
    """Lossless speculative decoding: each forward feeds [pending | drafts | masks], keeps the drafts the
    model's own AR rows confirm plus one AR token, and takes the mask outputs as the next mask drafts
    (only when every draft stood: otherwise they were conditioned on a rejected one). `lookup` indexes
    the text so far for lookup drafts; it is kept up to date here."""
    mask_drafts, mask_probs = [], None
    while (room := engine.max_context - len(engine.tokens) - len(pending)) >= 0:
        plan = policy.plan(len(pending), room, mask_drafts, lookup)
        drafts = plan.drafts
        cached = len(engine.tokens)
        logits = engine.forward(pending + drafts + [mask_id] * plan.masks, 1 + len(drafts) + plan.masks, top_k)
        probs = mask_probs[:len(drafts)] if plan.source == MASK and mask_probs is not None else None
        if constraint is None:
            accepted, token = verify_drafts(logits[:1 + len(drafts)], drafts, probs, sampler)
        else:
            accepted, token = verify_under_grammar(logits[:1 + len(drafts)], drafts, probs, sampler, constraint)
        stats.record(len(drafts), accepted, plan.source)
        engine.rewind(cached + len(pending) + accepted)  # rejected drafts and masks: a length update
        committed = drafts[:accepted] + [token]
        policy.observe(plan, committed)
        if accepted == len(drafts) and plan.masks:
            mask_drafts, mask_probs = sampler.sample(logits[1 + len(drafts):])
            mask_drafts = mask_drafts.tolist()
        else:
            mask_drafts, mask_probs = [], None
        if lookup is not None:
            lookup.extend(committed)
        pending = [token]
        yield committed
