"""Prompt-lookup drafts: text often repeats itself (names, code, quoted input), so the tokens that followed
an earlier occurrence of the current suffix are a free guess at what comes next (llama.cpp's lookup
decoding, onnxruntime-genai's n-gram speculation). The model verifies every guess, so output is unchanged.
"""
from .engine import Latent

MAX_NGRAM = 4  # longest suffix matched; matching up to 8 gave the same tokens per forward on held-out prompts


class PromptLookup:
    """An index of every n-gram (n = 1..MAX_NGRAM) of the prompt and the text so far, to where its most
    recent occurrence was followed; proposing a draft is at most MAX_NGRAM dictionary lookups."""

    def __init__(self, tokens: list):
        self.tokens: list = []
        self.tail: tuple = ()  # the last MAX_NGRAM tokens
        self.follows: list[dict] = [{} for _ in range(MAX_NGRAM + 1)]  # [n]: n-gram -> index of the next token
        self.extend(tokens)

    def extend(self, tokens: list) -> None:
        """Append committed tokens. An n-gram is indexed once a token follows it, so the current suffix
        never matches itself."""
        follows, tail = self.follows, self.tail
        for token in tokens:
            end = len(self.tokens)
            for n in range(1, len(tail) + 1):
                follows[n][tail[-n:]] = end
            self.tokens.append(token)
            tail = (tail + (token,))[-MAX_NGRAM:]
        self.tail = tail

    def propose(self, limit: int) -> tuple[list[int], int]:
        """Up to `limit` tokens continuing the longest suffix that occurred before, and that suffix's length
        (0: no match). Copying may run into the draft itself, so a repeating pattern continues past the end."""
        tokens, end = self.tokens, len(self.tokens)
        for n in range(len(self.tail), 0, -1):
            start = self.follows[n].get(self.tail[-n:])
            if start is not None:
                break
        else:
            return [], 0
        drafts = []
        for i in range(start, start + limit):
            token = tokens[i] if i < end else drafts[i - end]
            if isinstance(token, Latent):  # a latent-memory vector has no token id to draft
                break
            drafts.append(token)
        return drafts, n
