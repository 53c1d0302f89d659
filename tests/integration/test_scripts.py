"""The Redis Lua scripts (tasks.scripts): every `.lua` file is used, compiles in a real
redis-server, and spells the keys tasks.keys names."""

from __future__ import annotations

import ast
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tasks import keys, scripts

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tasks", "api", "scheduler", "worker", "callbacks", "fleet", "client")


def lua_files() -> set[tuple[str, str]]:
    return {(p.parts[-3], p.stem) for pkg in PACKAGES for p in (ROOT / pkg).glob("lua/*.lua")}


def loaded_by_code() -> set[tuple[str, str]]:
    """Every `scripts.load("package", "name")` in the packages' Python source."""
    found: set[tuple[str, str]] = set()
    for pkg in PACKAGES:
        for source in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text(), str(source))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "scripts"
                ):
                    args = [a.value for a in node.args if isinstance(a, ast.Constant)]
                    assert len(args) == 2, f"{source}: scripts.load takes two literal names"
                    found.add((str(args[0]), str(args[1])))
    return found


def with_includes(roots: set[tuple[str, str]]) -> set[tuple[str, str]]:
    used, todo = set(), list(roots)
    while todo:
        script = todo.pop()
        if script not in used:
            used.add(script)
            todo += scripts.includes(*script)
    return used


def test_every_lua_file_is_loaded_by_some_code_path() -> None:
    files = lua_files()
    assert len(files) >= 19
    used = with_includes(loaded_by_code())
    assert files - used == set(), "orphan scripts"
    assert used - files == set(), "loaded but missing"


def test_every_script_compiles_in_redis(redis_client: redis.Redis) -> None:
    for package, name in sorted(lua_files()):
        sha = redis_client.script_load(scripts.load(package, name))
        assert redis_client.script_exists(sha) == [True], scripts.path(package, name)
    # The same check refuses a script that does not compile.
    with pytest.raises(redis.ResponseError):
        redis_client.script_load("local function broken(")


def test_release_active_spells_the_key_tasks_keys_names(redis_client: redis.Redis) -> None:
    head, tail = keys.TENANT_ACTIVE.split("{tenant}")
    assert f"'{head}' .. cjson.decode(job[1]) .. '{tail}'" in scripts.read(
        "tasks", "release_active"
    )
    # And frees the slot where tasks.quota holds it.
    job_key = keys.job_key("job-1")
    redis_client.hset(job_key, mapping={"tenant": json.dumps("acme"), "id": json.dumps("job-1")})
    redis_client.zadd(keys.tenant_active_key("acme"), {"job-1": 1e12, "job-2": 1e12})
    release = scripts.load("tasks", "release_active") + "release_active(KEYS[1])\n"
    redis_client.eval(release, 1, job_key)
    assert redis_client.zrange(keys.tenant_active_key("acme"), 0, -1) == ["job-2"]


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "luapkg"
    (root / "lua").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "luapkg", raising=False)
    yield root
    sys.modules.pop("luapkg", None)
    scripts.read.cache_clear()
    scripts.load.cache_clear()


def test_includes_come_first_once_in_order(package: Path) -> None:
    (package / "lua" / "a.lua").write_text("local function a() end\n")
    (package / "lua" / "b.lua").write_text("-- include: a.lua\nlocal function b() end")
    (package / "lua" / "main.lua").write_text("-- include: b.lua luapkg/a.lua\nreturn 1\n")
    assert scripts.load("luapkg", "main") == (
        "local function a() end\n"
        "-- include: a.lua\nlocal function b() end\n"
        "-- include: b.lua luapkg/a.lua\nreturn 1\n"
    )


def test_an_include_cycle_is_refused(package: Path) -> None:
    (package / "lua" / "a.lua").write_text("-- include: b.lua\n")
    (package / "lua" / "b.lua").write_text("-- include: a.lua\n")
    with pytest.raises(ValueError, match=re.escape("include cycle: luapkg/a.lua -> luapkg/b.lua")):
        scripts.load("luapkg", "a")


def test_status_index_spells_the_key_tasks_keys_names(redis_client: redis.Redis) -> None:
    head, middle, _ = keys.TENANT_STATUS_JOBS.replace("{status}", "{tenant}").split("{tenant}")
    assert f"'{head}' .. cjson.decode(job[1]) .. '{middle}'" in scripts.read(
        "tasks", "status_index"
    )
    job_key = keys.job_key("job-1")
    redis_client.hset(job_key, mapping={"tenant": json.dumps("acme"), "id": json.dumps("job-1")})
    redis_client.zadd(keys.tenant_status_jobs_key("acme", "queued"), {"job-1": 0})
    move = (
        scripts.load("tasks", "status_index") + "index_status(KEYS[1], 'queued', 'running', 60)\n"
    )
    redis_client.eval(move, 1, job_key)
    assert redis_client.zrange(keys.tenant_status_jobs_key("acme", "queued"), 0, -1) == []
    assert redis_client.zrange(keys.tenant_status_jobs_key("acme", "running"), 0, -1) == ["job-1"]
