"""The Dockerfiles, read without a container engine: who runs, how health is checked,
where models live, which torch, and that every COPY source reaches the build context."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.deploy.manifests import DOCKERFILES, dockerfile_instructions, final_stage


def dockerignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pattern.removeprefix("**/"))
        or fnmatch.fnmatch(Path(prefix).name, pattern.removeprefix("**/"))
        for pattern in patterns
        for prefix in prefixes
    )


def test_both_images_exist() -> None:
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.cuda"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_runs_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    users = [
        args for ins, args in final_stage(dockerfile_instructions(dockerfile)) if ins == "USER"
    ]
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_declares_a_health_check_and_the_model_volume(dockerfile: Path) -> None:
    stage = final_stage(dockerfile_instructions(dockerfile))
    [health] = [args for ins, args in stage if ins == "HEALTHCHECK"]
    assert " CMD " in f" {health} " and not health.upper().startswith("NONE")
    volumes = " ".join(args for ins, args in stage if ins == "VOLUME")
    assert '"/models"' in volumes


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_installs_the_server_with_the_piper_and_transformers_extras(dockerfile: Path) -> None:
    runs = [args for ins, args in dockerfile_instructions(dockerfile) if ins == "RUN"]
    assert any("pip install '.[server,piper,transformers]'" in run for run in runs)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copied_path_is_in_the_build_context(dockerfile: Path) -> None:
    for ins, args in dockerfile_instructions(dockerfile):
        if ins != "COPY" or "--from=" in args:
            continue
        *sources, _ = [w for w in shlex.split(args) if not w.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not dockerignored(source), f"{source} is excluded by .dockerignore"


def test_dockerignore_check_sees_an_excluded_path() -> None:
    assert dockerignored("tests/conftest.py") and dockerignored("worker/__pycache__/x.pyc")
    assert not dockerignored("worker/task.py")


def test_cpu_image_pins_cpu_torch_from_the_cpu_wheel_index() -> None:
    dockerfile = (ROOT / "deploy/docker/Dockerfile.cpu").read_text()
    assert re.search(
        r"pip install --index-url https://download\.pytorch\.org/whl/cpu torch==2\.13\.0",
        dockerfile,
    )


def test_cuda_image_builds_on_a_cuda_base() -> None:
    instructions = dockerfile_instructions(ROOT / "deploy/docker/Dockerfile.cuda")
    args = {a.split("=")[0]: a.split("=", 1)[1] for i, a in instructions if i == "ARG" and "=" in a}
    bases = [a.replace("${CUDA_IMAGE}", args["CUDA_IMAGE"]) for i, a in instructions if i == "FROM"]
    assert bases and all(base.startswith("nvidia/cuda:") for base in bases)
