"""A progress line on stderr: redrawn in place on a terminal, a plain line now and then elsewhere (logs, CI)."""
import sys


class StatusLine:
    def __init__(self, every: int):
        self.every, self.shown = max(1, every), 0
        self.tty = sys.stderr.isatty()

    def show(self, text: str, last: bool = False) -> None:
        """Redraw the line (ending it when `last`); off a terminal, print every `every`-th text and the last."""
        self.shown += 1
        if self.tty:
            print("\r" + text, end="\n" if last else "", file=sys.stderr, flush=True)
        elif last or self.shown % self.every == 0:
            print(text, file=sys.stderr, flush=True)
