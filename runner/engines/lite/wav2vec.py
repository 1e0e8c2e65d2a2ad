"""Optional letter posteriors from a wav2vec2 CTC model in the model cache (e.g. wav2vec2-base-960h).

Used only when such a directory exists and torch + transformers are installed (the
`multitalk` extra); both are imported lazily so the lite engine runs without them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

# Looked up under the model cache, first match wins.
CANDIDATE_DIRS = ("lite/wav2vec2", "wav2vec2-base-960h", "facebook/wav2vec2-base-960h")
_PIECE_SECONDS = 30.0


@dataclass(frozen=True)
class LetterPosteriors:
    probs: npt.NDArray[np.float32]  # (steps, vocabulary)
    labels: list[str]  # token per vocabulary column
    step_seconds: float
    model: str


def find_model(model_dir: Path) -> Path | None:
    """A CTC model directory (config.json naming Wav2Vec2ForCTC, plus vocab.json), if torch is here."""
    if find_spec("torch") is None or find_spec("transformers") is None:
        return None
    for rel in CANDIDATE_DIRS:
        path = model_dir / rel
        config = path / "config.json"
        if config.is_file() and (path / "vocab.json").is_file():
            try:
                architectures = json.loads(config.read_text()).get("architectures") or []
            except (OSError, ValueError):
                continue
            if "Wav2Vec2ForCTC" in architectures:
                return path
    return None


class LetterModel:
    def __init__(self, path: Path) -> None:
        import torch
        from transformers import Wav2Vec2ForCTC

        self._torch: Any = torch
        loaded: Any = Wav2Vec2ForCTC.from_pretrained(str(path))
        self.model: Any = loaded.eval()
        vocab: dict[str, int] = json.loads((path / "vocab.json").read_text())
        labels = [""] * max(len(vocab), int(self.model.config.vocab_size))
        for token, index in vocab.items():
            if index < len(labels):
                labels[index] = token
        self.labels = labels
        self.name = path.name

    def posteriors(self, audio: npt.NDArray[np.float32], sample_rate: int) -> LetterPosteriors:
        torch = self._torch
        piece = int(_PIECE_SECONDS * sample_rate)
        chunks = []
        with torch.inference_mode():
            for start in range(0, max(len(audio), 1), piece):
                x = audio[start : start + piece].astype(np.float32)
                if len(x) < 400:  # shorter than the convolutional front end's receptive field
                    break
                x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
                logits = self.model(torch.from_numpy(x)[None]).logits[0]
                chunks.append(torch.softmax(logits.float(), dim=-1).numpy())
        if not chunks:
            return LetterPosteriors(np.zeros((0, len(self.labels)), np.float32), self.labels, 0.02, self.name)
        probs = np.concatenate(chunks).astype(np.float32)
        step = len(audio) / sample_rate / max(len(probs), 1)
        return LetterPosteriors(probs[:, : len(self.labels)], self.labels, step, self.name)
