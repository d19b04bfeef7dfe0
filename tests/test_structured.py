"""Structured output: every answer parses and fits its schema, and verify decodes exactly constrained AR."""
import json
import re

import pytest

pytest.importorskip("llguidance")

from edgegen import EdgegenError  # noqa: E402

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["n", "words", "kind", "digits", "inner"],
          "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 99999},
                         "words": {"type": "string", "maxLength": 20},
                         "kind": {"enum": ["small", "big"]},
                         "digits": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9},
                                    "maxItems": 4},
                         "inner": {"type": "object", "additionalProperties": False, "required": ["ok"],
                                   "properties": {"ok": {"type": "boolean"}}}}}
FORMAT = {"type": "json_schema", "json_schema": {"name": "number", "schema": SCHEMA}}
QUESTIONS = ["Write 4821 in words.", "Write 566 in words.", "Explain what json.loads does."]


def fits(value: dict) -> bool:
    """SCHEMA, checked by hand."""
    return (set(value) == {"n", "words", "kind", "digits", "inner"} and isinstance(value["n"], int)
            and 0 <= value["n"] <= 99999 and isinstance(value["words"], str) and len(value["words"]) <= 20
            and value["kind"] in ("small", "big") and len(value["digits"]) <= 4
            and all(isinstance(d, int) and 0 <= d <= 9 for d in value["digits"]) and value["inner"] in (
                {"ok": True}, {"ok": False}))


@pytest.fixture(scope="module")
def bundled():
    import edgegen

    return edgegen.load()


@pytest.mark.parametrize("question", QUESTIONS)
def test_every_answer_parses_fits_the_schema_and_verify_equals_constrained_ar(bundled, question):
    messages = [{"role": "user", "content": question}]
    texts = {mode: bundled.generate(messages, max_new_tokens=200, response_format=FORMAT, **options).text
             for mode, options in {"ar": {"mode": "ar"}, "verify": {"mode": "verify"},
                                   "verify4": {"mode": "verify", "block_size": 4},
                                   "threshold": {"threshold": 0.5}}.items()}
    assert texts["ar"] == texts["verify"] == texts["verify4"]
    for text in texts.values():
        assert fits(json.loads(text)), text


def test_json_objects_regexes_and_grammars(bundled):
    number = [{"role": "user", "content": "Write 4821 in words."}]
    assert isinstance(json.loads(bundled.generate(number, max_new_tokens=150, response_format={
        "type": "json_object"}).text), dict)
    assert re.fullmatch(r"[0-9]{3}-[a-z]{1,8}", bundled.generate(
        "x = 1", max_new_tokens=30, response_format={"type": "regex", "regex": "[0-9]{3}-[a-z]{1,8}"}).text)
    yes_no = bundled.generate([{"role": "user", "content": "Write 12 in words."}], max_new_tokens=10,
                              response_format={"type": "grammar", "grammar": 'start: "yes" | "no"'})
    assert yes_no.text in ("yes", "no")


@pytest.mark.parametrize("response_format, message", [
    ({"type": "json_schema", "json_schema": {"schema": {"type": "wobbly"}}}, "the grammar was rejected"),
    ({"type": "json_schema"}, "needs"),
    ({"type": "xml"}, "response_format must be"),
    ("json", "must be a dict with a 'type'"),
])
def test_a_format_the_library_rejects_is_a_clear_error(bundled, response_format, message):
    with pytest.raises(EdgegenError, match=message):
        bundled.generate("x = 1", max_new_tokens=4, response_format=response_format)


def test_the_cli_flags(tmp_path):
    import subprocess
    import sys

    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    run = subprocess.run([sys.executable, "-m", "edgegen", "generate", "--chat", "--prompt", "Write 4821 in words.",
                          "--json-schema", str(tmp_path / "schema.json"), "--json", "--max-new-tokens", "200"],
                         capture_output=True, text=True, check=True, timeout=120)
    assert fits(json.loads(json.loads(run.stdout)["text"]))
    regex = subprocess.run([sys.executable, "-m", "edgegen", "generate", "--prompt", "x", "--regex", "(yes|no)",
                            "--json"], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(regex.stdout)["text"] in ("yes", "no")
