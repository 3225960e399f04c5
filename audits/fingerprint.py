"""Find repeated plays of one recording by their sound, before any speech engine runs.

A hold loop plays the same few recordings again and again; transcribing every
play costs one Whisper call each. Plays of one recording have the same spectral
course, frame by frame, whatever line noise and phone channel lie on top, so:

1. each speech segment becomes a sequence of log-mel frames in the telephone
   band (300-3400 Hz, 100 frames/s), mean/variance-normalised per band over the
   segment (channel gain and colour drop out), each frame scaled to unit length;
2. two segments are compared only when their durations are close
   (`durations_match`: a cut-short play is left to the text grouping);
3. their similarity is the best mean frame-by-frame cosine over small time
   shifts (segment edges move by a few hundred ms between plays: `MAX_SHIFT_S`),
   found for all shifts at once by FFT cross-correlation, counting only shifts
   where the sequences overlap almost fully;
4. at that shift, every LOCAL_S (0.2 s) stretch of voiced frames inside the
   edges must match too: "You are number two in line" and "...number three..."
   are one word apart, which barely moves the mean but sinks one stretch;
5. a play joins the most similar group whose anchor (its first play) it matches
   on both counts, else it starts a group: comparisons grow with plays x distinct
   recordings, not plays squared, and only the anchors are kept in memory.

Measured on generated telephone-line holds (espeak voices, mu-law, line noise,
music fading around messages). Plays of one recording: mean 0.86-0.99, local
0.78-0.94 (down to 0.77 / 0.61 with line noise 30 dB above the default).
Different messages of similar length: mean under 0.12. One word apart (number
two / three, fifty / fifteen percent): mean up to 0.79 but local under 0.45. The
same text re-recorded (other voice or pace): mean under 0.4, so it is
transcribed on its own and merged by text afterwards. The thresholds lean to
"different": a missed match only costs one more transcription, a false one
would give a play another message's text. Noisier than about 25 dB SNR, replays
may go unmatched (and are transcribed on their own).
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from audits.data import SAMPLE_RATE

FEATURE_RATE = 8_000  # Hz: a phone line carries nothing above 4 kHz, so fingerprints are taken at 8 kHz
WINDOW_N = 200  # 25 ms analysis window
HOP_N = 80  # 10 ms between frames
FFT_N = 256
N_MELS = 32
BAND_HZ = (300.0, 3400.0)  # what a phone line carries; outside it is only noise
FRAMES_PER_S = FEATURE_RATE / HOP_N

SAME_SIMILARITY = 0.7  # mean frame cosine at the best shift, over the whole overlap...
SAME_LOCAL_SIMILARITY = 0.55  # ...and in every LOCAL_S stretch of it, for two plays to be one recording
LOCAL_S = 0.2  # about one syllable: "number two" / "number three" differ only here
EDGE_S = (0.2, 0.4)  # not judged locally at the start / end: segment edges catch music and VAD decay
LOUD_RANGE_DB = 25.0  # local stretches count only frames within this of the play's loudest (not pauses)
MAX_SHIFT_S = 0.6  # how far the best alignment may move one play against the other
MIN_OVERLAP = 0.85  # share of the shorter play the aligned sequences must both cover
DURATION_TOLERANCE = 0.12  # plays of one recording differ in length by at most this share...
DURATION_SLACK_S = 0.5  # ...or this much, whichever is more (VAD edges on short messages)


@dataclass
class Fingerprint:
    """What one speech segment sounds like, frame by frame (100 frames/s)."""
    frames: np.ndarray  # (n_frames, N_MELS) log-mel, per-band mean/variance normalised, unit-length rows
    loudness_db: np.ndarray  # (n_frames,) mean log-mel level, to tell speech frames from pauses

    @property
    def duration_s(self) -> float:
        return len(self.frames) / FRAMES_PER_S


def fingerprint(samples: np.ndarray) -> Fingerprint:
    """The Fingerprint of a speech segment (float32, 16 kHz, mono)."""
    import soxr

    samples = soxr.resample(np.asarray(samples, dtype=np.float32), SAMPLE_RATE, FEATURE_RATE)
    if len(samples) < WINDOW_N:
        return Fingerprint(np.zeros((0, N_MELS), dtype=np.float32), np.zeros(0, dtype=np.float32))
    n_frames = 1 + (len(samples) - WINDOW_N) // HOP_N
    frames = np.lib.stride_tricks.sliding_window_view(samples, WINDOW_N)[::HOP_N][:n_frames]
    spectrum = np.fft.rfft(frames * _window(), n=FFT_N, axis=1)  # float32 in, complex64 out
    power = spectrum.real ** 2 + spectrum.imag ** 2  # (n_frames, FFT_N // 2 + 1)
    log_mel = np.log10(power @ _mel_filters().T + 1e-10)
    loudness_db = 10 * log_mel.mean(axis=1)
    log_mel -= log_mel.mean(axis=0)  # channel gain and colour drop out...
    log_mel /= log_mel.std(axis=0) + 1e-6
    log_mel /= np.linalg.norm(log_mel, axis=1, keepdims=True) + 1e-6  # ...and loudness: cosines only
    return Fingerprint(log_mel.astype(np.float32), loudness_db.astype(np.float32))


def durations_match(a_s: float, b_s: float) -> bool:
    """Whether two plays are close enough in length to be one recording."""
    return abs(a_s - b_s) <= max(DURATION_TOLERANCE * max(a_s, b_s), DURATION_SLACK_S)


@dataclass
class Match:
    similarity: float  # mean frame cosine over the overlap at the best shift (-1..1)
    local_similarity: float  # the lowest mean over any LOCAL_S stretch of loud frames inside the edges
    shift_frames: int  # frame i of a lines up with frame i + shift_frames of b

    @property
    def same(self) -> bool:
        return self.similarity >= SAME_SIMILARITY and self.local_similarity >= SAME_LOCAL_SIMILARITY


NO_MATCH = Match(0.0, 0.0, 0)


def compare(a: Fingerprint, b: Fingerprint) -> Match:
    """How alike two plays sound at their best alignment (shifts up to MAX_SHIFT_S plus the length
    difference, overlapping at least MIN_OVERLAP of the shorter one)."""
    a_n, b_n = len(a.frames), len(b.frames)
    max_shift = int(MAX_SHIFT_S * FRAMES_PER_S) + abs(b_n - a_n)
    shifts = np.arange(-max_shift, max_shift + 1)  # frame i of a against frame i + shift of b
    overlap_n = np.minimum(a_n, b_n - shifts) - np.maximum(0, -shifts)
    enough = overlap_n >= max(1.0, MIN_OVERLAP * min(a_n, b_n))
    shifts, overlap_n = shifts[enough], overlap_n[enough]
    if len(shifts) == 0:
        return NO_MATCH
    means = _cross_correlation(a.frames, b.frames)[shifts] / overlap_n
    best = int(np.argmax(means))
    shift = int(shifts[best])
    diagonal = np.einsum("ij,ij->i", a.frames[max(0, -shift):][:overlap_n[best]],
                         b.frames[max(0, shift):][:overlap_n[best]])
    return Match(float(means[best]), _local_similarity(a, b, diagonal, shift), shift)


def _cross_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum_i a[i] . b[i + shift] for every shift, by FFT; index a negative shift from the end."""
    size = 1 << (len(a) + len(b) - 2).bit_length()  # >= len(a) + len(b) - 1: no circular wrap-around
    spectrum = np.conj(np.fft.rfft(a, size, axis=0)) * np.fft.rfft(b, size, axis=0)
    return np.fft.irfft(spectrum.sum(axis=1), size)


def _local_similarity(a: Fingerprint, b: Fingerprint, diagonal: np.ndarray, shift: int) -> float:
    """The worst LOCAL_S stretch of the aligned cosines: one different word ("fifty" / "fifteen") in an
    otherwise identical recording shows here while it barely moves the overall mean."""
    a_at = np.arange(len(diagonal)) + max(0, -shift)
    loudness_db = np.minimum(a.loudness_db[a_at], b.loudness_db[a_at + shift])
    loud = loudness_db > loudness_db.max() - LOUD_RANGE_DB
    head_n = min(int(EDGE_S[0] * FRAMES_PER_S), len(diagonal) // 10)
    tail_n = min(int(EDGE_S[1] * FRAMES_PER_S), len(diagonal) // 5)
    inner = slice(head_n, len(diagonal) - tail_n)
    window = np.ones(int(LOCAL_S * FRAMES_PER_S))
    loud_sum = np.convolve(np.where(loud, diagonal, 0.0)[inner], window, "valid")
    loud_n = np.convolve(loud[inner].astype(float), window, "valid")
    judged = loud_n >= len(window) / 2  # stretches that are mostly voice, not a pause
    return float((loud_sum[judged] / loud_n[judged]).min()) if judged.any() else 1.0


def group_plays(fingerprints: Iterable[Fingerprint], anchors: list[Fingerprint] | None = None) -> list[int]:
    """A group number per play (0, 1, ... in order of first play): plays of one recording share it.

    Each play is compared with the first play (anchor) of every group so far and joins the most
    similar one it matches; comparisons grow with plays x distinct recordings, and only the anchors
    are kept, so `fingerprints` may be a generator. `anchors` may hold groups heard before (the
    message library, audits.library): they are groups 0.. len(anchors) - 1, matched as strictly as
    any other, and the list gains the anchor of every new group.
    """
    anchors = [] if anchors is None else anchors
    labels = []
    for play in fingerprints:
        matches = [compare(anchor, play) if durations_match(anchor.duration_s, play.duration_s) else NO_MATCH
                   for anchor in anchors]
        same = [i for i, match in enumerate(matches) if match.same]
        if same:
            labels.append(max(same, key=lambda i: matches[i].similarity))
        else:
            labels.append(len(anchors))
            anchors.append(play)
    return labels


def group_clips(clips: Iterable[np.ndarray], anchors: list[Fingerprint] | None = None) -> list[int]:
    """`group_plays` for speech clips (float32, 16 kHz, mono): one group number per clip, in order.
    `clips` may be a generator: each clip is fingerprinted and dropped before the next is read."""
    with _one_blas_thread():
        return group_plays((fingerprint(clip) for clip in clips), anchors)


def _one_blas_thread():
    """Small matrix products run 10x slower when BLAS spreads them over busy cores: use one thread."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # only a speed-up
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    return np.hanning(WINDOW_N).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _mel_filters() -> np.ndarray:
    """(N_MELS, FFT_N // 2 + 1) triangular filters evenly spaced on the mel scale over BAND_HZ."""
    def hz_to_mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    def mel_to_hz(mel):
        return 700.0 * (10 ** (np.asarray(mel) / 2595.0) - 1.0)

    edges_hz = mel_to_hz(np.linspace(hz_to_mel(BAND_HZ[0]), hz_to_mel(BAND_HZ[1]), N_MELS + 2))
    bins_hz = np.fft.rfftfreq(FFT_N, 1.0 / FEATURE_RATE)
    rising = (bins_hz[None, :] - edges_hz[:-2, None]) / (edges_hz[1:-1] - edges_hz[:-2])[:, None]
    falling = (edges_hz[2:, None] - bins_hz[None, :]) / (edges_hz[2:] - edges_hz[1:-1])[:, None]
    return np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32)
