"""Fail fast on a device the machine does not have, before Celery starts consuming."""

from __future__ import annotations

import os


class DeviceUnavailable(SystemExit):
    pass


def check_device(device: str, engine: str) -> None:
    """Raise DeviceUnavailable with a clear message if `device` cannot run `engine`."""
    if device == "cpu":
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)")
    if engine == "piper":
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise DeviceUnavailable(
                f"--device {device}: this onnxruntime has no CUDA provider "
                "(install onnxruntime-gpu on a CUDA machine, or use --device cpu)"
            )
        return
    try:
        import torch
    except ImportError as exc:
        raise DeviceUnavailable(
            f"--device {device}: torch is not installed (pip install 'ttsfleet[transformers]')"
        ) from exc
    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        raise DeviceUnavailable(
            f"--device {device}: torch sees no CUDA device (CUDA_VISIBLE_DEVICES={visible}, "
            f"torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
            "run on a GPU machine or use --device cpu"
        )
