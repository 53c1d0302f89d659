"""The transformers engine: VITS-family checkpoints (e.g. MMS-TTS) from a local directory.

One padded forward pass per batch with the attention mask; each waveform is trimmed to
its `sequence_lengths`. Batch invariance: the HiFi-GAN decoder's convolutions see the
frames after an item's end, which in a batch are padding (zero input, bias-filled after the
first layer) and alone are the convolution's own zero padding; the last ~360 samples of a
short item then differ with its neighbours (FINDINGS.md). A pre-hook on the decoder appends
`tail_frames` zero frames to every input, alone or batched, so an item's tail always sees
the same context, and outputs match alone vs batched to float precision (tested).

Word timings: `VitsModelOutput` has no durations, so a hook on the duration predictor keeps
its log-durations and `_durations` applies the model's own rule to them (ceil(exp(d) *
mask / speaking_rate) frames per token); with the tokenizer's blanks between characters,
a word spans its characters' tokens (`word_spans`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tasks.errors import EngineError, InvalidText
from tasks.settings import ModelSpec
from worker.engines import Audio, Batching, SynthesisRequest, Word

DTYPES = ("float32", "float16", "bfloat16")


class TransformersEngine:
    """Options: `checkpoint` (directory, required), `dtype` (float32|float16|bfloat16),
    `noise_scale`, `noise_scale_duration` (default: the checkpoint's), `seed` (0),
    `tail_frames` (8)."""

    def __init__(self, spec: ModelSpec) -> None:
        options: dict[str, Any] = spec.options
        if "checkpoint" not in options:
            raise EngineError("the transformers engine needs options.checkpoint (a directory)")
        self._checkpoint = Path(options["checkpoint"])
        self._dtype_name = str(options.get("dtype", "float32"))
        if self._dtype_name not in DTYPES:
            raise EngineError(f"dtype must be one of {DTYPES}, not {self._dtype_name!r}")
        self._noise_scale: float | None = options.get("noise_scale")
        self._noise_scale_duration: float | None = options.get("noise_scale_duration")
        self._seed = int(options.get("seed", 0))
        self._tail_frames = int(options.get("tail_frames", 8))
        self._model: Any = None
        self._tokenizer: Any = None
        self._device = "cpu"
        self._version = ""

    @property
    def batching(self) -> Batching:
        return Batching.PADDED

    @property
    def version(self) -> str:
        return self._version

    @property
    def sample_rate(self) -> int:
        return int(self._model.config.sampling_rate)

    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in sorted(self._checkpoint.iterdir()):
            if path.is_file():
                stat = path.stat()
                digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        options = [self._dtype_name, self._noise_scale, self._noise_scale_duration, self._seed]
        digest.update(json.dumps([options, self._tail_frames]).encode())
        return "vits-" + digest.hexdigest()[:16]

    def load(self, device: str) -> None:
        import torch
        import transformers

        hf: Any = transformers  # untyped entry points
        hf.utils.logging.disable_progress_bar()
        if not (self._checkpoint / "config.json").is_file():
            raise EngineError(f"no checkpoint at {self._checkpoint} (config.json missing)")
        dtype = getattr(torch, self._dtype_name)
        self._device = device
        self._tokenizer = hf.AutoTokenizer.from_pretrained(self._checkpoint, local_files_only=True)
        model = hf.VitsModel.from_pretrained(self._checkpoint, local_files_only=True, dtype=dtype)
        model = model.to(device).eval()
        if self._noise_scale is not None:
            model.noise_scale = float(self._noise_scale)
        if self._noise_scale_duration is not None:
            model.noise_scale_duration = float(self._noise_scale_duration)
        if self._tail_frames > 0:
            model.decoder.register_forward_pre_hook(self._pad_decoder_input)
        model.duration_predictor.register_forward_hook(self._keep_log_durations)
        self._log_durations: Any = None
        self._model = model
        self._version = self._fingerprint()
        self.synthesize([SynthesisRequest(text="warm up.", voice="")])

    def _pad_decoder_input(self, _: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        import torch.nn.functional as functional

        return (functional.pad(args[0], (0, self._tail_frames)), *args[1:])

    def _keep_log_durations(self, _: Any, __: Any, output: Any) -> None:
        self._log_durations = output

    def _durations(self, attention_mask: Any, speed: float) -> Any:
        """Frames per token, [batch, tokens]: the expression VitsModel.forward uses."""
        import torch

        log_duration = self._log_durations  # [batch, 1, tokens]
        mask = attention_mask.unsqueeze(1).to(log_duration.dtype)
        return torch.ceil(torch.exp(log_duration) * mask * (1.0 / speed))[:, 0, :]

    def _words(self, text: str, frames: Any, hop_s: float) -> tuple[Word, ...] | None:
        spans = word_spans(text, self._tokenizer)
        if spans is None:
            return None
        ends = np.cumsum(frames.float().cpu().numpy())
        words = []
        for word, first, last in spans:
            start = float(ends[first - 1]) if first > 0 else 0.0
            words.append(Word(word, round(start * hop_s, 4), round(float(ends[last]) * hop_s, 4)))
        return tuple(words)

    def synthesize(self, batch: Sequence[SynthesisRequest]) -> list[Audio]:
        import torch

        if self._model is None:
            raise EngineError("TransformersEngine.synthesize called before load()")
        if len({request.speed for request in batch}) > 1:
            raise EngineError("a batch must share one speed")
        encoded = self._tokenizer([r.text for r in batch], padding=True, return_tensors="pt")
        # With add_blank the tokenizer yields one blank for text it cannot spell at all.
        lengths = encoded["attention_mask"].sum(dim=1)
        if bool((lengths <= 1).any()):
            raise InvalidText("the text has no characters this model can pronounce")
        encoded = {name: tensor.to(self._device) for name, tensor in encoded.items()}
        with torch.inference_mode():
            torch.manual_seed(self._seed)
            output = self._model(**encoded, speaking_rate=batch[0].speed)
        waves = output.waveform.float().cpu().numpy()
        sizes = output.sequence_lengths.cpu().numpy()
        rate = self.sample_rate
        frames = self._durations(encoded["attention_mask"], batch[0].speed)
        hop_s = float(np.prod(self._model.config.upsample_rates)) / rate
        return [
            Audio(
                samples=np.ascontiguousarray(waves[i, : int(sizes[i])]),
                sample_rate=rate,
                words=self._words(batch[i].text, frames[i], hop_s),
            )
            for i in range(len(batch))
        ]


def word_spans(text: str, tokenizer: Any) -> list[tuple[str, int, int]] | None:
    """Each word of `text` with the first and last token index of its characters, or None
    where the tokenizer does not keep one token per character (phonemizing, romanizing):
    then no word timing is claimed."""
    if getattr(tokenizer, "phonemize", False) or getattr(tokenizer, "is_uroman", False):
        return None
    kept, _ = tokenizer.prepare_for_tokenization(text)
    vocab = tokenizer.get_vocab()
    groups = [g for g in kept.split(" ") if g]
    words = []
    for match in re.finditer(r"\S+", text):
        normal, _ = tokenizer.prepare_for_tokenization(match.group())
        if normal:
            words.append((match.group(), normal))
    if " " not in vocab or [n for _, n in words] != groups:
        return None
    stride, offset = (2, 1) if getattr(tokenizer, "add_blank", False) else (1, 0)
    spans = []
    position = 0
    for word, normal in words:
        position = kept.index(normal, position)
        first, last = position, position + len(normal) - 1
        spans.append((word, first * stride + offset, last * stride + offset))
        position += len(normal)
    return spans
