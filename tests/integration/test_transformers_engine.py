"""The transformers engine on a tiny random VITS checkpoint loaded from a local directory
through `from_pretrained`, as a real MMS-TTS download would be."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.vits import build_random_vits
from tasks.errors import EngineError, InvalidText
from tasks.settings import ModelSpec, VoiceSpec
from worker.engines import Batching, SynthesisRequest, build_engine
from worker.engines.transformers import TransformersEngine

TEXTS = [
    "hello there, how are you today?",
    "hi.",
    "a much longer sentence that goes on for quite a while, and then some more.",
    "okay then.",
]


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_vits(tmp_path_factory.mktemp("vits") / "tiny-vits")


def engine_for(checkpoint: Path, **options: Any) -> TransformersEngine:
    spec = ModelSpec(
        engine="transformers",
        options={"checkpoint": str(checkpoint), **options},
        voices={"tiny": VoiceSpec(language="en", sample_rate=16000)},
    )
    engine = build_engine(spec)
    assert isinstance(engine, TransformersEngine)
    engine.load("cpu")
    return engine


@pytest.fixture(scope="module")
def quiet_engine(checkpoint: Path) -> TransformersEngine:
    return engine_for(checkpoint, noise_scale=0.0, noise_scale_duration=0.0)


def say(engine: TransformersEngine, *texts: str, speed: float = 1.0) -> list[np.ndarray]:
    return [
        a.samples for a in engine.synthesize([SynthesisRequest(t, "tiny", speed) for t in texts])
    ]


def test_each_item_of_a_batch_equals_its_solo_audio(quiet_engine: TransformersEngine) -> None:
    solo = {text: say(quiet_engine, text)[0] for text in TEXTS}
    for batch in (
        TEXTS,
        list(reversed(TEXTS)),
        [TEXTS[1], TEXTS[2]],
        [TEXTS[3], TEXTS[0], TEXTS[2]],
    ):
        for text, audio in zip(batch, say(quiet_engine, *batch), strict=True):
            assert audio.shape == solo[text].shape, text
            np.testing.assert_allclose(audio, solo[text], atol=1e-4, err_msg=text)


def test_outputs_are_trimmed_to_their_true_length(quiet_engine: TransformersEngine) -> None:
    short, long = say(quiet_engine, TEXTS[1], TEXTS[2])
    assert len(short) < len(long)
    assert len(short) % 256 == 0 and np.isfinite(short).all()


def test_noise_is_seeded_so_audio_is_reproducible(checkpoint: Path) -> None:
    engine = engine_for(checkpoint, noise_scale=0.667, noise_scale_duration=0.8, seed=7)
    first, second = say(engine, *TEXTS), say(engine, *TEXTS)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_speed_changes_duration(quiet_engine: TransformersEngine) -> None:
    normal = say(quiet_engine, TEXTS[2])[0]
    fast = say(quiet_engine, TEXTS[2], speed=2.0)[0]
    assert 0.35 < len(fast) / len(normal) < 0.65


def test_bfloat16_weights_load_and_speak(checkpoint: Path) -> None:
    engine = engine_for(checkpoint, dtype="bfloat16", noise_scale=0.0, noise_scale_duration=0.0)
    audio = say(engine, TEXTS[0])[0]
    assert audio.dtype == np.float32 and np.isfinite(audio).all() and len(audio) > 1000


def test_text_without_known_characters_is_invalid(quiet_engine: TransformersEngine) -> None:
    with pytest.raises(InvalidText):
        say(quiet_engine, "\u2603\u2603")


def test_engine_declares_padded_batching_and_a_version(
    checkpoint: Path, quiet_engine: TransformersEngine
) -> None:
    assert quiet_engine.batching is Batching.PADDED
    other = engine_for(checkpoint, noise_scale=0.5)
    assert quiet_engine.version.startswith("vits-") and other.version != quiet_engine.version


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"config\.json missing"):
        engine_for(tmp_path / "nothing-here")


def test_word_timings_follow_the_models_own_durations(quiet_engine: TransformersEngine) -> None:
    """Each word ends where the model's duration predictor says its last character ends:
    durations read here with our own hook, the way VitsModel.forward turns them into
    frames; and all frames together are the waveform's length."""
    import torch

    text = "Hello there, how are you today?"
    model: Any = quiet_engine._model
    seen: list[Any] = []
    handle = model.duration_predictor.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        audio = quiet_engine.synthesize([SynthesisRequest(text, "tiny")])[0]
    finally:
        handle.remove()
    frames = torch.ceil(torch.exp(seen[0][0, 0])).numpy()
    hop = int(np.prod(model.config.upsample_rates))
    assert int(frames.sum()) * hop == len(audio.samples)
    ends = np.cumsum(frames) * hop / audio.sample_rate
    # With blanks between characters, character k of the kept text is token 2k + 1.
    kept = "hello there, how are you today?"
    last_chars = [
        kept.index(w) + len(w) - 1 for w in ("hello", "there,", "how", "are", "you", "today?")
    ]
    assert audio.words is not None
    assert [w.text for w in audio.words] == text.split()
    for word, last in zip(audio.words, last_chars, strict=True):
        assert word.end_s == pytest.approx(ends[2 * last + 1], abs=1e-3)
        assert word.start_s < word.end_s
    starts = [w.start_s for w in audio.words]
    assert starts == sorted(starts) and audio.words[-1].end_s <= len(audio.samples) / 16000


def test_words_survive_batching_and_speed(quiet_engine: TransformersEngine) -> None:
    alone = quiet_engine.synthesize([SynthesisRequest(TEXTS[0], "tiny")])[0].words
    batched = quiet_engine.synthesize([SynthesisRequest(t, "tiny") for t in TEXTS])[0].words
    assert alone == batched
    fast = quiet_engine.synthesize([SynthesisRequest(TEXTS[0], "tiny", 2.0)])[0].words
    assert alone is not None and fast is not None and fast[-1].end_s < alone[-1].end_s
