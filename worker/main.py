"""`ttsfleet worker`: start a synthesis worker for one model on one device.

The start-up policy lives here, beside what it starts: the device is pinned before any
CUDA library loads, the settings are fixed for this process (and the prefork children it
forks) with `tasks.settings.install`, and the pool is chosen from the engine.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tasks.settings import Settings, get_settings, install
from tasks.tenants import refuse_weak_secrets


@dataclass(frozen=True)
class WorkerOptions:
    """What the command line says about this worker; the rest comes from `Settings`."""

    model: str | None
    device: str
    pool: str
    concurrency: int | None
    ready_file: str | None
    metrics_port: int | None
    loglevel: str
    supervised: bool

    def argv(self) -> list[str]:
        """These options as `worker.main` arguments, for the process the supervisor runs."""
        args = ["--device", self.device, "--pool", self.pool, "--loglevel", self.loglevel]
        for flag, value in (
            ("--model", self.model),
            ("--concurrency", self.concurrency),
            ("--ready-file", self.ready_file),
            ("--metrics-port", self.metrics_port),
        ):
            if value is not None:
                args += [flag, str(value)]
        return args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=None, help="a model name from TTSFLEET_MODELS (default: the first)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda:N (default: cpu)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="prefork children or task threads (default: one per core on the CPU, "
        "twice the batch size for batching engines)",
    )
    parser.add_argument(
        "--pool",
        default="auto",
        choices=["auto", "prefork", "threads", "solo"],
        help="auto: threads + batcher for padded-batch engines, prefork otherwise",
    )
    parser.add_argument("--ready-file", default=None, help="touched once the model is warm")
    parser.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port"
    )
    parser.add_argument("--loglevel", default="INFO", help="Celery's log level (default: INFO)")
    # Set by the supervisor for the worker process it runs (worker.supervisor).
    parser.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)


def options_from(args: argparse.Namespace) -> WorkerOptions:
    return WorkerOptions(
        model=args.model,
        device=args.device,
        pool=args.pool,
        concurrency=args.concurrency,
        ready_file=args.ready_file,
        metrics_port=args.metrics_port,
        loglevel=args.loglevel,
        supervised=args.supervised,
    )


def pin_device(device: str) -> str:
    """The device the engine sees: `cuda:N` becomes the only GPU of this process, `cuda:0`.

    CUDA_VISIBLE_DEVICES is read by the CUDA runtime, so it must be set before torch or
    onnxruntime's CUDA provider loads: that is why the worker's imports come after it."""
    if device.startswith("cuda"):
        os.environ["CUDA_VISIBLE_DEVICES"] = device.partition(":")[2] or "0"
        return "cuda:0"
    if device != "cpu":
        raise SystemExit(f"--device is cpu or cuda:N, not {device!r}")
    return "cpu"


def worker_settings(base: Settings, options: WorkerOptions, device: str) -> Settings:
    """This worker's settings: the environment's, with what its command line names."""
    update: dict[str, object] = {"worker_device": device, "worker_supervised": options.supervised}
    if options.model:
        update["worker_model"] = options.model
    if options.ready_file:
        update["worker_ready_file"] = Path(options.ready_file).resolve()
    if options.metrics_port is not None:
        update["worker_metrics_port"] = options.metrics_port
    return base.model_copy(update=update)


def run(options: WorkerOptions) -> int:
    """Start the worker (or, for a pool that cannot recycle itself, its supervisor)."""
    device = pin_device(options.device)
    settings = install(worker_settings(get_settings(), options, device))
    refuse_weak_secrets(settings)

    from celery.utils.nodenames import host_format

    from tasks import keys
    from tasks.app import app
    from worker import telemetry
    from worker.device import check_device
    from worker.engines import Batching, build_engine
    from worker.metric_files import prepare as prepare_metric_files

    # Before anything imports prometheus_client.
    prepare_metric_files(settings.home, serving=settings.worker_metrics_port is not None)
    model = settings.serving_model()
    if model not in settings.models:
        raise SystemExit(
            f"model {model!r} is not in TTSFLEET_MODELS ({', '.join(settings.models)})"
        )
    spec = settings.models[model]
    check_device(options.device, spec.engine)
    pool, concurrency = options.pool, options.concurrency
    if pool == "auto":
        if build_engine(spec).batching is Batching.PADDED:
            # Task threads feed one batcher; twice the batch lets the next one fill meanwhile.
            pool, concurrency = "threads", concurrency or 2 * settings.batch_max_size
        else:
            # One single-thread engine per core measured best for the CPU voice (FINDINGS.md).
            pool = "prefork"
            concurrency = concurrency or ((os.cpu_count() or 1) if device == "cpu" else 1)
    concurrency = concurrency or 1
    if pool != "prefork" and not settings.worker_supervised:
        from worker.supervisor import supervise

        # This process runs the engine itself, so recycling replaces it: supervise it.
        return supervise([*options.argv(), "--supervised"])
    node = host_format(f"{model}-{options.device.replace(':', '')}@%h")
    telemetry.install(settings, node, keys.synth_queue(model), pool, concurrency)
    app.conf.worker_proc_alive_timeout = 120  # children load a model before they report in
    if pool == "prefork":
        from worker.recycle import LIMIT_KB

        # Each child runs one job at a time; one more message held per child means the next
        # job is already local when a child finishes (measured: fewer idle gaps between jobs).
        app.conf.worker_prefetch_multiplier = 2
        # Children recycle by worker.recycle's policy, through billiard's memory check.
        app.conf.worker_max_memory_per_child = LIMIT_KB
    # A JSON log has no room for Celery's banner.
    quiet = ["--quiet"] if settings.log_format == "json" else []
    app.worker_main(
        [
            *quiet, "worker", "-Q", keys.synth_queue(model), "-n", node, "-c", str(concurrency),
            "-P", pool, "-l", options.loglevel, "-E", "--without-gossip", "--without-mingle",
        ]
    )  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m worker.main ...`: the supervisor runs the worker it watches this way."""
    parser = argparse.ArgumentParser(prog="ttsfleet worker", description=__doc__)
    add_arguments(parser)
    return run(options_from(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
