"""`.ttsfleet/env`: the settings `make up` saves for the `ttsfleet` command and for shells.

Written as `export NAME=value` lines, values quoted for a POSIX shell, so that after
`source .ttsfleet/env` the programs the shell starts (Python included) see them; read back
with or without `export` (files written before it was added) and unquoted the same way.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

# `NAME=value`, after `export ` in files written since it was added.
_ASSIGNMENT = re.compile(r"\s*(?:export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=(?P<value>.*)")
HEADER = "# Written by `ttsfleet up` (make up): `source` it, or let ttsfleet read it.\n"


def env_file_path(home: Path | None = None) -> Path:
    """`env` under `home`, else under `TTSFLEET_HOME` (`.ttsfleet`)."""
    return (home or Path(os.environ.get("TTSFLEET_HOME", ".ttsfleet"))) / "env"


def _unquoted(value: str) -> str:
    """A value as the shell reads it; one that is not a single shell word stays as written."""
    try:
        words = shlex.split(value)
    except ValueError:
        return value
    return words[0] if len(words) == 1 else value


def read_env_file(path: Path) -> dict[str, str]:
    """`export NAME=value` and `NAME=value` lines; comments and other lines are skipped."""
    values: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            found = _ASSIGNMENT.fullmatch(line)
            if found:
                values[found["name"]] = _unquoted(found["value"].strip())
    return values


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Replace the file whole, readable by its owner only: it holds an API key and maybe a
    Redis password."""
    lines = [f"export {name}={shlex.quote(value)}\n" for name, value in values.items()]
    partial = path.with_name(path.name + ".part")
    partial.unlink(missing_ok=True)  # made anew below: never readable by others, not even briefly
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(HEADER + "".join(lines))
    partial.replace(path)
