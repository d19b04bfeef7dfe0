"""A multi-domain synthetic knowledge base, split three ways to measure what generalizes beyond training.

Ten entity types (kb_domains.py: people, towns, companies, species, products, events, rivers, mountains,
books, films), five attributes each, every fact in one of four or five sentence forms, every question in one
of three phrasings. `train` is for training; each held-out split holds entities never trained on:
    heldout_entities   of the trained types, in the trained sentence forms and question phrasings
    heldout_templates  of the trained types, only in held-out forms: per attribute one sentence form and one
                       question phrasing that no trained fact or question uses
    heldout_types      of types never trained on (--heldout-types), in all their forms
Questions ask for one attribute; the positive is the fact stating it, the hard negatives the entity's other
facts and the same attribute of other entities of its type in its split (as make_kb.py draws them).

    python examples/latent_memory/make_kb_splits.py OUT_DIR [--train 2000] [--heldout 200] [--seed 0]
writes OUT_DIR/evidence_SPLIT.jsonl and questions_SPLIT.jsonl per split, and kb.json saying what was held
out. The same arguments give the same files.
"""
import argparse
import json
import random
from pathlib import Path

from kb_domains import TYPES

SPLITS = ("train", "heldout_entities", "heldout_templates", "heldout_types")
HELDOUT_TYPES = ("species", "river", "film")
NAME_TRIES = 1000


ALL_FORMS = {(type_name, attribute): (forms, phrasings) for type_name, (_, attributes) in TYPES.items()
             for attribute, (_, forms, phrasings) in attributes.items()}


def split_forms(rng: random.Random) -> tuple[dict, dict]:
    """The trained and the held-out {(type, attribute): (sentence forms, question phrasings)}: one form and one
    phrasing of each attribute held out, drawn by the seed."""
    trained, heldout = {}, {}
    for key, (forms, phrasings) in ALL_FORMS.items():
        forms, phrasings = rng.sample(forms, len(forms)), rng.sample(phrasings, len(phrasings))
        trained[key], heldout[key] = (forms[1:], phrasings[1:]), (forms[:1], phrasings[:1])
    return trained, heldout


def new_entities(rng: random.Random, types: list[str], count: int, taken: set[str]) -> list[tuple[str, str, dict]]:
    """`count` entities (type, name, {attribute: value}), the types taken in turn; no name used twice."""
    entities = []
    for number in range(count):
        type_name = types[number % len(types)]
        make_name, attributes = TYPES[type_name]
        name = next((name for name in (make_name(rng) for _ in range(NAME_TRIES)) if name not in taken), None)
        if name is None:
            raise SystemExit(f"{NAME_TRIES} {type_name} names in a row were taken already: ask for fewer entities")
        taken.add(name)
        entities.append((type_name, name, {attribute: make_value(rng)
                                           for attribute, (make_value, _, _) in attributes.items()}))
    return entities


def sentence(form: str, **values: str) -> str:
    text = form.format(**values)
    return text[0].upper() + text[1:]


def write_out(rng: random.Random, entities: list, forms: dict) -> tuple[list[dict], list[dict]]:
    """Evidence and question rows of these entities, in forms {(type, attribute): (forms, phrasings)}."""
    evidence, facts = [], {}
    for type_name, name, values in entities:
        for attribute, value in values.items():
            fact_id = f"{type_name}/{name.replace(' ', '_')}/{attribute}"
            form = rng.choice(forms[type_name, attribute][0])
            evidence.append({"id": fact_id, "text": sentence(form, name=name, value=value), "entity": name,
                             "type": type_name, "attribute": attribute, "value": value})
            facts[name, attribute] = fact_id
    same_type = {}
    for type_name, name, _ in entities:
        same_type.setdefault(type_name, []).append(name)
    questions = []
    for type_name, name, values in entities:
        for attribute, value in values.items():
            own = [facts[name, other] for other in values if other != attribute]
            pool = same_type[type_name]
            others = [facts[other, attribute] for other in rng.sample(pool, min(5, len(pool))) if other != name][:4]
            phrasing = rng.choice(forms[type_name, attribute][1])
            questions.append({"question": sentence(phrasing, name=name), "answer": value,
                              "positive_ids": [facts[name, attribute]], "hard_negative_ids": own + others,
                              "type": type_name, "attribute": attribute})
    return evidence, questions


def build(train: int, heldout: int, heldout_types: tuple[str, ...], seed: int) -> tuple[dict, dict]:
    """({split: (evidence rows, question rows)}, what was held out)."""
    rng = random.Random(seed)
    trained_forms, heldout_forms = split_forms(rng)
    trained_types = [t for t in TYPES if t not in heldout_types]
    taken = set()
    entities = {"train": new_entities(rng, trained_types, train, taken),
                "heldout_entities": new_entities(rng, trained_types, heldout, taken),
                "heldout_templates": new_entities(rng, trained_types, heldout, taken),
                "heldout_types": new_entities(rng, list(heldout_types), heldout, taken)}
    forms = {"train": trained_forms, "heldout_entities": trained_forms, "heldout_templates": heldout_forms,
             "heldout_types": ALL_FORMS}
    rows = {split: write_out(rng, entities[split], forms[split]) for split in SPLITS}
    held_out = {f"{t}/{a}": {"sentence": forms[0], "question": phrasings[0]}
                for (t, a), (forms, phrasings) in heldout_forms.items() if t in trained_types}
    return rows, {"seed": seed, "trained_types": trained_types, "heldout_types": list(heldout_types),
                  "heldout_forms": held_out}


def main(out: Path, train: int, heldout: int, heldout_types: tuple[str, ...], seed: int) -> None:
    rows, held_out = build(train, heldout, heldout_types, seed)
    out.mkdir(parents=True, exist_ok=True)
    for split, (evidence, questions) in rows.items():
        for kind, items in (("evidence", evidence), ("questions", questions)):
            with (out / f"{kind}_{split}.jsonl").open("w", encoding="utf-8") as f:
                f.writelines(json.dumps(row) + "\n" for row in items)
        print(f"{split}: {len(evidence)} facts, {len(questions)} questions")
    (out / "kb.json").write_text(json.dumps(held_out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=2000, help="entities of the trained types")
    parser.add_argument("--heldout", type=int, default=200, help="entities in each held-out split")
    parser.add_argument("--heldout-types", default=",".join(HELDOUT_TYPES),
                        help=f"comma-separated types never trained on (of {', '.join(TYPES)})")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not set(args.heldout_types.split(",")) < set(TYPES):
        parser.error(f"--heldout-types takes some but not all of {', '.join(TYPES)}; got {args.heldout_types}")
    main(args.out, args.train, args.heldout, tuple(args.heldout_types.split(",")), args.seed)
