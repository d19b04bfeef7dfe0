"""argparse types the commands share: each turns a bad value into argparse's one-line usage error."""
import argparse

from .runtime.errors import EdgegenError
from .runtime.options import parse_option


def whole_number(low: int, high: int | None = None):
    """A whole number within low..high."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or high is not None and value > high:
            raise argparse.ArgumentTypeError(f"expected {low}..{high if high is not None else ''}, got {value}")
        return value
    return parse


def option_parser(name: str):
    """A generation option, parsed and checked by its declaration (runtime/options.py)."""
    def parse(text: str):
        try:
            return parse_option(name, text)
        except EdgegenError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix("invalid generation option: ")) from None
    return parse
