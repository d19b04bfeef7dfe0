"""Reading the JSON and text files users hand us: every problem is an error naming the file and the fix."""
import json
from collections.abc import Iterator
from pathlib import Path

from .errors import EdgegenError


def read_text(path: Path, fix: str = "") -> str:
    """A UTF-8 text file; bad bytes are an error naming the file and the byte offset."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise EdgegenError(f"cannot read {path}: {e.strerror or e}{'; ' + fix if fix else ''}") from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EdgegenError(f"{path} is not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r})"
                           f"{'; ' + fix if fix else ''}") from None


def read_json_object(path: Path, fix: str) -> dict:
    """A UTF-8 JSON file holding one object."""
    text = read_text(path, fix)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise EdgegenError(f"{path} is not valid JSON ({e}); {fix}") from e
    if not isinstance(data, dict):
        raise EdgegenError(f"{path} holds a JSON {type(data).__name__}, not an object; {fix}")
    return data


def jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, row) for every non-blank line, each of which must be a JSON object."""
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise EdgegenError(f"{path}:{number} is not valid JSON ({e})") from e
        if not isinstance(row, dict):
            raise EdgegenError(f"{path}:{number} is not a JSON object; each line needs one")
        yield number, row
