"""Where in a hold a voice is possible at all: a cheap music/silence pre-filter for the VAD.

Most of a hold is music or silence. Silence is already known from frame levels
(audits.segment). Hold music is told apart from a voice by how steady its
spectrum is: a note's partials stay at the same frequencies, at a level that
changes slowly (a chord held, a plucked note decaying), while a voice's harmonics
and formants move from one syllable to the next. So each frame gets the share of
its spectrum (bin magnitudes) in bins whose level moved by more than
STEADY_TOLERANCE_DB against the same bin STEADY_LAG_FRAMES before or after; a
voice is possible wherever that share, averaged over WINDOW_FRAMES, is over
UNSTEADY_SHARE. Magnitudes rather than power, so that a voice over music that
plays on under it still counts (tested from 4 dB over the music to 3 dB under
it, where Silero itself stops hearing it); a pause inside speech counts as moved;
noise-like sound (drums, hiss, distorted or recorded music) moves too. Whatever
is unsure goes on to Silero VAD, which decides: the pre-filter only rules out.

One 256-point FFT per 32 ms frame, on every other sample (a telephone line
carries nothing above 4 kHz; wider audio aliases, which only adds unsteadiness).
"""
from __future__ import annotations

import numpy as np
import scipy.fft
from scipy.ndimage import uniform_filter1d

FRAME_N = 512  # samples per frame at 16 kHz: audits.segment's frame (Silero's window)
ANALYSIS_STEP = 2  # every other sample: 8 kHz, the telephone band and a little more
STEADY_LAG_FRAMES = 3  # a bin is steady when its level ~100 ms before and after is close...
STEADY_TOLERANCE_DB = 6.0  # ...within this (a plucked note decays ~4 dB in that time)
AUDIBLE_RANGE_DB = 40.0  # bins this far under a frame's strongest one are left out of its measure
WINDOW_FRAMES = 32  # the measure is averaged over ~1 s (a few syllables; music varies less over it)...
UNSTEADY_SHARE = 0.35  # ...and a voice is possible where more than this share of it moved
CHUNK_FRAMES = 4096  # frames analysed at once (~2 minutes): memory stays flat on long holds

_RATIO = 10 ** (STEADY_TOLERANCE_DB / 10)  # the tolerances as power ratios: no logarithms needed
_AUDIBLE_RATIO = 10 ** (-AUDIBLE_RANGE_DB / 10)
_WINDOW = np.hanning(FRAME_N // ANALYSIS_STEP).astype(np.float32)


def possible_speech(samples, sounding: np.ndarray) -> np.ndarray:
    """Per frame: True where a voice is possible (sounding, and not steady music), False where not.

    `samples` is 16 kHz mono float32 (an array, or audits.spool's slices of one); `sounding` has one
    entry per FRAME_N frame (the last, partial one included), False for silence.
    """
    moved = np.where(sounding, moved_share(samples, len(sounding)), 1.0)  # a pause in speech is no music
    window_mean = uniform_filter1d(moved, WINDOW_FRAMES, mode="nearest")
    return (window_mean > UNSTEADY_SHARE) & sounding


def moved_share(samples, n_frames: int) -> np.ndarray:
    """Per frame: the share of its spectrum (magnitudes of the bins within AUDIBLE_RANGE_DB of its
    strongest) in bins whose level moved by more than STEADY_TOLERANCE_DB within STEADY_LAG_FRAMES.
    0 for a held chord, near 1 for a voice; a partial last frame counts as 1 (left to the VAD)."""
    whole_n = min(n_frames, len(samples) // FRAME_N)
    shares = np.ones(n_frames)
    lag = STEADY_LAG_FRAMES
    for first in range(0, whole_n, CHUNK_FRAMES):
        last = min(first + CHUNK_FRAMES, whole_n)
        read_first, read_last = max(0, first - lag), min(whole_n, last + lag)
        power = _power_spectra(samples[read_first * FRAME_N: read_last * FRAME_N])
        frames = np.arange(first, last)
        before = power[np.maximum(frames - lag, read_first) - read_first]
        after = power[np.minimum(frames + lag, read_last - 1) - read_first]
        now = power[first - read_first: last - read_first]
        moved = ((now > _RATIO * before) | (before > _RATIO * now)
                 | (now > _RATIO * after) | (after > _RATIO * now))
        # magnitudes, not power: a few strong partials of the music must not hide a voice over it
        weight = np.sqrt(now) * (now > _AUDIBLE_RATIO * now.max(axis=1, keepdims=True))
        shares[first:last] = (np.einsum("ij,ij->i", weight, moved, dtype=np.float64)
                              / (weight.sum(axis=1, dtype=np.float64) + 1e-30))
    return shares


def _power_spectra(samples: np.ndarray) -> np.ndarray:
    """(frames, bins) power spectrum of each whole FRAME_N frame, from every ANALYSIS_STEP-th sample."""
    frames = np.asarray(samples, dtype=np.float32).reshape(-1, FRAME_N)[:, ::ANALYSIS_STEP]
    spectrum = scipy.fft.rfft(frames * _WINDOW, axis=1)
    return spectrum.real ** 2 + spectrum.imag ** 2 + 1e-12  # +floor: digital silence is steady, not 0/0
