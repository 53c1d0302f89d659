"""Redis Lua scripts: `.lua` files kept next to the package that runs them, read once.

Each package keeps its scripts in `<package>/lua/<name>.lua` (package data, so a wheel ships
them) and registers the text `load` returns with `register_script` once per client, as
dramatiq does with its `brokers/redis/*.lua`. A script that calls shared Lua functions names
their files on its first line, `-- include: active.lua tasks/outbox_enqueue.lua` (a bare name
is in the same package's `lua/`, `package/name.lua` in another's); `load` puts each included
file once, in that order and before the script, with the includes' own includes first. Files
are joined as they are: no Python value is spliced into Lua, so a key pattern a script needs
either comes in KEYS/ARGV or is spelled in the file and checked against tasks.keys by a test.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

INCLUDE = "-- include:"


def path(package: str, name: str) -> str:
    """`package/name.lua`: how includes and errors name a script."""
    return f"{package}/{name}.lua"


@cache
def read(package: str, name: str) -> str:
    """The text of `<package>/lua/<name>.lua` alone, without its includes."""
    return (files(package) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def includes(package: str, name: str) -> list[tuple[str, str]]:
    """The (package, name) of each file the script's first line includes, in order."""
    first = read(package, name).partition("\n")[0]
    if not first.startswith(INCLUDE):
        return []
    found: list[tuple[str, str]] = []
    for ref in first[len(INCLUDE) :].split():
        if not ref.endswith(".lua"):
            raise ValueError(f"{path(package, name)}: include {ref!r} is not a .lua file")
        owner, _, file = ref[: -len(".lua")].rpartition("/")
        found.append((owner or package, file))
    return found


@cache
def load(package: str, name: str) -> str:
    """The script `<package>/lua/<name>.lua` with the files it includes before it."""
    order: list[tuple[str, str]] = []

    def visit(script: tuple[str, str], chain: tuple[tuple[str, str], ...]) -> None:
        if script in chain:
            raise ValueError("include cycle: " + " -> ".join(path(*s) for s in (*chain, script)))
        for lib in includes(*script):
            visit(lib, (*chain, script))
        if script not in order:
            order.append(script)

    visit((package, name), ())
    return "".join(_ending_in_newline(read(*script)) for script in order)


def _ending_in_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"
