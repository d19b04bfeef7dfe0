"""The multi-domain knowledge base: deterministic by seed, and each held-out split holds out what it says."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

LATENT_MEMORY = Path(__file__).resolve().parent.parent / "examples" / "latent_memory"
sys.path.insert(0, str(LATENT_MEMORY))
import make_kb_splits  # noqa: E402
from kb_domains import TYPES  # noqa: E402

HELD_OUT = make_kb_splits.SPLITS[1:]


@pytest.fixture(scope="module")
def kb():
    return make_kb_splits.build(300, 60, make_kb_splits.HELDOUT_TYPES, seed=3)


def form_of(row: dict) -> str:
    """The sentence form a fact was written in."""
    forms = TYPES[row["type"]][1][row["attribute"]][1]
    matches = [form for form in forms if make_kb_splits.sentence(form, name=row["entity"], value=row["value"])
               == row["text"]]
    assert len(matches) == 1, row
    return matches[0]


def phrasing_of(question: dict, entity: str) -> str:
    phrasings = TYPES[question["type"]][1][question["attribute"]][2]
    return next(p for p in phrasings if make_kb_splits.sentence(p, name=entity) == question["question"])


def test_the_same_seed_gives_the_same_knowledge_base_and_another_seed_another(kb):
    assert make_kb_splits.build(300, 60, make_kb_splits.HELDOUT_TYPES, seed=3) == kb
    assert make_kb_splits.build(300, 60, make_kb_splits.HELDOUT_TYPES, seed=4)[0] != kb[0]


def test_held_out_entities_and_types_are_never_trained_on(kb):
    rows, held_out = kb
    entities = {split: {row["entity"] for row in rows[split][0]} for split in rows}
    for split in HELD_OUT:
        assert len(entities[split]) == 60 and not entities[split] & entities["train"]
    assert not entities["heldout_entities"] & entities["heldout_templates"]
    types = {split: {row["type"] for row in rows[split][0]} for split in rows}
    assert types["heldout_types"] == set(held_out["heldout_types"]) == set(make_kb_splits.HELDOUT_TYPES)
    assert types["train"] == types["heldout_entities"] == types["heldout_templates"] == set(held_out["trained_types"])
    assert not types["train"] & types["heldout_types"]


def test_held_out_templates_state_and_ask_in_forms_no_trained_row_uses(kb):
    rows, held_out = kb
    for split, (evidence, questions) in rows.items():
        if split == "heldout_types":
            continue
        entity = {row["id"]: row["entity"] for row in evidence}
        for row in evidence:
            held = form_of(row) == held_out["heldout_forms"][f"{row['type']}/{row['attribute']}"]["sentence"]
            assert held == (split == "heldout_templates"), row
        for question in questions:
            phrasing = phrasing_of(question, entity[question["positive_ids"][0]])
            held = phrasing == held_out["heldout_forms"][f"{question['type']}/{question['attribute']}"]["question"]
            assert held == (split == "heldout_templates"), question


def test_every_question_is_answered_by_its_positive_among_its_splits_facts(kb):
    rows, _ = kb
    for evidence, questions in rows.values():
        facts = {row["id"]: row for row in evidence}
        for question in questions:
            positive = facts[question["positive_ids"][0]]
            assert question["answer"].lower() in positive["text"].lower()
            assert (positive["type"], positive["attribute"]) == (question["type"], question["attribute"])
            assert set(question["hard_negative_ids"]) <= set(facts) and len(question["hard_negative_ids"]) == 8


def test_every_type_and_attribute_has_forms_to_hold_out():
    assert len(TYPES) == 10
    for type_name, (_, attributes) in TYPES.items():
        assert len(attributes) == 5, type_name
        for attribute, (_, forms, phrasings) in attributes.items():
            assert len(forms) >= 4 and len(phrasings) >= 3, (type_name, attribute)
            assert all("{name}" in form and "{value}" in form for form in forms)
            assert all("{name}" in phrasing for phrasing in phrasings)


def test_the_command_writes_every_split_and_refuses_to_hold_out_every_type(tmp_path):
    script = str(LATENT_MEMORY / "make_kb_splits.py")
    run = subprocess.run([sys.executable, script, tmp_path, "--train", "70", "--heldout", "30"],
                         capture_output=True, text=True, check=True)
    assert "heldout_types: 150 facts, 150 questions" in run.stdout
    for split in make_kb_splits.SPLITS:
        assert (tmp_path / f"evidence_{split}.jsonl").is_file() and (tmp_path / f"questions_{split}.jsonl").is_file()
    assert json.loads((tmp_path / "kb.json").read_text())["heldout_types"] == list(make_kb_splits.HELDOUT_TYPES)
    every = subprocess.run([sys.executable, script, tmp_path, "--heldout-types", ",".join(TYPES)],
                           capture_output=True, text=True)
    assert every.returncode == 2 and "some but not all" in every.stderr
