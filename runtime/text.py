"""Turning generated token ids into streamed text: whole UTF-8 characters only, stop strings cut out."""
from .tokenizer import Tokenizer

INCOMPLETE = "\ufffd"  # what the decoder shows for a UTF-8 sequence that is still missing bytes


class IncrementalDecoder:
    """Decodes a growing list of ids, returning only the newly completed text each time.

    Decoding a short window (from `prefix` on) instead of everything keeps each step O(1); the
    window is decoded with its preceding token so that tokenizers which drop a leading space
    at the start of a sequence still produce the right text.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = self.read = 0

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        seen, text = self._window()
        if text.endswith(INCOMPLETE) or len(text) <= len(seen):
            return ""
        return self._advance(seen, text)

    def flush(self) -> str:
        """Whatever is left at the end, even bytes that never completed a character."""
        return self._advance(*self._window())

    def _window(self) -> tuple[str, str]:
        return self.tokenizer.decode(self.ids[self.prefix:self.read]), self.tokenizer.decode(self.ids[self.prefix:])

    def _advance(self, seen: str, text: str) -> str:
        self.prefix, self.read = self.read, len(self.ids)
        return text[len(seen):]


class StopFilter:
    """Holds back text that could still become a stop string; cuts everything from the first one on."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.stopped = False

    def push(self, text: str) -> str:
        """Text that is now safe to show."""
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
