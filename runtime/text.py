"""Turning generated token ids into streamed text: whole UTF-8 characters only, stop strings cut out."""
from tokenizers.decoders import DecodeStream

from .tokenizer import Tokenizer

INCOMPLETE = "\ufffd"  # what decoding shows for a UTF-8 sequence that is still missing bytes


class IncrementalDecoder:
    """Decodes a growing list of ids, returning only the newly completed text each time (tokenizers'
    DecodeStream: it holds back bytes of an unfinished UTF-8 character and keeps the spaces that decoding
    a token alone would drop)."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.stream = DecodeStream(skip_special_tokens=True)
        self.unread: list[int] = []  # ids whose text the stream still holds back

    def push(self, token_id: int) -> str:
        self.unread.append(token_id)
        piece = self.stream.step(self.tokenizer.fast, token_id)
        if piece is None:
            return ""
        self.unread.clear()
        return piece

    def flush(self) -> str:
        """Whatever is left at the end, even bytes that never completed a character."""
        rest, self.unread = self.tokenizer.decode(self.unread) if self.unread else "", []
        return rest


class StopFilter:
    """Holds back text that could still become a stop string; cuts everything from the first one on."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.stopped = False

    def push(self, text: str) -> str:
        """Text that is now safe to show."""
        if not self.stops:
            return text
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            safe, self.pending = self.pending[:min(hits)], ""
            return safe
        hold = max((k for s in self.stops for k in range(1, len(s)) if self.pending.endswith(s[:k])), default=0)
        safe, self.pending = self.pending[:len(self.pending) - hold], self.pending[len(self.pending) - hold:]
        return safe

    def flush(self) -> str:
        """At the end of generation, the held-back text was not a stop string after all."""
        rest, self.pending = self.pending, ""
        return rest
