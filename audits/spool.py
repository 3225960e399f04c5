"""A decoded recording kept in a temporary file and read back in slices.

A 45-minute hold is 173 MB of 16 kHz float32 samples, 90 minutes twice that; the
audit only ever looks at a few seconds at a time (a VAD block, a speech clip).
`spool` decodes the file block by block (audits.audio.iter_blocks) into an
anonymous temporary file, measuring each frame's level on the way, so memory
stays the same whatever the length: the samples live in the file (the OS page
cache, not this process), slices are read back with `pread` (thread-safe, the
VAD reads blocks from several threads).

    with spool("hold.wav") as recording:
        recording.samples[16000:32000]   # float32 array, like slicing the loaded samples
        recording.levels_db              # per-frame level, as audits.segment.frame_levels_db
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audits.audio import AudioError, iter_blocks
from audits.data import SAMPLE_RATE, Audio
from audits.segment import FRAME_N, frame_levels_db

_ITEM_BYTES = np.dtype(np.float32).itemsize


class SpooledSamples:
    """Mono float32 samples in a file: `len()` and `[start:stop]` behave like a 1-D numpy array's."""

    def __init__(self, file, n_samples: int):
        self._file, self._n = file, n_samples

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice):
            raise TypeError("spooled samples are read in slices: samples[start:stop]")
        start, stop, step = key.indices(self._n)
        if step != 1:
            raise ValueError("spooled samples are read in contiguous slices (no step)")
        n = max(0, stop - start)
        data = os.pread(self._file.fileno(), n * _ITEM_BYTES, start * _ITEM_BYTES)
        return np.frombuffer(data, dtype=np.float32).copy()  # writable, like a slice copy of an array

    def close(self) -> None:
        self._file.close()


@dataclass
class SpooledRecording:
    audio: Audio  # audio.samples is a SpooledSamples
    levels_db: np.ndarray  # (n_frames,) RMS level of each segment.FRAME_N frame, the last partial one included

    def __enter__(self) -> "SpooledRecording":
        return self

    def __exit__(self, *exc) -> None:
        self.audio.samples.close()


def spool(path: str | Path) -> SpooledRecording:
    """Decode a recording into a temporary file, with its frame levels. Raises AudioError (one line)."""
    file = tempfile.TemporaryFile(prefix="holdguard-audio-")
    try:
        levels, n_samples = _write_blocks(path, file)
    except BaseException:
        file.close()
        raise
    if n_samples == 0:
        file.close()
        raise AudioError(path, "no audio (0 samples)")
    file.flush()
    return SpooledRecording(Audio(path=str(path), samples=SpooledSamples(file, n_samples)), levels)


def _write_blocks(path: str | Path, file) -> tuple[np.ndarray, int]:
    """Append every decoded block to `file`; frame levels over whole frames, carrying the rest over."""
    levels, carry, n_samples = [], np.zeros(0, dtype=np.float32), 0
    for block in iter_blocks(path):
        block = np.ascontiguousarray(block, dtype=np.float32)
        file.write(block)  # the array's own buffer, no copy
        n_samples += len(block)
        joined = np.concatenate([carry, block])
        whole_n = len(joined) // FRAME_N * FRAME_N
        if whole_n:
            levels.append(frame_levels_db(joined[:whole_n]))
        carry = joined[whole_n:]
    if len(carry):
        levels.append(frame_levels_db(carry))  # the last, partial frame
    return (np.concatenate(levels) if levels else np.zeros(0)), n_samples
