"""Adaptive block size: how many masks to append each step, from measured costs and running acceptance.
(Verify mode's choice of drafts and masks builds on these pieces: runtime/drafting.py.)

The engine's cost curve (forward latency for S new tokens) is measured once per model, provider
and thread count and cached on disk. Acceptance is tracked per block position as an exponential
moving average of P(position j accepted | positions before it accepted). Each step picks the mask
count that maximizes expected committed tokens per second.
"""
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from .cache import cache_dir
from .engine import Engine

CURVE_SIZES = (1, 2, 4, 8, 16, 32)
CURVE_PAST = 512  # cache length the curve is measured over: extra tokens cost more over a longer cache, and
# a curve taken over 128 tokens priced them half as dear as decoding of the held-out prompts found them
CURVE_VERSION = 2  # how curves are measured; cached and recorded curves of another version are measured anew
EMA_WEIGHT = 0.1
PRIOR_ACCEPTANCE = 0.5
PROBE_EVERY = 16  # steps at zero masks between probes, so an estimate that fell can recover


class CostCurve:
    """Forward latency in seconds for S new tokens (a number or an array), interpolated between measured sizes."""

    def __init__(self, sizes: list[int], seconds: list[float]):
        self.sizes, self.seconds = list(sizes), list(seconds)

    def __call__(self, new_tokens):
        """Beyond the largest size (a prefill), the last segment's slope carries on: a forward's cost grows
        with its tokens there, and a flat guess would make extra drafts look free."""
        slope = (self.seconds[-1] - self.seconds[-2]) / (self.sizes[-1] - self.sizes[-2]) if len(self.sizes) > 1 else 0
        beyond = np.maximum(np.asarray(new_tokens) - self.sizes[-1], 0) * slope
        return np.interp(new_tokens, self.sizes, self.seconds) + beyond

    @classmethod
    def measure(cls, engine: Engine, past: int = CURVE_PAST, repeats: int = 5) -> "CostCurve":
        """Median latency of forwards over a `past`-token cache, the sizes taken in turn so that a machine's
        drift touches them alike; the cache is left empty afterwards. A forward of more tokens never costs
        less than one of fewer, so a noisy dip is flattened out."""
        past = min(past, engine.max_context // 2)
        sizes = [s for s in CURVE_SIZES if past + s <= engine.max_context]
        runs = {size: [] for size in sizes}
        engine.rewind(0)
        engine.forward([1] * past, 1)
        for round_ in range(repeats + 1):  # the first round warms up every shape
            for size in sizes:
                start = time.perf_counter()
                engine.forward([1] * size, size)
                if round_:
                    runs[size].append(time.perf_counter() - start)
                engine.rewind(past)
        engine.rewind(0)
        return cls(sizes, np.maximum.accumulate([statistics.median(runs[size]) for size in sizes]).tolist())

    def record(self, engine: Engine, threads: int | None) -> dict:
        """The curve with what it holds for: this machine, provider and thread count (for the manifest)."""
        return {"machine": machine_id(), "provider": engine.provider, "threads": threads, "sizes": self.sizes,
                "seconds": self.seconds, "version": CURVE_VERSION}

    @classmethod
    def cached(cls, engine: Engine, threads: int | None) -> "CostCurve":
        """The curve the manifest recorded if it was measured on this kind of machine with the same provider
        and threads; else the one measured on first use for this model, provider and thread count."""
        recorded = engine.manifest.cost_curve
        if recorded and (recorded["machine"], recorded["provider"], recorded["threads"], recorded.get("version")) == \
                (machine_id(), engine.provider, threads, CURVE_VERSION):
            return cls(recorded["sizes"], recorded["seconds"])
        m = engine.manifest  # the same weights as fp32, int8 or int4 graphs cost very differently
        key = f"{m.source.get('weights_sha256', 'unknown')}-{m.dtype}-{m.weights or m.dtype}-" \
              f"{engine.provider}-{threads or 'default'}-v{CURVE_VERSION}"
        path = cache_dir() / "cost_curves.json"
        curves = read_curves(path)
        if key not in curves:
            curve = cls.measure(engine)
            curves[key] = {"sizes": curve.sizes, "seconds": curve.seconds}
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_suffix(f".{os.getpid()}.partial")
                partial.write_text(json.dumps(curves, indent=1))
                partial.replace(path)
            except OSError:
                pass  # a read-only home only costs a re-measurement next time
        return cls(**curves[key])


def read_curves(path: Path) -> dict:
    """The cached curves that are well formed; a damaged cache is ignored (and rewritten), never fatal."""
    try:
        curves = json.loads(path.read_bytes())
    except (OSError, ValueError):  # missing, unreadable, not UTF-8, not JSON
        return {}
    if not isinstance(curves, dict):
        return {}
    return {key: curve for key, curve in curves.items() if isinstance(curve, dict) and curve.keys() == {
        "sizes", "seconds"} and all(isinstance(values, list) and values and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) for values in curve.values())
        and len(curve["sizes"]) == len(curve["seconds"])}


def machine_id() -> str:
    """The CPU model and core count: latencies carry over between machines only when these match."""
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0] if names else platform.processor() or platform.machine()} x{os.cpu_count()}"


class FixedBlock:
    """A constant block size: block_size - 1 masks every step."""

    def __init__(self, block_size: int):
        self.masks = block_size - 1

    def choose(self, fed_before_masks: int) -> int:
        return self.masks

    def observe(self, proposed: int, accepted: int) -> None:
        pass


class BlockPilot:
    """Threshold mode: chooses the number of masks per step (0 .. max_masks) and learns acceptance as it goes."""

    def __init__(self, curve: CostCurve, max_masks: int):
        self.curve, self.max_masks = curve, max_masks
        self.acceptance = np.full(max_masks, PRIOR_ACCEPTANCE)
        self.steps_without_masks = 0

    def choose(self, fed_before_masks: int) -> int:
        """Masks for this step: the count with the most expected tokens (1, the exact AR token, plus the
        accepted mask predictions) per second."""
        masks = np.arange(self.max_masks + 1)
        expected_tokens = 1.0 + np.concatenate([[0.0], np.cumsum(np.cumprod(self.acceptance))])
        best = int(np.argmax(expected_tokens / self.curve(fed_before_masks + masks)))
        self.steps_without_masks = self.steps_without_masks + 1 if best == 0 else 0
        if self.steps_without_masks > PROBE_EVERY:
            self.steps_without_masks, best = 0, 1
        return best

    def observe(self, proposed: int, accepted: int) -> None:
        ema_update(self.acceptance, proposed, accepted)


def ema_update(acceptance: np.ndarray, proposed: int, accepted: int, checked: int | None = None) -> None:
    """The first `accepted` of `proposed` predictions stood: update P(position j stands | the ones before it
    stood). The next one failed, if it was proposed and could be checked (only `checked` positions can be,
    where the truth is known that far)."""
    checked = proposed if checked is None else min(proposed, checked)
    outcomes = [1.0] * accepted + ([0.0] if accepted < checked else [])
    for position, outcome in enumerate(outcomes):
        acceptance[position] += EMA_WEIGHT * (outcome - acceptance[position])
