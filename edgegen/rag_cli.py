"""`edgegen rag index|ask|ls|rm|stats|upgrade`: latent-memory question answering from the terminal."""
import json
import re
import sys
from pathlib import Path

from .argtypes import whole_number
from .models import RAG_COMPRESSOR, RAG_GENERATOR
from .runtime import EdgegenError, ann
from .runtime.compressor import Compressor
from .runtime.jsonl import jsonl_rows, read_text
from .runtime.latent_store import DATABASE, Hit, LatentStore
from .runtime.rag import index_evidence, rag
from .runtime.retrieval import RETRIEVAL_MODES
from .runtime.store_upgrade import upgrade
from .status import StatusLine

TEXT_SUFFIXES = (".txt", ".md", ".rst", ".jsonl")
MAX_ITEM_CHARS = 600  # longer paragraphs are split into sentences (the compressor reads 128 tokens)


def evidence_items(path: Path) -> list[dict]:
    """JSONL rows ({"text"} and optional "id", "source", "metadata") as they are; otherwise the paragraphs
    (blank-line separated) of a UTF-8 text file, long ones split into sentences."""
    if path.suffix == ".jsonl":
        return jsonl_items(path)
    items = []
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", read_text(path)) if p.strip()]
    for number, paragraph in enumerate(paragraphs, 1):
        pieces = [paragraph] if len(paragraph) <= MAX_ITEM_CHARS else \
            [s for s in re.split(r"(?<=[.!?])\s+", paragraph) if s.strip()]
        for part, text in enumerate(pieces, 1):
            suffix = f".{part}" if len(pieces) > 1 else ""
            items.append({"text": " ".join(text.split()), "source": f"{path}#p{number}{suffix}"})
    return items


def jsonl_items(path: Path) -> list[dict]:
    items = []
    for number, row in jsonl_rows(path):
        if not isinstance(row.get("text"), str):
            raise EdgegenError(f'{path}:{number} has no "text"; each JSONL row needs one')
        if "id" in row and not isinstance(row["id"], str):
            raise EdgegenError(f'{path}:{number} has "id" {row["id"]!r}; ids are strings')
        keep = {key: row[key] for key in ("id", "text", "source", "metadata") if key in row}
        items.append({"source": f"{path}:{number}", **keep})
    return items


def files_under(paths: list[Path]) -> list[tuple[Path, bool]]:
    """(file, found in a directory) for each file given and each text file under each directory given; links
    that lead out of the directory are skipped with a warning."""
    found = []
    for path in paths:
        if path.is_dir():
            root = path.resolve()
            for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES):
                if file.resolve().is_relative_to(root):
                    found.append((file, True))
                else:
                    print(f"edgegen: skipped {file}: it links outside {path}", file=sys.stderr)
        elif path.is_file():
            found.append((path, False))
        else:
            raise EdgegenError(f"missing file {path}")
    return found


def read_evidence(paths: list[Path]) -> list[dict]:
    """The evidence items of every file; a file of a directory that cannot be read is skipped with a warning."""
    items = []
    for path, in_directory in files_under(paths):
        try:
            items += evidence_items(path)
        except EdgegenError as e:
            if not in_directory:
                raise
            print(f"edgegen: skipped {e}", file=sys.stderr)
    return items


def run_index(args) -> int:
    compressor = Compressor(args.compressor, provider=args.provider)
    items = read_evidence(args.files)

    line = StatusLine(every=10)

    def progress(done: int, total: int) -> None:
        line.show(f"indexed {done}/{total} new items", last=done == total)

    with LatentStore.for_compressor(args.store, compressor) as store:
        added = index_evidence(store, items, compressor, keep_text=args.keep_text, batch_size=args.batch_size,
                               progress=progress)
        print(f"{len(added)} added, {len(items) - len(added)} already there; {len(store)} items in {args.store}",
              file=sys.stderr)
        if args.ann or (len(store) >= ann.ANN_MIN_ROWS and ann.available() and added):
            store.build_index()
            print(f"ANN index (usearch HNSW) built over {len(store)} items", file=sys.stderr)
    return 0


def run_ask(args, generator_options: dict) -> int:
    from . import load

    store = LatentStore.open(args.store)
    compressor = args.compressor or store.info.get("compressor_path")
    if not compressor:
        raise EdgegenError("the store does not say where its compressor is; pass --compressor DIR")
    if args.retrieval == "hybrid" and not store.lexical_index:
        print(f"edgegen: {args.store} has no lexical index yet, so it is searched by latents alone; "
              f"`edgegen rag upgrade {args.store}` builds one from the texts it kept", file=sys.stderr)
    generator = load(args.generator, provider=args.provider)
    answer = rag(args.question, store, generator, Compressor(compressor, provider=args.provider), k=args.k,
                 as_text=args.as_text, retrieval=args.retrieval, **generator_options)
    sources = [{"id": h.record.id, "source": h.record.source, "score": h.score, "scores": h.scores,
                "ranks": h.ranks, "text": h.record.text} for h in answer.hits]
    if args.json:
        print(json.dumps({"answer": answer.text, "sources": sources, "prompt_tokens": answer.prompt_tokens,
                          "context_tokens": answer.context_tokens, "stop_reason": answer.result.stop_reason}))
        return 0
    print(answer.text)
    if args.show_sources:
        for i, hit in enumerate(answer.hits, 1):
            print(f"  [{i}] {describe_scores(hit)} | {hit.record.id} ({hit.record.source}) | "
                  f"{hit.record.text if hit.record.text is not None else '(text not kept)'}")
    print(f"[{answer.prompt_tokens} prompt tokens, {answer.context_tokens} for {len(sources)} items]", file=sys.stderr)
    return 0


def describe_scores(hit: Hit) -> str:
    """Like "hybrid 0.0325 | latent 0.873 #2 | lexical 7.412 #1": the fused score, then each method's and place."""
    return " | ".join(f"{method} {score:.4f}" if method == "hybrid" else f"{method} {score:.3f} #{hit.ranks[method]}"
                      for method, score in sorted(hit.scores.items(), key=lambda item: item[0] != "hybrid"))


def run_ls(args) -> int:
    store = LatentStore.open(args.store)
    for record, live in zip(store.records, store.live):
        if live:
            print(f"{record.id}\t{record.source}\t{(record.text or '')[:80]}")
    return 0


def run_rm(args) -> int:
    with LatentStore.open(args.store, writable=True) as store:
        print(f"deleted {store.delete(args.ids)} of {len(args.ids)}", file=sys.stderr)
    return 0


def run_stats(args) -> int:
    stats = LatentStore.open(args.store).stats(check=args.check)
    print(json.dumps(stats, indent=2))
    if args.check and stats["check"] != "ok":
        print(f"edgegen: {args.store} is damaged: restore it from a backup, or index the evidence again",
              file=sys.stderr)
        return 1
    return 0


def run_upgrade(args) -> int:
    if not (args.store / DATABASE).is_file():
        live = upgrade(args.store)
        print(f"converted {args.store} to the current format ({live} items); the old files are in "
              f"{args.store / 'format-1'}, to delete once you are happy with it", file=sys.stderr)
    with LatentStore.open(args.store, writable=True) as store:  # a writable open builds the lexical index
        stats = store.stats()
    unindexed = stats["items"] - stats["lexical_items"]
    print(f"{args.store}: {stats['lexical_items']} of {stats['items']} items in the lexical index" +
          (f"; {unindexed} kept no text: add them again (`edgegen rag rm`, then `edgegen rag index`) to find them "
           "by their words" if unindexed > 0 else ""), file=sys.stderr)
    return 0


def add_rag(commands, add_decoding_options, decoding_options) -> None:
    p = commands.add_parser("rag", help="latent-memory question answering",
                            description="Index evidence as one latent each; answer questions over it.")
    sub = p.add_subparsers(dest="rag_command", required=True)
    index = sub.add_parser("index", help="add text files (paragraphs; long ones as sentences) to a store")
    index.add_argument("store", type=Path)
    index.add_argument("files", type=Path, nargs="+", help="files, or directories of .txt/.md/.rst files")
    index.add_argument("--compressor", type=Path, default=RAG_COMPRESSOR,
                       help="directory made by `edgegen export-memory` (default: the bundled one)")
    index.add_argument("--keep-text", action="store_true", help="store the texts too (for --show-sources, --as-text)")
    index.add_argument("--batch-size", type=whole_number(1), default=32, help="items per atomic commit")
    index.add_argument("--ann", action="store_true", help="build a usearch HNSW index now (automatic from "
                                                          f"{ann.ANN_MIN_ROWS:,} items when usearch is installed)")
    index.add_argument("--provider", default="auto")
    index.set_defaults(run=run_index)
    ask = sub.add_parser("ask", help="answer a question from a store")
    ask.add_argument("store", type=Path)
    ask.add_argument("question")
    ask.add_argument("--generator", type=Path, default=RAG_GENERATOR,
                     help="a model exported with --latent-inputs (default: the bundled latent-RAG generator)")
    ask.add_argument("--compressor", type=Path, help="default: the one the store was indexed with")
    ask.add_argument("--k", type=whole_number(1), default=5, help="evidence items to retrieve")
    ask.add_argument("--as-text", action="store_true", help="baseline: give the generator the retrieved texts")
    ask.add_argument("--retrieval", choices=RETRIEVAL_MODES, default="hybrid",
                     help="latent: cosine of the compressor's vectors; lexical: BM25 over the words; hybrid (default): "
                          "both, their scaled scores fused")
    ask.add_argument("--show-sources", action="store_true",
                     help="print the retrieved items: their scores (per method and fused) and texts, when kept")
    ask.add_argument("--json", action="store_true")
    ask.add_argument("--provider", default="auto")
    add_decoding_options(ask)
    ask.set_defaults(run=lambda args: run_ask(args, decoding_options(args)), max_new_tokens=32)  # the reference's
    for name, run, helptext in (("ls", run_ls, "list stored items"), ("stats", run_stats, "store statistics"),
                                ("upgrade", run_upgrade, "bring a store of an earlier edgegen to this format (and "
                                                         "build its lexical index from the texts it kept)")):
        command = sub.add_parser(name, help=helptext)
        command.add_argument("store", type=Path)
        command.set_defaults(run=run)
        if name == "stats":
            command.add_argument("--check", action="store_true",
                                 help="run SQLite's integrity check and verify every vector's checksum")
    rm = sub.add_parser("rm", help="delete items by id")
    rm.add_argument("store", type=Path)
    rm.add_argument("ids", nargs="+")
    rm.set_defaults(run=run_rm)
