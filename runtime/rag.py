"""Latent-RAG question answering: each retrieved evidence item costs the generator one latent vector.

The prompt is built as the reference builds it: the generator's chat template is rendered with a
fixed system message and a user turn of `<context> + "\\nQuestion: {q}"`, split at the context
placeholder, and the context becomes "Latent context 1: " <latent> "\\nLatent context 2: " <latent> ...
Every text segment is tokenized on its own, as the reference does (joint tokenization would move
BPE boundaries). With as_text, the same generator reads "Context i: <text>" instead: the baseline.
"""
from dataclasses import dataclass
from pathlib import Path

from .compressor import Compressor
from .engine import Latent
from .errors import EdgegenError
from .latent_store import Hit, LatentStore, Record, encodable, text_hash, valid_id
from .model import Model, Result
from .retrieval import search
from .tokenizer import Tokenizer

PLACEHOLDER = "\x00context\x00"
RAG_MAX_NEW_TOKENS = 32  # the reference's answer length


@dataclass
class RagAnswer:
    text: str
    hits: list[Hit]  # retrieved items, best first: .record (id, source, text...), .score, .scores/.ranks per method
    prompt_tokens: int  # generator prompt length, one position per latent
    context_tokens: int  # of which the retrieved context: labels plus latents (or texts)
    result: Result


def split_template(tokenizer: Tokenizer, layout: dict, question: str) -> tuple[str, str]:
    user = PLACEHOLDER + layout["question"].format(question=question)
    if tokenizer.chat_template is None:
        bos = tokenizer.special_tokens.get("bos_token", "")
        text = f"{bos}{layout['system_prompt']}\nUSER: {user}\nASSISTANT:"
    else:
        try:
            text = tokenizer.apply_chat_template([{"role": "system", "content": layout["system_prompt"]},
                                                  {"role": "user", "content": user}])
        except EdgegenError:  # templates without a system role: the system text opens the user turn
            text = tokenizer.apply_chat_template([{"role": "user", "content": f"{layout['system_prompt']}\n{user}"}])
    prefix, suffix = text.split(PLACEHOLDER)
    return prefix, suffix


def build_prompt(tokenizer: Tokenizer, layout: dict, question: str, contexts: list) -> tuple[list, int]:
    """Prompt items for one question over its retrieved contexts: evidence texts (the raw-text baseline,
    "Context i: <text>") or latents (anything not a str, "Latent context i: <latent>"), most similar first.
    Returns the items (token ids, latents in place) and how many of them hold the context."""
    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    prefix, suffix = split_template(tokenizer, layout, question)
    context = []
    for i, item in enumerate(contexts, 1):
        as_text = isinstance(item, str)
        label = layout["text_label" if as_text else "label"]
        context += encode(("\n" if i > 1 else "") + label.format(i=i)) + (encode(item) if as_text else [item])
    return encode(prefix) + context + encode(suffix), len(context)


def index_evidence(store: LatentStore, items: list[dict], compressor: Compressor, keep_text: bool = False,
                   batch_size: int = 32, progress=None) -> list[str]:
    """Compress evidence items ({"text", optional "id", "source", "metadata"}) into a store opened for writing,
    one transaction per batch; items whose id is stored already are skipped, so an interrupted index resumes.
    The default id is the text's hash: a text given twice is stored once. Every text goes into the lexical
    index; keep_text stores it too. Returns the ids added."""
    if compressor.identity != store.info["compressor"]:
        raise EdgegenError(f"{store.path} holds vectors of another compressor ({store.info['compressor']}); "
                           "use a new store for this one")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise EdgegenError(f"batch_size must be a whole number >= 1, not {batch_size!r}")
    unique = {}
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise EdgegenError(f"item {number} is not a dict with a \"text\" string: {str(item)[:80]!r}")
        if not encodable(item["text"]):
            raise EdgegenError(f"item {number} has a text that is not valid Unicode (a lone surrogate): "
                               f"{item['text'][:80]!r}; fix the text")
        item_id = item["id"] if "id" in item else text_hash(item["text"])[:16]
        if not valid_id(item_id):
            raise EdgegenError(f"item {number} has id {item_id!r}: ids are non-empty strings of printable text")
        unique.setdefault(item_id, item)
    todo = [dict(item, id=item_id) for item_id, item in unique.items() if item_id not in store]
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        retrieval, latents = compressor.embed_evidence([item["text"] for item in batch])
        store.append([Record(id=item["id"], source=item.get("source", ""), text_sha256=text_hash(item["text"]),
                             text=item["text"] if keep_text else None, metadata=item.get("metadata", {}))
                      for item in batch], retrieval, latents, texts=[item["text"] for item in batch])
        if progress:
            progress(min(start + batch_size, len(todo)), len(todo))
    return [item["id"] for item in todo]


def retrieve(question: str, store: LatentStore, generator: Model, compressor: Compressor, k: int = 5,
             as_text: bool = False, retrieval: str = "hybrid") -> tuple[list, list[Hit], int]:
    """The generator's prompt for a question over its top-k evidence, found by `retrieval` (hybrid, latent or
    lexical: see retrieval.py): (prompt items with latents in place, the hits, how many items hold the context)."""
    if not as_text and compressor.manifest.generator_hidden != generator.manifest.hidden_size:
        raise EdgegenError(f"the compressor makes {compressor.manifest.generator_hidden}-d latents but the generator's "
                           f"embeddings are {generator.manifest.hidden_size}-d: use the generator it was trained for")
    hits = search(question, store, compressor, k, retrieval)
    if as_text and any(hit.record.text is None for hit in hits):
        raise EdgegenError("this store keeps no evidence texts; index with --keep-text to compare against "
                           "the raw-text baseline")
    contexts = [hit.record.text if as_text else Latent(store.latent(hit.row)) for hit in hits]
    items, context = build_prompt(generator.tokenizer, compressor.manifest.layout, question, contexts)
    return items, hits, context


def rag(question: str, store: LatentStore | str | Path, generator: Model | str | Path,
        compressor: Compressor | str | Path, k: int = 5, as_text: bool = False, retrieval: str = "hybrid",
        **options) -> RagAnswer:
    """Answer a question from a latent store: retrieve the top k (by `retrieval`: hybrid, latent or lexical),
    generate over their latents.
    Unset options take their defaults (lossless "verify" decoding: an answer is a few tokens, and one wrongly
    accepted threshold-mode token, say an early end of turn, would cost all of it)."""
    store = store if isinstance(store, LatentStore) else LatentStore.open(store)
    generator = generator if isinstance(generator, Model) else Model(generator)
    compressor = compressor if isinstance(compressor, Compressor) else Compressor(compressor)
    items, hits, context = retrieve(question, store, generator, compressor, k, as_text, retrieval)
    options = {"max_new_tokens": RAG_MAX_NEW_TOKENS, **{name: value for name, value in options.items()
                                                        if value is not None}}
    result = generator.stream(items, **options).run()
    return RagAnswer(result.text.strip(), hits, len(items), context, result)
