"""`edgegen chat` in a real terminal (tmux): streaming, commands, Ctrl-C at the prompt, history."""
import re
import shutil
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)")


class Terminal:
    def __init__(self, command: list[str], env: dict, name: str):
        self.name = name
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "160", "-y", "50",
                        f"env {exports} {' '.join(command)}; echo EXITED $?; sleep 30"], check=True)

    def send(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name, "-S", "-200"], capture_output=True,
                              text=True, check=True).stdout

    def wait_for(self, text: str, count: int = 1, timeout: float = 60) -> str:
        return self.wait_until(lambda screen: screen.count(text) >= count, timeout,
                               f"{text!r} did not appear {count} time(s)")

    def wait_until(self, condition, timeout: float = 60, failure: str = "condition not met") -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            screen = self.screen()
            if condition(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{failure}; screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def terminal(exported, tmp_path):
    history = tmp_path / "history"
    term = Terminal([sys.executable, "-m", "edgegen", "chat", str(exported["mars"]), "--max-new-tokens", "12",
                     "--system", "'You are terse.'"], {"EDGEGEN_HISTORY": history}, f"edgegen-test-{time.time_ns()}")
    term.wait_for("/help for commands")
    yield term, history
    term.close()


def test_chat_streams_answers_and_obeys_commands(terminal, tmp_path):
    term, history = terminal
    term.send("hello there", "Enter")
    term.wait_for("tokens/forward")
    term.send("/set threshold=0.5", "Enter")
    term.wait_for("[threshold=0.5]")
    term.send("/set mode=verify", "Enter")
    term.wait_for("[mode=verify]")
    term.send("and again", "Enter")
    screen = term.wait_for("tokens/forward", count=2)
    assert "tokens/s" in screen and "TTFT" in screen
    term.send("/stats", "Enter")
    term.wait_until(lambda screen: re.search(r"mode +verify", screen), failure="/stats shows no mode")
    saved = tmp_path / "conversation.json"
    term.send(f"/save {saved}", "Enter")
    term.wait_for("[saved 5 messages")
    term.send("/reset", "Enter")
    term.wait_for("[new conversation]")
    term.send("/set nonsense=1", "Enter")
    term.wait_for("unknown setting 'nonsense'")
    term.send("C-c")
    term.wait_for("press Ctrl-C again to leave")
    term.send("C-c")
    term.wait_for("EXITED 0")
    assert "hello there" in history.read_text()
    assert '"role": "system"' in saved.read_text()


def test_quit_command_and_end_of_input_leave(terminal):
    term, _ = terminal
    term.send("/quit", "Enter")
    term.wait_for("EXITED 0")


@pytest.fixture(scope="module")
def endless_model(tmp_path_factory):
    """A model with no end-of-sequence token, ~250 tokens/s on one thread: its answers last until stopped."""
    import json

    from tiny_models import save_model

    from edgegen.export import export_model

    root = tmp_path_factory.mktemp("endless")
    src = save_model(root / "src", hidden_size=256, num_hidden_layers=4, intermediate_size=512,
                     max_position_embeddings=8192)
    export_model(src, root / "model", quiet=True, verify=False)
    manifest = root / "model" / "edgegen.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "eos_token_ids": []}))
    return root / "model"


def test_ctrl_c_stops_the_answer_and_keeps_the_chat(endless_model, tmp_path):
    term = Terminal([sys.executable, "-m", "edgegen", "chat", str(endless_model), "--threads", "1",
                     "--max-context", "8192", "--max-new-tokens", "4000"], {"EDGEGEN_HISTORY": tmp_path / "history"},
                    f"edgegen-cc-{time.time_ns()}")
    try:
        term.wait_for("/help for commands")
        term.send("first question", "Enter")
        term.wait_until(answer_is_streaming)
        term.send("C-c")
        screen = term.wait_for("cancelled]")
        assert "max_new_tokens]" not in screen  # stopped by the key, not by running out of tokens
        assert "press Ctrl-C again" not in screen  # the answer stopped, the chat did not
        term.send("/reset", "Enter")
        term.wait_for("[new conversation]")
        term.send("/quit", "Enter")
        term.wait_for("EXITED 0")
    finally:
        term.close()


def answer_is_streaming(screen: str) -> bool:
    """Some answer text is on screen below the question, and no footer yet."""
    after = screen.split("> first question", 1)[-1] if "> first question" in screen else ""
    return bool(after.strip()) and "tokens/forward" not in after
