"""Choosing tokens from logit rows, and how confident each choice is."""
from dataclasses import dataclass

import numpy as np

ACCEPTANCE_METRICS = ("probability", "entropy", "margin")


@dataclass
class Rows:
    """A step's scores per kept position: logits over the whole vocabulary (ids None), or over the k most
    likely tokens from a graph's top-k outputs (ids [rows, k]; logsumexp [rows] of each whole row, which
    makes their probabilities exact). Candidates are sorted by token id, so argmax ties and inverse-CDF
    draws fall as they do on a whole row."""
    values: np.ndarray
    ids: np.ndarray | None = None
    logsumexp: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, rows: slice) -> "Rows":
        if self.ids is None:
            return Rows(self.values[rows])
        return Rows(self.values[rows], self.ids[rows], None if self.logsumexp is None else self.logsumexp[rows])

    def with_values(self, values: np.ndarray) -> "Rows":
        return Rows(values, self.ids)

    def row_ids(self, row: int) -> np.ndarray:
        """The vocabulary id of each column of one row."""
        return np.arange(self.values.shape[-1]) if self.ids is None else self.ids[row]

    def tokens(self, columns: np.ndarray) -> np.ndarray:
        """The vocabulary id of one column per row."""
        return columns if self.ids is None else np.take_along_axis(self.ids, columns[:, None], -1)[:, 0]

    def chosen(self, tokens: np.ndarray) -> np.ndarray:
        """Each row's value at its own token, a candidate of that row."""
        columns = tokens if self.ids is None else (self.ids == tokens[:, None]).argmax(-1)
        return np.take_along_axis(self.values, columns[:, None], -1)[:, 0]

    def at(self, row: int, tokens: np.ndarray) -> np.ndarray:
        """One row's values at vocabulary ids; 0 where a token is not a candidate (zero probability)."""
        if self.ids is None:
            return self.values[row, tokens]
        match = self.ids[row] == np.asarray(tokens)[..., None]
        return np.where(match.any(-1), self.values[row, match.argmax(-1)], 0.0)


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

    def fits(self, candidates: int) -> bool:
        """Whether every token this sampler can choose is among a row's `candidates` most likely ones."""
        return self.greedy or 0 < self.top_k <= candidates

    def distributions(self, rows: Rows) -> Rows:
        """Probabilities per row after temperature, top-k and top-p; plain softmax when greedy (over
        candidates, normalized by the whole row's log-sum-exp)."""
        if self.greedy:
            whole = rows.ids is None
            return rows.with_values(softmax(rows.values) if whole else np.exp(rows.values - rows.logsumexp[:, None]))
        logits = rows.values.astype(np.float64) / self.temperature
        if 0 < self.top_k < logits.shape[-1]:
            kth = np.partition(logits, -self.top_k, axis=-1)[:, -self.top_k, None]
            logits = np.where(logits < kth, -np.inf, logits)
        probs = softmax(logits)
        return rows.with_values(nucleus(probs, self.top_p) if self.top_p < 1.0 else probs)

    def sample(self, rows: Rows) -> tuple[np.ndarray, Rows | None]:
        """The token chosen from each row, and the distributions drawn from (None when greedy: not needed)."""
        if self.greedy:
            return rows.tokens(rows.values.argmax(axis=-1)), None
        probs = self.distributions(rows)
        return rows.tokens(self.draw(probs.values)), probs

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


def confidence(rows: Rows, tokens: np.ndarray, metric: str) -> np.ndarray:
    """Per-row confidence in the chosen token: its probability, the row's entropy (lower is surer; it needs
    whole rows), or the margin between the two most likely tokens."""
    if metric == "probability":
        return rows.chosen(tokens)
    probs = rows.values
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
