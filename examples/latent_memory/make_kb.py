"""A synthetic knowledge base for training and evaluating latent memory without downloads.

Invented people, each with five attributes, every fact written in one of several sentence forms.
Questions ask for one attribute; the supporting sentence is the positive, and the person's other
facts plus the same attribute of other people are the hard negatives (as the reference draws them
from the same HotpotQA context). People are split into train and held-out: no held-out fact or
question is ever trained on.

    python examples/latent_memory/make_kb.py OUT_DIR [--people 2000]
writes OUT_DIR/evidence.jsonl (every fact), evidence_heldout.jsonl (the held-out people's facts),
questions_train.jsonl and questions_heldout.jsonl.
"""
import argparse
import json
import math
import random
from pathlib import Path

SYLLABLES = "ka lo mi ra te su no vi da re ma ko li sa be tu na po xe gi".split()
CITIES = "Arlen Brisk Corvale Dunmere Eskar Felwick Gorran Hallis Ivrea Jastow Kelmar Lunder Morvik Norrow".split()
PROFESSIONS = "baker sculptor pilot chemist weaver surgeon carpenter astronomer violinist cartographer".split()
INSTRUMENTS = "cello oboe harp lute drum flute viola trumpet".split()
COLOURS = "amber crimson teal violet ochre indigo scarlet jade".split()
ATTRIBUTES = {
    "city": (CITIES, ["{name} was born in {value}.", "{value} is the birthplace of {name}.",
                      "Born in {value}, {name} never forgot the town."], "Where was {name} born?"),
    "profession": (PROFESSIONS, ["{name} works as a {value}.", "By trade, {name} is a {value}.",
                                 "{name} earned a living as a {value}."], "What is {name}'s profession?"),
    "year": ([str(y) for y in range(1850, 2000)], ["{name} was born in the year {value}.",
                                                   "The year {value} saw the birth of {name}."],
             "In which year was {name} born?"),
    "instrument": (INSTRUMENTS, ["{name} plays the {value}.", "The {value} is the instrument of {name}.",
                                 "Evenings find {name} practising the {value}."], "Which instrument does {name} play?"),
    "colour": (COLOURS, ["{name}'s favourite colour is {value}.", "{name} likes {value} more than any colour."],
               "What is {name}'s favourite colour?"),
}


def person_name(rng: random.Random) -> str:
    def word(n):
        return "".join(rng.choice(SYLLABLES) for _ in range(n)).capitalize()
    return f"{word(2)} {word(rng.randint(2, 3))}"


def main(out: Path, people: int, heldout_share: float, seed: int) -> None:
    rng = random.Random(seed)
    names = sorted({person_name(rng) for _ in range(people * 2)})[:people]
    rng.shuffle(names)
    evidence, facts, answers = [], {}, {}
    for name in names:
        for attribute, (values, forms, _) in ATTRIBUTES.items():
            value = rng.choice(values)
            fact_id = f"{name.replace(' ', '_')}/{attribute}"
            evidence.append({"id": fact_id, "text": rng.choice(forms).format(name=name, value=value),
                             "entity": name, "attribute": attribute, "value": value})
            facts[name, attribute], answers[name, attribute] = fact_id, value
    split = {"train": [], "heldout": []}
    heldout_people = set(names[:math.ceil(people * heldout_share)])
    for name in names:
        part = "heldout" if name in heldout_people else "train"
        for attribute, (_, _, question) in ATTRIBUTES.items():
            own = [facts[name, a] for a in ATTRIBUTES if a != attribute]
            others = [facts[other, attribute] for other in rng.sample(names, 6) if other != name][:4]
            split[part].append({"question": question.format(name=name), "answer": answers[name, attribute],
                                "positive_ids": [facts[name, attribute]], "hard_negative_ids": own + others})
    out.mkdir(parents=True, exist_ok=True)
    heldout_evidence = [row for row in evidence if row["entity"] in heldout_people]
    for name, rows in [("evidence", evidence), ("evidence_heldout", heldout_evidence),
                       ("questions_train", split["train"]),
                       ("questions_heldout", split["heldout"])]:
        with (out / f"{name}.jsonl").open("w") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
        print(f"{name}: {len(rows)} rows")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--heldout-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.out, args.people, args.heldout_share, args.seed)
