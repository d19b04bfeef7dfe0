"""The user-facing model: generate, stream and chat over one engine."""
import numbers
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path

from .decoding import decode_blocks, decode_verified, reuse_cached_prefix
from .drafting import LOOKUP, LOOKUP_MAX, MASK, DraftPilot, DraftStats, FixedDrafts
from .engine import ConcatKVEngine, Engine, Latent
from .errors import EdgegenError
from .grammar import Constraint, ll_tokenizer
from .lookup import PromptLookup
from .manifest import Manifest
from .options import DEFAULT_BLOCK_SIZE, GenerationOptions
from .pilot import BlockPilot, CostCurve, FixedBlock
from .prompt_cache import PromptCache
from .sampling import Sampler
from .stats import Stats, StatsRecorder
from .text import IncrementalDecoder, StopFilter
from .tokenizer import Tokenizer
from .tools import ToolCallFilter, ToolFormat, checked_tools, tool_format


@dataclass
class Result:
    text: str
    token_ids: list[int]  # generated tokens, up to the one completing a stop string; eos excluded
    stop_reason: str  # "eos", "stop" (a stop string), "max_new_tokens", "context_full" or "cancelled"
    stats: Stats
    tool_calls: list[dict] = field(default_factory=list)  # {"name", "arguments": JSON text}, when tools were offered


class Generation:
    """Iterate for text pieces as they are generated (never a partial UTF-8 character);
    `result` holds the outcome once iteration ends or is abandoned."""

    def __init__(self, model: "Model", prompt_ids: list[int], options: GenerationOptions, on_finish=None,
                 constraint: Constraint | None = None, tools: ToolFormat | None = None):
        self.model, self.prompt_ids, self.options, self.on_finish = model, prompt_ids, options, on_finish
        self.constraint, self.calls = constraint, ToolCallFilter(tools) if tools else None
        self.result: Result | None = None
        self.token_ids: list[int] = []
        self.decoder, self.stops = IncrementalDecoder(model.tokenizer), StopFilter(options.stop)
        self.eos = set(model.manifest.eos_token_ids)
        self._pieces = self._generate()

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        """Stop early (e.g. on Ctrl-C); `result` then has stop_reason 'cancelled'."""
        self._pieces.close()

    def run(self) -> Result:
        """Generate to the end without streaming."""
        for _ in self._pieces:
            pass
        return self.result

    def _commit(self, token: int) -> tuple[str, str | None]:
        """Add one generated token; return the text it makes safe to show and why to stop, if so."""
        if token in self.eos:
            return "", "eos"
        self.token_ids.append(token)
        piece = self.stops.push(self.decoder.push(token))
        if self.stops.stopped:
            return piece, "stop"
        return piece, "max_new_tokens" if len(self.token_ids) == self.options.max_new_tokens else None

    def _generate(self) -> Iterator[str]:
        with self.model.busy():
            yield from self._decode()

    def _decode(self) -> Iterator[str]:
        model, options, engine = self.model, self.options, self.model.engine
        policy = model.block_policy(options)  # may measure the cost curve: before the cache is reused
        clock = StatsRecorder(engine, len(self.prompt_ids), options.mode)
        restored = model.restore_prefix(self.prompt_ids)
        pending = reuse_cached_prefix(engine, self.prompt_ids)
        clock.stats.cached_prompt_tokens = len(self.prompt_ids) - len(pending)
        drafts = DraftStats()
        sampler = Sampler(options.temperature, options.top_k, options.top_p, options.seed)
        mask_id, candidates = model.manifest.mask_token_id, model.manifest.graph.topk
        constraint = self.constraint
        # the top-k outputs serve whenever every token the sampler may choose is among them; entropy and a
        # grammar (which may allow none of them) need whole rows
        top_k = bool(candidates) and sampler.fits(candidates) and options.acceptance != "entropy" \
            and not options.full_logits and constraint is None
        if options.mode == "verify":
            lookup = PromptLookup(self.prompt_ids) if options.drafts in ("auto", LOOKUP) else None
            blocks = decode_verified(engine, pending, policy, mask_id, sampler, drafts, lookup, top_k, constraint)
        else:
            blocks = decode_blocks(engine, pending, policy, mask_id, sampler, options.threshold, options.acceptance,
                                   options.max_accept, top_k, constraint)
        texts, shown, calls, reason = [], [], [], None  # texts: all the answer's text; shown: what was yielded

        def show(text: str) -> str:
            texts.append(text)
            piece = self.calls.push(text) if self.calls else text
            shown.append(piece)
            return piece

        try:
            for block in blocks:
                clock.forward_done()
                for token in block:
                    piece, stop = self._commit(token)
                    if piece and (piece := show(piece)):
                        yield piece
                    if stop:
                        reason = stop
                        break
                if clock.stats.forwards == 1:
                    clock.first_block_tokens = len(self.token_ids)
                if reason:
                    break
            else:
                reason = "context_full"
            rest = "" if self.stops.stopped else self.stops.push(self.decoder.flush()) + self.stops.flush()
            reason = "stop" if self.stops.stopped else reason
            if rest and (rest := show(rest)):
                yield rest
            if self.calls:
                tail, calls = self.calls.finish("".join(texts))
                shown.append(tail)
                if tail:
                    yield tail
        finally:
            stats = clock.finish(len(self.token_ids), reason == "eos", drafts)
            if not restored:
                model.remember_prefix(self.prompt_ids)
            self.result = Result("".join(shown), self.token_ids, reason or "cancelled", stats, calls)
            if self.on_finish:
                self.on_finish(self.result)

class Model:
    def __init__(self, path: str | Path, provider: str = "auto", max_context: int | None = None,
                 threads: int | None = None, wait: float | None = None, prompt_cache: str | Path | None = None):
        """`wait`: how many seconds a generation waits for the model while another thread's generation runs
        (None: until it is free). `prompt_cache`: a directory where prompts' KV is kept for later processes."""
        self.path, self.threads, self.wait = Path(path), threads, wait
        self._lock, self._holder = threading.Lock(), None
        self.manifest = Manifest.load(self.path)
        self.tokenizer = Tokenizer(self.path)
        engine = Engine if self.manifest.graph.kv_shared_buffer else ConcatKVEngine
        self.engine = engine(self.path, self.manifest, provider, max_context, threads)
        self.prompt_cache = PromptCache(prompt_cache, self.manifest) if prompt_cache else None
        self._cost_curve: CostCurve | None = None
        self._pilots: dict[tuple, DraftPilot] = {}  # verify's pilots keep what they learned between generations
        self._grammar_tokenizer = None

    def grammar_tokenizer(self):
        """llguidance's tokenizer for structured output, built on first use (about a second at 150k tokens)."""
        if self._grammar_tokenizer is None:
            self._grammar_tokenizer = ll_tokenizer(self.path, self.manifest.eos_token_ids, self.manifest.vocab_size)
        return self._grammar_tokenizer

    def restore_prefix(self, prompt_ids: list) -> bool:
        """Load the prompt cache's longest prefix of this prompt into the KV cache when it beats what the engine
        holds already; True when the prompt (all but its last token) came from the cache."""
        if self.prompt_cache is None or any(isinstance(item, Latent) for item in prompt_ids):
            return False
        held = next((i for i, (a, b) in enumerate(zip(self.engine.tokens, prompt_ids)) if a != b),
                    min(len(self.engine.tokens), len(prompt_ids)))
        shared, entry = self.prompt_cache.best(prompt_ids)
        if shared > held and (kv := self.prompt_cache.load(entry, shared)) is not None:
            self.engine.write_kv(prompt_ids[:shared], kv)
            return shared == len(prompt_ids) - 1
        return held >= len(prompt_ids) - 1

    def remember_prefix(self, prompt_ids: list) -> None:
        """Save this prompt's KV to the prompt cache (once the engine holds all of it)."""
        if self.prompt_cache is None or any(isinstance(item, Latent) for item in prompt_ids):
            return
        if self.engine.tokens[:len(prompt_ids)] == list(prompt_ids):
            self.prompt_cache.save(list(prompt_ids), self.engine.read_kv(len(prompt_ids)))

    @property
    def max_context(self) -> int:
        return self.engine.max_context

    @contextmanager
    def busy(self):
        """One generation at a time, since the KV cache holds one sequence. Another thread's generation waits
        for it; this thread's own unfinished stream is an error at once, as waiting for it would never end."""
        if self._holder == threading.get_ident():
            raise EdgegenError("this model is busy with an unfinished stream of this thread: iterate it to the end "
                               "or close() it before starting another (a model generates one sequence at a time)")
        if not self._lock.acquire(timeout=-1 if self.wait is None else self.wait):
            raise EdgegenError(f"this model stayed busy with another thread's generation for {self.wait} s; try "
                               "again later, or load one model per concurrent caller")
        self._holder = threading.get_ident()
        try:
            yield
        finally:
            self._holder = None
            self._lock.release()

    @property
    def cost_curve(self) -> CostCurve:
        """Forward latency against new tokens, measured once per model, provider and thread count."""
        if self._cost_curve is None:
            self._cost_curve = CostCurve.cached(self.engine, self.threads)
        return self._cost_curve

    def block_policy(self, options: GenerationOptions) -> FixedBlock | BlockPilot | FixedDrafts | DraftPilot:
        masks = self.manifest.mask_token_id is not None and options.drafts in ("auto", MASK)
        if options.mode == "verify" and options.block_size != "auto":
            return FixedDrafts(options.block_size, masks, options.drafts != MASK)
        if options.block_size != "auto":
            return FixedBlock(options.block_size)
        largest = options.max_block_size or self.manifest.block_size or DEFAULT_BLOCK_SIZE
        if options.mode != "verify":
            return BlockPilot(self.cost_curve, largest - 1)
        lookup_max = options.max_block_size - 1 if options.max_block_size else LOOKUP_MAX
        key = (largest - 1 if masks else 0, lookup_max if options.drafts != MASK else 0, options.temperature > 0)
        if key not in self._pilots:
            self._pilots[key] = DraftPilot(self.cost_curve, *key[:2])
        return self._pilots[key]

    def encode_prompt(self, prompt: str | list, chat: bool = False, tools: list[dict] | None = None) -> list:
        """Token ids of a prompt: plain text, text as one user message (chat=True), a list of chat messages
        ({"role", "content"}, wrapped in the chat template, which also offers the tools), or token ids (and
        Latents) as they are."""
        if isinstance(prompt, str) and chat:
            prompt = [{"role": "user", "content": prompt}]
        if isinstance(prompt, list) and prompt and all(
                isinstance(m, dict) and {"role", "content"} <= m.keys() for m in prompt):
            text = self.tokenizer.apply_chat_template(prompt, tools=tools)
            return self.tokenizer.encode(text, add_special_tokens=False)
        if tools:
            raise EdgegenError("tools are offered through the chat template: give chat messages (or chat=True)")
        if isinstance(prompt, list) and prompt and all(
                isinstance(item, (numbers.Integral, Latent)) and not isinstance(item, bool) for item in prompt):
            return [item if isinstance(item, Latent) else int(item) for item in prompt]
        if not isinstance(prompt, str):
            raise EdgegenError(f"a prompt is a str, a list of chat messages like [{{'role': 'user', 'content': "
                               f"'...'}}] or a list of token ids, not {str(prompt)[:60]!r}")
        return self.tokenizer.encode(prompt)

    def stream(self, prompt: str | list, chat: bool = False, on_finish=None, tools: list[dict] | None = None,
               tool_choice: str | dict = "auto", **options) -> Generation:
        """A generation to iterate for text pieces (see encode_prompt for the prompt); the options, the grammar
        and that the prompt fits are checked before anything runs. `tools`: OpenAI-style function tools, offered
        through the chat template; the calls the model makes come back in `result.tool_calls`, not in the text
        (tool_choice: auto, none, required or {"type": "function", "function": {"name": NAME}} to force one)."""
        unknown = set(options) - {f.name for f in fields(GenerationOptions)}
        if unknown:
            raise EdgegenError(f"unknown generation option(s) {', '.join(sorted(unknown))}; the options are "
                               f"{', '.join(f.name for f in fields(GenerationOptions))}")
        calls = None
        if tools is None and tool_choice != "auto":
            raise EdgegenError("tool_choice needs tools to choose from; pass tools, or leave tool_choice out")
        if tools is not None and tool_choice != "none":
            calls = tool_format(self.tokenizer.template_source)
            tools, forced = checked_tools(tools, tool_choice)
            if forced is not None and options.get("response_format"):
                raise EdgegenError("a forced tool call (tool_choice) already fixes the answer's format; drop "
                                   "response_format or set tool_choice to auto")
            if forced is not None:
                options["response_format"] = calls.forced([t for t in tools if forced in ("", t["function"]["name"])])
        opts = GenerationOptions(**options).check(self.manifest)
        constraint = Constraint(self.grammar_tokenizer(), opts.response_format) if opts.response_format else None
        prompt_ids = self.encode_prompt(prompt, chat, tools if calls else None) \
            if not isinstance(prompt, (str, list)) or prompt else []
        if not prompt_ids:
            raise EdgegenError("the prompt is empty; give at least one token of text")
        latents = [item for item in prompt_ids if isinstance(item, Latent)]
        if latents and not self.manifest.graph.latent_embeds:
            raise EdgegenError("this model's graph takes no latent vectors; re-export it with "
                               "`edgegen export --latent-inputs`")
        if any(latent.vector.size != self.manifest.hidden_size for latent in latents):
            raise EdgegenError(f"latent vectors must have the generator's hidden size {self.manifest.hidden_size}")
        if len(prompt_ids) >= self.max_context:
            raise EdgegenError(f"the prompt has {len(prompt_ids)} tokens but max_context is {self.max_context}, "
                               "leaving no room to generate; shorten the prompt or load the model with a larger "
                               f"max_context (this export allows up to {self.manifest.max_context})")
        return Generation(self, prompt_ids, opts, on_finish, constraint, calls)

    def generate(self, prompt: str | list, chat: bool = False, **options) -> Result:
        """The whole answer at once; takes stream's arguments."""
        return self.stream(prompt, chat, **options).run()

    def chat(self, system: str | None = None, **options) -> "Chat":
        return Chat(self, system, **options)


class Chat:
    """A multi-turn conversation. Each turn renders the whole history with the chat template; the
    engine keeps the KV of the longest prefix it already holds, so only the new turn is prefilled.
    When the history outgrows the context, the oldest turns go first; the system prompt stays."""

    def __init__(self, model: Model, system: str | None = None, **options):
        self.model, self.options = model, options
        self.messages: list[dict] = [{"role": "system", "content": system}] if system else []
        self.dropped_turns = 0  # turns dropped to fit the context, so far
        self._turn = threading.Lock()

    def _prompt_ids(self, messages: list[dict]) -> list[int]:
        prompt = self.model.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        return self.model.tokenizer.encode(prompt, add_special_tokens=False)

    def stream(self, text: str, **options) -> Generation:
        options = {**self.options, **options}
        messages = self.messages + [{"role": "user", "content": text}]
        ids = self._prompt_ids(messages)
        room = min(options.get("max_new_tokens", GenerationOptions.max_new_tokens), self.model.max_context // 4)
        first = 1 if messages[0]["role"] == "system" else 0
        while len(ids) + room > self.model.max_context and len(messages) - first > 2:
            messages = messages[:first] + messages[first + 2:]  # the oldest user + assistant pair
            self.dropped_turns += 1
            ids = self._prompt_ids(messages)

        def record(result: Result):
            self.messages[:] = messages + [{"role": "assistant", "content": result.text}]

        return self.model.stream(ids, on_finish=record, **options)

    def send(self, text: str, **options) -> Result:
        """One whole turn; turns sent from several threads take their turns one after another."""
        with self._turn:
            return self.stream(text, **options).run()

    def reset(self) -> None:
        self.messages = [m for m in self.messages if m["role"] == "system"]


def load(path: str | Path, provider: str = "auto", max_context: int | None = None,
         threads: int | None = None, wait: float | None = None, prompt_cache: str | Path | None = None) -> Model:
    """Load an exported model directory (see `edgegen export`)."""
    return Model(path, provider, max_context, threads, wait, prompt_cache)
