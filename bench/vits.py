"""Random-weight VITS checkpoints with a character tokenizer, saved like a real MMS-TTS
directory so the transformers engine loads them through the same `from_pretrained` path.

No hub is reachable here, so tests and benchmarks build their models: `tiny` for tests
(a quarter-million parameters), `small` for CPU benchmarks, `full` (the default VitsConfig,
36 M parameters, the size of MMS-TTS) for the GPU benchmark.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHARACTERS = list("abcdefghijklmnopqrstuvwxyz '.,!?-")

SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=64, flow_size=32,
        spectrogram_bins=65, upsample_initial_channel=64, upsample_rates=[8, 8, 4],
        upsample_kernel_sizes=[16, 16, 8], resblock_kernel_sizes=[3, 7],
        resblock_dilation_sizes=[[1, 3], [1, 3]], prior_encoder_num_flows=2,
        prior_encoder_num_wavenet_layers=2, posterior_encoder_num_wavenet_layers=2,
        duration_predictor_filter_channels=32, depth_separable_num_layers=2,
    ),
    "small": dict(
        hidden_size=96, num_hidden_layers=3, num_attention_heads=2, ffn_dim=384, flow_size=96,
        spectrogram_bins=129, upsample_initial_channel=128, upsample_rates=[8, 8, 2, 2],
        upsample_kernel_sizes=[16, 16, 4, 4], prior_encoder_num_wavenet_layers=2,
        duration_predictor_filter_channels=96,
    ),
    "full": {},
}  # fmt: skip


def build_random_vits(
    directory: Path, size: str = "tiny", seed: int = 0, sampling_rate: int = 16000, **config: Any
) -> Path:
    """Write config, weights and tokenizer files of a random VITS model into `directory`."""
    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<unk>": 1, **{c: i + 2 for i, c in enumerate(CHARACTERS)}}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    VitsTokenizer(
        str(directory / "vocab.json"), phonemize=False, add_blank=True, normalize=True
    ).save_pretrained(directory)
    torch.manual_seed(seed)
    options = {**SIZES[size], "sampling_rate": sampling_rate, **config}
    model = VitsModel(VitsConfig(vocab_size=len(vocab), **options))
    model.save_pretrained(directory)
    return directory
