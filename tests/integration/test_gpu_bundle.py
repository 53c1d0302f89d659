"""The GPU run starts on a machine that holds only the GPU image's packages.

A venv with only image packages (CPU torch stands in for CUDA torch) gets the bundle that
`make gpu-bundle` builds, installed as the GPU machine installs it (`pip install --no-index
--no-deps --target`, PYTHONPATH), and runs bench/gpu_run.sh, the script the lent machine
runs, with smoke sizes on the CPU: the engine benchmark and the whole fleet, redis-server
from the bundle's Debian packages. The image has Python 3.12; the bundle here is built by
the same code for this machine's Python (no CPU torch wheel for 3.12 here).

The stand-in venv takes a minute or more to build, so it is kept in build/ and rebuilt only
when what it must hold changes. Deselect with `-m 'not gpu_bundle'`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bundle import IMAGE, STANDIN, normalize
from tests.conftest import ROOT

pytestmark = [pytest.mark.gpu_bundle, pytest.mark.timeout(1200)]

PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
# Smoke sizes; the GPU run's time limits are lifted: a loaded box must not cut the sweep.
SMOKE = [
    "--device", "cpu", "--size", "tiny", "--dtypes", "float32", "--max-batch", "2",
    "--max-forward-s", "600", "--sweep-budget-s", "600", "--jobs", "8", "--idle-jobs", "3",
    "--saturate-s", "200",
]  # fmt: skip


def clean_env() -> dict[str, str]:
    """No trace of this project's venv: what runs sees only what it is given."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(
        p for p in env["PATH"].split(os.pathsep) if not p.startswith(sys.prefix)
    )
    return env


def standin(from_image: list[str]) -> Path:
    """A venv of image packages only: STANDIN plus those the bundle leaves to the image."""
    wanted = sorted({*STANDIN, *from_image})
    digest = hashlib.sha256(json.dumps([sys.version, wanted]).encode()).hexdigest()[:12]
    venv = ROOT / "build" / "gpu-image-venv"
    python = venv / "bin" / "python"
    if (venv / ".spec").is_file() and (venv / ".spec").read_text() == digest:
        return python
    subprocess.run(["rm", "-rf", str(venv)], check=True)
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True, env=clean_env())
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *wanted], check=True, env=clean_env()
    )
    (venv / ".spec").write_text(digest)
    return python


def installed(python: Path) -> set[str]:
    listing = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        check=True, capture_output=True, text=True, env=clean_env(),
    )  # fmt: skip
    return {normalize(p["name"]) for p in json.loads(listing.stdout)}


def test_the_gpu_run_starts_with_only_the_bundle_beside_the_image(tmp_path: Path) -> None:
    corpus = tmp_path / "sentences.txt"
    corpus.write_text("hi there.\nokay then.\nhello world.\nthe end.\n")
    bundle = tmp_path / "bundle"
    built = subprocess.run(
        [sys.executable, "-m", "bench.bundle", "--dest", str(bundle),
         "--python-version", PYTHON_VERSION, "--corpus", str(corpus)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert "bash bench/gpu_run.sh" in built.stdout
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert {"celery", "pydantic", "pydantic-settings", "fastapi", "uvicorn"} <= set(
        manifest["wheels"]
    )
    assert not set(manifest["wheels"]) & IMAGE
    wheels = {normalize(w.name.split("-")[0]) for w in (bundle / "wheels").glob("*.whl")}
    assert wheels == set(manifest["wheels"])

    python = standin(manifest["from_image"])
    have = installed(python)
    assert have <= IMAGE, f"the stand-in holds packages the image lacks: {have - IMAGE}"
    assert "celery" not in have and "pydantic" not in have

    out = tmp_path / "out"
    run = subprocess.run(
        ["bash", "bench/gpu_run.sh", str(bundle), str(out), *SMOKE],
        # One torch thread: spinning OpenMP threads crawl on a shared 2-core box.
        cwd=ROOT, env={**clean_env(), "PYTHON": str(python), "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=1000,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    # The fleet's Redis is the one unpacked from the bundle's .deb, not the system's.
    redis_line = next(line for line in run.stdout.splitlines() if line.startswith("redis-server:"))
    assert "/redis/bin/redis-server" in redis_line and "v=7" in redis_line

    engine = json.loads((out / "gpu.json").read_text())["float32"]
    assert set(engine["batches"]) == {"1", "2"} and engine["knee"] in (1, 2)
    assert engine["autotune_knee"] in (1, 2)
    fleet = json.loads((out / "fleet.json").read_text())
    saturation = fleet["saturation"]
    assert saturation["succeeded"] == 8 and saturation["failed"] == 0
    assert saturation["audio_s_per_s"] > 0
    # Every saturation job went through a batch the batcher formed (logged by the worker).
    assert sum(int(size) * n for size, n in fleet["batches_formed"].items()) >= 8
    assert fleet["idle_latency_s"]["jobs"] == 3
    assert fleet["gpu_recycling"]["applicable"] is False
    assert (out / "gpu.log").is_file()
