"""Real speech for tests: text -> espeak-ng -> float32 mono samples.

    from tests.speech import speak
    samples = speak("Upgrade to the brand new Galaxy S7 today")            # 16 kHz float32 array
    speak("Your call is important to us", path=tmp_path / "a.wav", voice="en-gb", speed_wpm=140)

`voice` is any `espeak-ng --voices` name (en-us, en-gb, en-gb-x-rp, en+f3 for a female variant...);
`speed_wpm` is espeak-ng's -s (words per minute). espeak-ng speaks at 22050 Hz; the result is
resampled to `sample_rate`. With `path`, the same samples are also written there as a 16-bit WAV.
Needs the espeak-ng binary (apt package espeak-ng).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np


def speak(text: str, path: str | Path | None = None, voice: str = "en-us", speed_wpm: int = 160,
          sample_rate: int = 16000) -> np.ndarray:
    """Speak `text` with espeak-ng and return float32 mono samples at `sample_rate` (and write `path` if given)."""
    import io

    import soundfile
    import soxr

    completed = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed_wpm), "--stdout", text],
                               capture_output=True, check=False)
    if completed.returncode != 0 or not completed.stdout:
        raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {completed.stderr.decode().strip()}")
    # espeak-ng's streamed WAV header has placeholder sizes; soundfile reads it up to the real end.
    samples, native_rate = soundfile.read(io.BytesIO(completed.stdout), dtype="float32")
    if native_rate != sample_rate:
        samples = soxr.resample(samples, native_rate, sample_rate).astype(np.float32)
    if path is not None:
        soundfile.write(str(path), samples, sample_rate, subtype="PCM_16")
    return samples
