"""Choosing tokens from logit rows, and how confident each choice is."""
from dataclasses import dataclass

import numpy as np

ACCEPTANCE_METRICS = ("probability", "entropy", "margin")


@dataclass
class Sampler:
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    seed: int | None = None

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def distributions(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities per row after temperature, top-k and top-p; plain softmax when greedy."""
        if self.greedy:
            return softmax(logits)
        logits = logits.astype(np.float64) / self.temperature
        if 0 < self.top_k < logits.shape[-1]:
            kth = np.partition(logits, -self.top_k, axis=-1)[:, -self.top_k, None]
            logits = np.where(logits < kth, -np.inf, logits)
        probs = softmax(logits)
        return nucleus(probs, self.top_p) if self.top_p < 1.0 else probs

    def sample(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The token chosen from each row, and the distributions drawn from (None when greedy: not needed)."""
        if self.greedy:
            return logits.argmax(axis=-1), None
        probs = self.distributions(logits)
        return self.draw(probs), probs

    def draw(self, probs: np.ndarray) -> np.ndarray:
        """One token per row of (possibly unnormalized) probabilities."""
        cumulative = probs.cumsum(axis=-1)
        draws = self.rng.random(probs.shape[:-1] + (1,)) * cumulative[..., -1:]
        return (cumulative < draws).sum(axis=-1).clip(max=probs.shape[-1] - 1)


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def nucleus(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Keep the smallest set of most likely tokens whose mass reaches top_p (at least one), renormalized."""
    order = np.argsort(-probs, axis=-1)
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    keep_sorted = (sorted_probs.cumsum(axis=-1) - sorted_probs) < top_p
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    kept = np.where(keep, probs, 0.0)
    return kept / kept.sum(axis=-1, keepdims=True)


def confidence(probs: np.ndarray, tokens: np.ndarray, metric: str) -> np.ndarray:
    """Per-row confidence in the chosen token: its probability, the row's entropy (lower is surer),
    or the margin between the two most likely tokens."""
    if metric == "probability":
        return np.take_along_axis(probs, tokens[:, None], axis=-1)[:, 0]
    if metric == "entropy":
        return -(probs * np.log(np.where(probs > 0, probs, 1.0))).sum(axis=-1)
    top2 = -np.partition(-probs, 1, axis=-1)[:, :2]
    return top2[:, 0] - top2[:, 1]


def accepted_length(draft_confidences: np.ndarray, threshold: float, metric: str, max_accept: int | None) -> int:
    """Length of the left prefix of a block to keep: token 0 always (it is the exact AR prediction),
    then the mask-predicted tokens while each one's confidence passes the threshold."""
    passes = draft_confidences <= threshold if metric == "entropy" else draft_confidences >= threshold
    failed = np.flatnonzero(~passes)
    length = 1 + int(failed[0] if failed.size else len(passes))
    return min(length, max_accept) if max_accept else length
