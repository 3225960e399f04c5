"""Plain data inside the audit pipeline: the audio and what the speech engine heard.

What an audit finds (spans, messages, findings) is in app.core.audit: storage keeps it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.core.audit import Word

if TYPE_CHECKING:  # only an annotation here: stages that hold text need not load numpy
    import numpy as np

SAMPLE_RATE = 16_000  # Hz; every stage after loading works at this rate, mono float32


@dataclass
class Audio:
    path: str
    samples: np.ndarray  # shape (n_samples,), float32 in [-1, 1], SAMPLE_RATE Hz, mono

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass
class Transcript:
    """What the speech engine heard in one speech segment (one play of a message)."""
    start_s: float
    end_s: float
    text: str  # "" when the engine's output was rejected as a hallucination
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    words: tuple[Word, ...] = ()  # the words of `text` with Whisper's probability for each
