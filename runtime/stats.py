"""What a generation measured: counts, and the time of the prefill apart from the decode steps after it."""
import time
from dataclasses import dataclass, field

from .drafting import DraftStats
from .engine import Engine


@dataclass
class Stats:
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens whose KV was reused from an earlier call
    new_tokens: int = 0
    forwards: int = 0
    decoded_tokens: int = 0  # new tokens plus the end-of-sequence token when one ended the answer: all forwards made
    tokens_per_forward: float = 0.0  # decoded tokens per forward (AR: exactly 1)
    prefill_ms: float = 0.0  # the first forward, which processes the prompt
    ttft_ms: float = 0.0  # from the call until the first token is known
    decode_tokens: int = 0  # tokens after the first forward
    decode_tokens_per_s: float = 0.0  # those tokens over the time after the first forward
    total_ms: float = 0.0
    mode: str = ""
    drafts_proposed: int = 0  # verify mode: drafts checked against the model's own AR rows
    drafts_accepted: int = 0
    draft_acceptance_by_position: list = field(default_factory=list)  # accepted share of draft 1, 2, ...
    drafts_by_source: dict = field(default_factory=dict)  # "mask"/"lookup" -> {"proposed", "accepted"}
    forward_ms: float = 0.0  # time inside onnxruntime
    loop_overhead_ms: float = 0.0  # time in the NumPy/Python loop after the first forward, outside onnxruntime
    step_ms: list = field(default_factory=list)  # wall time of each decode step after the first forward



class StatsRecorder:
    """Clocks a generation as its forwards' tokens arrive; `finish` fills in everything derived."""

    def __init__(self, engine: Engine, prompt_tokens: int, mode: str):
        self.engine, self.stats = engine, Stats(prompt_tokens=prompt_tokens, mode=mode)
        self.start = self.step_start = self.first_block_at = time.perf_counter()
        self.forward_start = engine.forward_seconds
        self.first_block_tokens = 0  # tokens committed by the first forward (the prefill)

    def forward_done(self) -> None:
        """A forward's tokens are known."""
        stats, now = self.stats, time.perf_counter()
        stats.forwards += 1
        if stats.forwards == 1:
            self.first_block_at = now
            stats.ttft_ms = (now - self.start) * 1000
            stats.prefill_ms = (self.engine.forward_seconds - self.forward_start) * 1000
        else:
            stats.step_ms.append((now - self.step_start) * 1000)
        self.step_start = now

    def finish(self, new_tokens: int, ended_on_eos: bool, drafts: DraftStats) -> Stats:
        stats, end = self.stats, time.perf_counter()
        stats.new_tokens = new_tokens
        stats.decoded_tokens = new_tokens + ended_on_eos
        stats.tokens_per_forward = stats.decoded_tokens / max(stats.forwards, 1)
        stats.total_ms = (end - self.start) * 1000
        stats.forward_ms = (self.engine.forward_seconds - self.forward_start) * 1000
        decode_ms = (end - self.first_block_at) * 1000
        stats.loop_overhead_ms = decode_ms - (stats.forward_ms - stats.prefill_ms)
        stats.drafts_proposed, stats.drafts_accepted = drafts.proposed, drafts.accepted
        stats.draft_acceptance_by_position = [accepted / proposed for proposed, accepted in drafts.by_position]
        stats.drafts_by_source = {source: {"proposed": proposed, "accepted": accepted}
                                  for source, (proposed, accepted) in drafts.by_source.items()}
        stats.decode_tokens = new_tokens - self.first_block_tokens
        if stats.forwards > 1:
            stats.decode_tokens_per_s = stats.decode_tokens / (decode_ms / 1000)
        return stats
