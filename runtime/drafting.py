"""What the lossless verifier feeds each step: which drafts to check, and how many masks to append.

Drafts come from two sources. On a MARS model, the masks appended in one step predict the tokens
after it: the next step's "mask" drafts (usable only when every draft of that step stood). On any
model, "lookup" drafts continue an earlier occurrence of the current suffix (runtime/lookup.py).
Each forward checks the drafts of one source and appends masks for the next step, so both sources
can serve in one forward.
"""
from dataclasses import dataclass, field

import numpy as np

from .lookup import PromptLookup
from .pilot import EMA_WEIGHT, PRIOR_ACCEPTANCE, PROBE_EVERY, CostCurve, ema_update

MASK, LOOKUP = "mask", "lookup"
SOURCES = ("auto", MASK, LOOKUP)  # the `drafts` option: auto is every source the model has
LOOKUP_MAX = 16  # most lookup drafts one step checks under "auto"
NEGLIGIBLE = 0.02  # drafts less likely than this to be reached are never worth their cost


@dataclass
class Plan:
    source: str | None  # where the drafts come from (None: no drafts)
    drafts: list[int]
    masks: int  # masks appended after the drafts
    kind: tuple = ()  # the acceptance table the drafts belong to: (source, lookup match length or 0)


class FixedDrafts:
    """A constant block: block_size - 1 masks every step, and up to block_size - 1 drafts (the last step's
    mask predictions when it left some, else lookup)."""

    def __init__(self, block_size: int, masks: bool, lookup: bool):
        self.size, self.masks, self.lookup = block_size - 1, masks, lookup

    def plan(self, fed: int, room: int, mask_drafts: list[int], lookup: PromptLookup | None) -> Plan:
        limit = min(self.size, room)
        if mask_drafts:
            source, drafts = MASK, mask_drafts[:limit]
        elif self.lookup:
            drafts = lookup.propose(limit)[0]
            source = LOOKUP if drafts else None
        else:
            source, drafts = None, []
        return Plan(source, drafts, min(self.size, room - len(drafts)) if self.masks else 0)

    def observe(self, plan: Plan, committed: list[int]) -> None:
        pass


class DraftPilot:
    """Chooses drafts and masks each step for the most expected committed tokens per second, from the cost
    curve and running acceptance per source (lookup acceptance is kept per match length: longer matches
    are surer). Kept per model, so each generation starts from what earlier ones learned. Plain Python
    over short lists: a step of a small model takes well under a millisecond, and NumPy's per-call cost on
    arrays this small would be a tenth of it."""

    def __init__(self, curve: CostCurve, max_masks: int, lookup_max: int):
        self.max_masks, self.lookup_max = max_masks, lookup_max
        self.curve = curve
        self.cost = curve(np.arange(2 + max_masks + max(max_masks, lookup_max) + 1)).tolist()
        self.acceptance: dict[tuple, list[float]] = {}
        self.idle: dict[tuple, int] = {}  # steps a source (or the masks) was on offer but not used
        self.offers: list[Plan] = []  # this step's drafts on offer, checked against what it commits
        self.lookup_hits = 0.0  # running share of steps with lookup drafts on offer ...
        self.lookup_gain = 0.0  # ... and how many of them are expected to stand then

    def table(self, kind: tuple) -> list[float]:
        if kind not in self.acceptance:
            self.acceptance[kind] = [PRIOR_ACCEPTANCE] * max(self.max_masks, self.lookup_max)
        return self.acceptance[kind]

    def plan(self, fed: int, room: int, mask_drafts: list[int], lookup: PromptLookup | None) -> Plan:
        offers = []
        if mask_drafts:
            offers.append(Plan(MASK, mask_drafts[:room], 0, (MASK, 0)))
        if lookup is not None:
            drafts, match = lookup.propose(min(self.lookup_max, room))
            if drafts:
                offers.append(Plan(LOOKUP, drafts, 0, (LOOKUP, match)))
            self.lookup_hits += EMA_WEIGHT * (bool(drafts) - self.lookup_hits)
        self.offers = offers
        masks = min(self.max_masks, room)
        gain = self.mask_gain(masks)
        best, best_rate = Plan(None, [], 0), -1.0
        for offer in [best] + offers:
            k, m, rate, expected = self.best_counts(offer, fed, gain[:room - len(offer.drafts) + 1])
            if offer.source == LOOKUP:
                self.lookup_gain += EMA_WEIGHT * (expected - self.lookup_gain)
            if offer.kind and k == 0 and self.probe(offer.kind):
                k, rate = 1, float("inf")
            if rate > best_rate:
                best, best_rate = Plan(offer.source if k else None, offer.drafts[:k], m, offer.kind if k else ()), rate
        if masks and best.masks == 0 and self.probe((MASK, "masks")):
            best.masks = 1
        return best

    def mask_gain(self, masks: int) -> list[float]:
        """Expected mask drafts to stand next step beyond what lookup drafts would bring then, per number of
        masks appended now (0 .. masks): where lookup keeps finding good drafts, masks add little."""
        gain, reach = [0.0], 1.0
        for acceptance in self.table((MASK, 0))[:masks]:
            reach *= acceptance
            if reach < NEGLIGIBLE:
                break
            gain.append(gain[-1] + reach)
        hits, rival = self.lookup_hits, self.lookup_gain
        return [(1 - hits) * g + hits * max(0.0, g - rival) for g in gain]

    def best_counts(self, offer: Plan, fed: int, gain: list[float]) -> tuple[int, int, float, float]:
        """(drafts, masks, expected tokens per second, expected drafts to stand) of the best use of an offer.
        A mask is worth what it is expected to add as a draft next step, which happens only if every draft
        now stands; it costs a token now and one then."""
        cost, table = self.cost, self.table(offer.kind) if offer.kind else []
        best = (0, 0, 0.0, 0.0)
        tokens, all_stand = 1.0, 1.0
        for k in range(len(offer.drafts) + 1):
            if k:
                all_stand *= table[k - 1]
                if all_stand < NEGLIGIBLE:
                    break
                tokens += all_stand
            for m, extra in enumerate(gain):
                fed_now = fed + k + m
                now = cost[fed_now] if fed_now < len(cost) else float(self.curve(fed_now))
                rate = (tokens + all_stand * extra) / (now + all_stand * (cost[1 + m] - cost[1]))
                if rate > best[2]:
                    best = (k, m, rate, tokens - 1.0)
        return best

    def probe(self, key: tuple) -> bool:
        """True once a source (or appending masks) has been passed over PROBE_EVERY times in a row, so that
        an estimate that fell can recover."""
        self.idle[key] = self.idle.get(key, 0) + 1
        if self.idle[key] > PROBE_EVERY:
            self.idle[key] = 0
            return True
        return False

    def observe(self, plan: Plan, committed: list[int]) -> None:
        """Learn from every offer, used or not: what the step committed is the true continuation (greedy) or
        a draw from it (sampling), so each offer's agreement with it is that source's acceptance."""
        for offer in self.offers:
            agree = next((i for i, (a, b) in enumerate(zip(offer.drafts, committed)) if a != b),
                         min(len(offer.drafts), len(committed)))
            ema_update(self.table(offer.kind), len(offer.drafts), agree, checked=len(committed))
        if plan.kind:
            self.idle[plan.kind] = 0
        if plan.masks:
            self.idle[(MASK, "masks")] = 0


@dataclass
class DraftStats:
    """Drafts checked and confirmed, per source and per position in the draft."""
    proposed: int = 0
    accepted: int = 0
    by_position: list = field(default_factory=list)  # [proposed, accepted] for draft 1, 2, ...
    by_source: dict = field(default_factory=dict)  # source -> [proposed, accepted]

    def record(self, proposed: int, accepted: int, source: str) -> None:
        if not proposed:
            return
        self.proposed += proposed
        self.accepted += accepted
        totals = self.by_source.setdefault(source, [0, 0])
        totals[0] += proposed
        totals[1] += accepted
        self.by_position += [[0, 0] for _ in range(proposed - len(self.by_position))]
        for position in range(proposed):
            self.by_position[position][0] += 1
            self.by_position[position][1] += position < accepted
