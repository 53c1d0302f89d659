"""The GPU bundle: what a lent GPU machine lacks to run bench.gpu, carried as files.

    python -m bench.bundle [--dest .gpu-bundle] [--python-version 3.12]   # `make gpu-bundle`

The lent machine's image (/work/.library/device/KINDS.md) holds Python 3.12, CUDA torch,
transformers and about 200 other packages, and reaches no registry. This writes into `dest`:
`wheels/`, the wheels of the project's dependencies that image lacks (pip resolves them for
the target Python on manylinux x86_64 and downloads only binaries); `debs/`, Debian's
redis-server and the libraries it links (unpacked outside `/` there, never installed);
`sentences.txt`, the corpus (../shared does not travel with the working tree). It prints the
one command that runs everything there (bench/gpu_run.sh). Under 64 MiB in all, the most
that travels with one call.

tests/integration/test_gpu_bundle.py builds the same bundle for this machine's Python and
runs that script in a venv holding only image packages: green means the GPU run starts.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

from bench.run import CORPUS, ROOT

LIMIT_BYTES = 64 * 2**20

# The 'cuda' image's Python packages (KINDS.md, read on 2026-11-17), normalized names.
IMAGE = frozenset(
    """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn
einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec
gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio
iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml
markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda
numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13
nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum
opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip
pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo
pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov
pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests
rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn
sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions
typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split()
)

# Dependencies the GPU runs never import, so they stay behind. Found by running the smoke
# run with an import tracer in every process of the fleet: each other wheel was imported.
LEFT_OUT = {
    "boto3": "S3 storage only: the benchmark's fleet stores audio in files",
    "watchfiles": "uvicorn --reload only",
    "websockets": "the API has no WebSocket routes",
    "pycparser": "cffi parses C only to compile; soundfile ships its compiled module",
}

# Debian's redis-server and every library it links beyond glibc and libstdc++: the image is
# not known to hold them, and they are unpacked next to the binary, not into `/`.
DEBS = (
    "redis-server", "redis-tools", "liblzf1", "libjemalloc2", "libatomic1", "libssl3",
    "libsystemd0", "libcap2", "libgcrypt20", "libgpg-error0", "liblz4-1", "libzstd1", "liblzma5",
)  # fmt: skip

# A CPU stand-in for the image, for the test: only image packages (those the bundle relies on
# join them). CPU torch stands in for CUDA torch; the caps keep newer releases from pulling
# in packages the image lacks (typer >= 0.29 needs pydantic, python-dateutil 4 tzdata).
STANDIN = (
    "torch==2.13.0", "transformers==5.17.0", "numpy", "safetensors", "tokenizers", "onnxruntime",
    "httpx", "rich", "prometheus-client", "pyyaml", "requests", "typer<0.29",
    "python-dateutil<3",
)  # fmt: skip

PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35)] + [
    "manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64",
]  # fmt: skip


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements() -> list[str]:
    """The project's runtime dependencies (the client's and the server extra's), less
    those the GPU runs leave out."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = []
    for spec in [*project["dependencies"], *project["optional-dependencies"]["server"]]:
        name = normalize(re.split(r"[\[<>=!~ ;]", spec, maxsplit=1)[0])
        if name not in LEFT_OUT:
            wanted.append(spec)
    return wanted


def target_options(python_version: str) -> list[str]:
    abi = "cp" + python_version.replace(".", "")
    options = ["--only-binary=:all:", "--python-version", python_version, "--implementation"]
    options += ["cp", "--abi", abi, "--abi", "abi3", "--abi", "none"]
    for platform in PLATFORMS:
        options += ["--platform", platform]
    return options


def pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True
    )


def resolve(python_version: str) -> dict[str, str]:
    """name -> version of everything `requirements()` needs, the image's packages too."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pip(
            "install", "--dry-run", "--ignore-installed", "--report", str(report),
            "--target", str(Path(tmp) / "unused"), *target_options(python_version),
            *requirements(),
        )  # fmt: skip
        found = json.loads(report.read_text())["install"]
    return {normalize(i["metadata"]["name"]): i["metadata"]["version"] for i in found}


def download_debs(dest: Path) -> None:
    """Debian's packages, downloaded (not installed) with apt-get."""
    dest.mkdir(parents=True)
    # apt's sandbox user must be able to write where it downloads.
    dest.chmod(0o777)
    subprocess.run(["apt-get", "download", "-qq", *DEBS], cwd=dest, check=True)


def unpack_deb(deb: Path, root: Path) -> None:
    """`dpkg-deb -x` for machines without dpkg: a .deb is an ar archive holding data.tar.*."""
    data = deb.read_bytes()
    offset = 8  # "!<arch>\n"
    while offset < len(data):
        name = data[offset : offset + 16].decode().strip().rstrip("/")
        size = int(data[offset + 48 : offset + 58].decode())
        body = data[offset + 60 : offset + 60 + size]
        if name.startswith("data.tar"):
            with tempfile.NamedTemporaryFile(suffix=name) as member:
                member.write(body)
                member.flush()
                with tarfile.open(member.name) as tar:
                    tar.extractall(root, filter="tar")
            return
        offset += 60 + size + size % 2
    raise ValueError(f"{deb} holds no data.tar")


def build(dest: Path, python_version: str, corpus: Path = CORPUS) -> dict[str, str]:
    """Write the bundle into `dest` (replacing an earlier one); the pinned wheels."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    resolved = resolve(python_version)
    pins = {n: v for n, v in sorted(resolved.items()) if n not in IMAGE and n not in LEFT_OUT}
    pip(
        "download", "--no-deps", "-d", str(dest / "wheels"), *target_options(python_version),
        *(f"{name}=={version}" for name, version in pins.items()),
    )  # fmt: skip
    download_debs(dest / "debs")
    shutil.copy(corpus, dest / "sentences.txt")
    (dest / "bundle.json").write_text(
        json.dumps(
            {
                "python": python_version,
                "wheels": pins,
                "from_image": sorted(set(resolved) & IMAGE),
                "debs": list(DEBS),
            },
            indent=2,
        )
    )
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    if size > LIMIT_BYTES:
        raise SystemExit(f"the bundle is {size / 2**20:.1f} MiB, over the 64 MiB that travels")
    return pins


def carried(dest: Path) -> Path:
    """`dest` as the device tool's `carry` names it: relative to the repository."""
    return dest.resolve().relative_to(ROOT) if dest.resolve().is_relative_to(ROOT) else dest


def command(dest: Path) -> str:
    """The one command for the device tool's `run`, with `carry: ["<dest>"]`."""
    return f'bash bench/gpu_run.sh {carried(dest)} "$OUT"'


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dest", type=Path, default=ROOT / ".gpu-bundle")
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--unpack", nargs=2, metavar=("DEB", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.unpack:
        unpack_deb(Path(args.unpack[0]), Path(args.unpack[1]))
        return
    pins = build(args.dest, args.python_version, args.corpus)
    size = sum(p.stat().st_size for p in args.dest.rglob("*") if p.is_file()) / 2**20
    print(f"{len(pins)} wheels for Python {args.python_version}: {', '.join(pins)}")
    print(f"{len(DEBS)} Debian packages for redis-server; {size:.1f} MiB in {args.dest}")
    print(f'\nOn the lent GPU machine (device tool `run`, carry: ["{carried(args.dest)}"]):\n')
    print(f"  {command(args.dest)}\n")
    print("It is sized for 5 minutes (give it timeout_s 420); gpu.json, fleet.json and gpu.log")
    print("come back from $OUT.")


if __name__ == "__main__":
    main()
