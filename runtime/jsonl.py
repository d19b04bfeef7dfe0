"""Reading JSONL files that users write: every bad line is an error naming the file and line."""
import json
from collections.abc import Iterator
from pathlib import Path

from .errors import EdgegenError


def jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, row) for every non-blank line, each of which must be a JSON object."""
    with Path(path).open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise EdgegenError(f"{path}:{number} is not valid JSON ({e})") from e
            if not isinstance(row, dict):
                raise EdgegenError(f"{path}:{number} is not a JSON object; each line needs one")
            yield number, row
