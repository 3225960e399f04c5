"""Load any hold recording to 16 kHz mono float32.

Twilio recordings (8 kHz mu-law WAV), other WAVs, FLAC, Ogg and MP3 are decoded
by libsndfile (soundfile) block by block and resampled with soxr as they
stream, so memory stays at the 16 kHz output plus one block. Containers
libsndfile cannot read (m4a, aac, opus...) go through librosa (ffmpeg).

Every failure is an `AudioError` whose text is one line naming the file:
"recording.wav: not an audio file (could not decode: Format not recognised)".
"""
from __future__ import annotations

import os
import struct
import sys
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from audits.data import SAMPLE_RATE, Audio

SUPPORTED_EXTENSIONS = frozenset({
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au",  # libsndfile
    ".m4a", ".aac", ".opus", ".webm", ".wma",  # librosa / ffmpeg
})
# Extensions libsndfile decodes itself: when it fails on one of these, the file is bad and
# trying ffmpeg too would only be slower (librosa's first import compiles for seconds).
_LIBSNDFILE_EXTENSIONS = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au"})
# Leading bytes of audio containers: a file that starts like one but will not decode is damaged,
# not "not audio".
_AUDIO_MAGIC = (b"RIFF", b"RF64", b"fLaC", b"OggS", b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2",
                b"FORM", b".snd", b"\x1aE\xdf\xa3")
BLOCK_S = 60.0  # seconds of source audio decoded at a time


class AudioError(Exception):
    """A recording that cannot be loaded. str() is one line: '<path>: <reason>'."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # always one line
        super().__init__(f"{self.path}: {self.reason}")


def load(path: str | Path) -> Audio:
    """Decode a recording to 16 kHz mono float32 in [-1, 1]. Raises AudioError."""
    path = Path(path)
    samples = _collect(iter_blocks(path), expected_n=_expected_samples(path))
    if len(samples) == 0:
        raise AudioError(path, "no audio (0 samples)")
    return Audio(path=str(path), samples=samples)


def iter_blocks(path: str | Path, block_s: float = BLOCK_S) -> Iterator[np.ndarray]:
    """Yield the recording as consecutive 16 kHz mono float32 blocks (about `block_s` each),
    decoding and resampling as it goes. Raises AudioError (possibly after some blocks)."""
    import soundfile as sf
    import soxr

    path = Path(path)
    _check_file(path)
    try:
        with _native_stderr_quiet(unless=_looks_like_audio(path)):
            sound_file = sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError) as error:
        if path.suffix.lower() in _LIBSNDFILE_EXTENSIONS:
            raise _decode_error(path, error) from error
        samples = _load_with_librosa(path)
        block_n = int(block_s * SAMPLE_RATE)
        yield from (samples[start: start + block_n] for start in range(0, len(samples), block_n))
        return
    with sound_file:
        _check_complete_wav(path, sound_file.samplerate)
        resampler = None
        if sound_file.samplerate != SAMPLE_RATE:
            resampler = soxr.ResampleStream(sound_file.samplerate, SAMPLE_RATE, 1, dtype="float32")
        block_n = max(1, int(block_s * sound_file.samplerate))
        while True:
            try:  # read() returns what is really there, even when the header's frame count is off
                block = sound_file.read(block_n, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as error:
                raise AudioError(path, f"truncated or corrupt ({_clean(error)})") from error
            if len(block) == 0:
                break
            mono = _to_mono(block)
            yield resampler.resample_chunk(mono) if resampler else mono
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


def find_audio_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files to audit: folders are searched recursively for SUPPORTED_EXTENSIONS (sorted, hidden
    files skipped); files are kept as given, whatever their extension, so a bad one is reported
    rather than silently dropped. Order of `paths` is kept, duplicates removed."""
    found: dict[Path, None] = {}
    for path in map(Path, paths):
        if path.is_dir():
            for candidate in sorted(path.rglob("*")):
                relative = candidate.relative_to(path).parts
                if (candidate.is_file() and candidate.suffix.lower() in SUPPORTED_EXTENSIONS
                        and not any(part.startswith(".") for part in relative)):
                    found.setdefault(candidate)
        else:
            found.setdefault(path)
    return list(found)


# ---------------------------------------------------------------- helpers

def _collect(blocks: Iterable[np.ndarray], expected_n: int) -> np.ndarray:
    """Join blocks into one array, filling a buffer allocated once when the length is known
    (a 45-minute file then costs its 16 kHz samples, not twice that)."""
    samples = np.empty(expected_n + 64, dtype=np.float32)  # soxr may give a few more than expected
    filled, overflow = 0, []
    for block in blocks:
        if overflow or filled + len(block) > len(samples):
            overflow.append(block)
        else:
            samples[filled: filled + len(block)] = block
            filled += len(block)
    return np.concatenate([samples[:filled], *overflow]) if overflow else samples[:filled]


def _to_mono(block: np.ndarray) -> np.ndarray:
    """(n, channels) -> (n,) float32 in [-1, 1]."""
    mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
    mono = np.nan_to_num(mono, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(mono, -1.0, 1.0, out=mono)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as error:
        raise AudioError(path, f"cannot read ({error.strerror})") from error
    if size == 0:
        raise AudioError(path, "no audio (empty file, 0 bytes)")


def _looks_like_audio(path: Path) -> bool:
    with path.open("rb") as file:
        head = file.read(12)
    return head.startswith(_AUDIO_MAGIC) or head[4:8] == b"ftyp"  # ftyp: MP4/M4A


@contextmanager
def _native_stderr_quiet(unless: bool = False):
    """Keep a C decoder's chatter off stderr while it tries a file that does not start like audio:
    libmpg123 prints "Note: Trying to resync..." for every try on random bytes named .mp3, and the
    user is owed one line naming the file instead."""
    if unless:
        yield
        return
    sys.stderr.flush()
    saved_fd = os.dup(2)
    try:
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved_fd, 2)
    finally:
        os.close(saved_fd)


def _decode_error(path: Path, error: Exception) -> AudioError:
    """A decoder's failure, worded for the user: damaged audio or not audio at all."""
    if _looks_like_audio(path):
        return AudioError(path, f"truncated or corrupt ({_clean(error)})")
    return AudioError(path, f"not an audio file (could not decode: {_clean(error)})")


def _clean(error: Exception) -> str:
    """A decoder's message for a one-line error: libsndfile's without its "Error opening '<path>': "
    prefix, audioread's empty one named, anything long cut short."""
    if type(error).__name__ == "NoBackendError":
        return "neither libsndfile nor ffmpeg could read it"
    text = " ".join(str(error).split())
    if text.startswith("Error opening") and "': " in text:
        text = text.split("': ", 1)[1]
    if text.startswith("File does not exist or is not a regular file"):
        # libsndfile's words when its MP3 decoder finds no frame; the file exists (_check_file)
        text = "no audio frames found in it"
    text = text.rstrip(".") or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _expected_samples(path: Path) -> int:
    """How many 16 kHz samples the file should give (0 if unknown), to allocate the output once."""
    import soundfile as sf

    try:
        with _native_stderr_quiet(unless=_looks_like_audio(path)):
            info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, OSError):
        return 0
    return int(np.ceil(info.frames * SAMPLE_RATE / info.samplerate)) if info.samplerate else 0


def _check_complete_wav(path: Path, sample_rate: int) -> None:
    """libsndfile quietly reads what is there when a WAV's data is cut short (a partial download):
    compare the data chunk's declared size with the bytes the file really holds."""
    with path.open("rb") as file:
        header = file.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        block_align, offset, size = 0, 12, path.stat().st_size
        while offset + 8 <= size:
            file.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", file.read(8))
            if chunk_id == b"fmt ":
                block_align = struct.unpack("<HHIIH", file.read(14))[4]
            if chunk_id == b"data":
                available = size - offset - 8
                # 0 and 0xFFFFFFFF mean "length unknown" (streamed WAVs): nothing to compare
                if chunk_size not in (0, 0xFFFFFFFF) and available < chunk_size and block_align:
                    raise AudioError(path, "truncated or corrupt (header says {:.2f} s of audio, the file "
                                     "holds {:.2f} s)".format(chunk_size / block_align / sample_rate,
                                                              available / block_align / sample_rate))
                return
            offset += 8 + chunk_size + (chunk_size & 1)


def _load_with_librosa(path: Path) -> np.ndarray:
    """Decode what libsndfile cannot (m4a, aac, opus...) with librosa's ffmpeg backend."""
    import librosa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "PySoundFile failed. Trying audioread instead."
            samples, _ = librosa.load(path, sr=SAMPLE_RATE, mono=True, res_type="soxr_hq")
    except Exception as error:  # audioread and ffmpeg raise many unrelated types
        raise _decode_error(path, error) from error
    return np.clip(samples.astype(np.float32, copy=False), -1.0, 1.0)
