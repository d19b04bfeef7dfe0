"""Generation options, declared once: the API, the CLI flags, chat's /set and bench configurations agree."""
import subprocess
import sys
from dataclasses import fields

import numpy as np
import pytest

from edgegen import EdgegenError, GenerationOptions, load
from edgegen.chat import parse_setting
from edgegen.cli import main
from edgegen.runtime.options import parse_option

BAD_OPTIONS = [
    ({"temperature": float("nan")}, "temperature must be a finite number"),
    ({"temperature": 1e-310}, "temperature must be 0 .greedy. or at least"),
    ({"temperature": -1}, "temperature must be at least 0"),
    ({"max_new_tokens": 5.5}, "max_new_tokens must be a whole number"),
    ({"max_new_tokens": 0}, "max_new_tokens must be at least 1"),
    ({"threshold": "0.9"}, "threshold must be a finite number"),
    ({"stop": None}, "stop must be a list of strings"),
    ({"stop": ["ok", 3]}, "stop must be a list of strings"),
    ({"seed": -1}, "seed must be at least 0"),
    ({"top_p": 0}, "top_p must be above 0"),
    ({"top_p": 1.5}, "top_p must be above 0 and at most 1"),
    ({"mode": "fast"}, "mode must be one of ar, threshold, verify"),
    ({"block_size": "big"}, "block_size must be a whole number or 'auto'"),
    ({"block_size": True}, "block_size must be a whole number"),
    ({"full_logits": "yes"}, "full_logits must be True or False"),
]


@pytest.mark.parametrize("options,message", BAD_OPTIONS, ids=lambda v: str(v)[:40])
def test_bad_options_are_clear_errors_before_anything_runs(mars_model, options, message):
    with pytest.raises(EdgegenError, match=message):
        mars_model.generate("x = 1", **options)


def test_numpy_numbers_and_a_single_stop_string_are_fine(mars_model):
    result = mars_model.generate("x = 1", max_new_tokens=np.int64(4), temperature=np.float32(0.5), seed=np.int64(1),
                                 stop="\n\n\n")
    assert result.stats.new_tokens <= 4


@pytest.mark.parametrize("threads", [0, -2, 10**6, 2.5])
def test_threads_out_of_range_are_a_clear_error(exported, threads):
    with pytest.raises(EdgegenError, match="threads must be a whole number within 1..1024"):
        load(exported["mars"], provider="cpu", threads=threads)


def test_every_option_has_a_flag_and_a_chat_setting_that_parse_to_the_same_value(mars_model, capsys):
    samples = {"max_new_tokens": "7", "mode": "verify", "drafts": "lookup", "block_size": "auto",
               "max_block_size": "5", "threshold": "0.5", "acceptance": "margin", "max_accept": "2",
               "temperature": "0.7", "top_k": "3", "top_p": "0.9", "seed": "4", "stop": "END", "full_logits": "true"}
    assert set(samples) == {f.name for f in fields(GenerationOptions)} - {"response_format"}  # flags of its own
    for name, text in samples.items():
        value = parse_option(name, text)
        if name not in ("stop", "full_logits"):
            assert parse_setting(f"{name}={text}", {"mode": "threshold"} if name in (
                "threshold", "acceptance", "max_accept") else {}, mars_model)[name] == value
        with pytest.raises(SystemExit):  # --help lists the flag
            main(["generate", "--help"])
        assert "--" + name.replace("_", "-") in capsys.readouterr().out


def test_bad_flags_are_one_usage_line_not_a_traceback():
    for argv in (["generate", "--prompt", "x", "--temperature", "nan"], ["bench", "--repeat", "0"],
                 ["generate", "--prompt", "x", "--threads", "0"], ["rag", "ask", "s", "q", "--k", "0"]):
        run = subprocess.run([sys.executable, "-m", "edgegen", *argv], capture_output=True, text=True, check=False)
        assert run.returncode == 2 and "Traceback" not in run.stderr and "error: argument" in run.stderr, argv


def test_chat_settings_and_commands_without_arguments_say_how_to_use_them():
    commands = "/set block=auto\n/set\n/save\nhello\n/stats\n/quit\n"
    run = subprocess.run([sys.executable, "-m", "edgegen", "chat", "--max-new-tokens", "4"], input=commands,
                         capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "[block=auto]" in run.stderr and "[usage: /set KEY=VALUE" in run.stderr
    assert "[usage: /save FILE" in run.stderr
    assert "tokens_per_forward" in run.stderr and "unknown command" not in run.stderr
    assert not any(len(token) > 12 and token.replace(".", "").isdigit() for token in run.stderr.split())  # rounded
