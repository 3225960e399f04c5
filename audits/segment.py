"""Split a hold recording into speech, music and silence.

Silence is frame energy under an adaptive floor (hold recordings carry line
noise, so "silent" is never zero). Speech is what the Silero VAD model that
ships inside the faster-whisper wheel hears as a voice: it stays quiet on hold
music, which matters because music sent to Whisper comes back as invented text.
Everything loud that is not speech is music.

One speech segment is one spoken message: pauses inside a message (between
words and sentences) are shorter than SILENCE_GAP_S and are merged; messages
separated by music or by a longer silence stay apart.
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from app.core.audit import Span

from audits.data import SAMPLE_RATE, Audio
from audits.prefilter import possible_speech

FRAME_N = 512  # samples per analysis frame: Silero's window at 16 kHz (32 ms)
FRAME_S = FRAME_N / SAMPLE_RATE

SPEECH_PROBABILITY = 0.5  # Silero's own default threshold
SILENCE_GAP_S = 0.65  # silence this long between voiced frames ends a message (sentence pauses
                      # in slow speech reach ~0.6 s)
MUSIC_GAP_S = 0.5  # so does this much sound that is surely not a voice
MUSIC_PROBABILITY = 0.2  # under this Silero is sure a sounding frame is not a voice
MAX_GAP_S = 2.0  # voiced frames further apart than this are never one message
ONSET_PROBABILITY = 0.1  # Silero's first stir at the start of a message
MAX_ONSET_S = 0.6  # how far back a message start may move to its first stir
ONSET_DIP_S = 0.2  # quiet frames tolerated inside that first stir
MIN_SPEECH_S = 0.25  # shorter voiced blips (a click, a note) are not a message ("Please hold." is ~0.4 s)
ABSORB_STEPS_S = (0.1, 0.25, 0.5, 1.0)  # music/silence runs under 1 s join a neighbour, shortest first
SILENCE_MARGIN_DB = 8.0  # frames this far above the line-noise floor are sound
SILENCE_CEILING_DBFS = -40.0  # never call anything louder than this silence
FLOOR_FRAMES_S = 0.5  # the line-noise floor: the level of the quietest half second of frames...
FLOOR_FRAMES_SHARE = 0.001  # ...or of this share of a long file's frames, whichever is more

VAD_INPUT_N = 576  # Silero's input per window: 64 samples of context + FRAME_N
VAD_BLOCK_FRAMES = 125  # 4 s per VAD call, from a fresh state (see _vad)
VAD_WARMUP_FRAMES = 16  # audio before a block that primes the VAD's recurrent state
COARSE_STRIDE = 4  # the first pass feeds Silero one window in four (every 128 ms)
CANDIDATE_PROBABILITY = 0.3  # a coarse frame this likely to be speech is looked at closely...
REFINE_MARGIN_S = 1.5  # ...with this much around it
PREFILTER_MARGIN_S = 0.5  # the coarse pass looks this far around where the pre-filter finds a voice possible

SILENCE, MUSIC, SPEECH = 0, 1, 2
KIND_NAMES = {SILENCE: "silence", MUSIC: "music", SPEECH: "speech"}


def split(audio: Audio, levels_db: np.ndarray | None = None, prefilter: bool = True) -> list[Span]:
    """Ordered, contiguous segments (speech | music | silence) covering the whole recording.

    `levels_db` may be given when the frame levels were measured while decoding
    (audits.spool). `prefilter=False` runs the VAD's coarse pass over all sound, not only
    where audits.prefilter finds a voice possible (the same segments, slower).
    """
    samples = audio.samples
    if len(samples) == 0:
        return []
    if levels_db is None:
        levels_db = frame_levels_db(samples)
    silent = levels_db < silence_threshold_db(levels_db)
    speech_prob = speech_probabilities(samples, active=~silent, prefilter=prefilter)
    labels = label_frames(speech_prob, silent)
    return to_segments(labels, audio.duration_s)


def frame_levels_db(samples: np.ndarray) -> np.ndarray:
    """RMS level of each FRAME_N frame in dBFS (the last, partial frame included)."""
    whole_n = len(samples) // FRAME_N
    frames = samples[: whole_n * FRAME_N].reshape(whole_n, FRAME_N)  # a view: no copy of a long file
    mean_square = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / FRAME_N
    tail = samples[whole_n * FRAME_N:]
    if len(tail):
        mean_square = np.r_[mean_square, np.mean(np.square(tail, dtype=np.float64))]
    return 10 * np.log10(mean_square + 1e-12)


def silence_threshold_db(levels_db: np.ndarray) -> float:
    """The level under which a frame is silence: a margin over the file's own line-noise floor."""
    # Pauses between words fall to the line noise, so even a file without dead air has enough
    # noise-floor frames; a few glitch frames (dropouts) must not set the floor, hence not the minimum.
    quiet_rank = max(int(FLOOR_FRAMES_S / FRAME_S), int(FLOOR_FRAMES_SHARE * len(levels_db)))
    quiet_rank = min(quiet_rank, len(levels_db) - 1)
    floor_db = max(float(np.partition(levels_db, quiet_rank)[quiet_rank]), -100.0)
    return min(floor_db + SILENCE_MARGIN_DB, SILENCE_CEILING_DBFS)


def speech_probabilities(samples: np.ndarray, active: np.ndarray, prefilter: bool = True) -> np.ndarray:
    """Silero's speech probability per frame (0 in stretches of silence, and of steady music).

    Two passes keep a long hold cheap: a coarse pass feeds Silero every COARSE_STRIDE-th window
    (it still tells voices from music, a little less sharply), then whatever might be speech is
    run again, with REFINE_MARGIN_S around it, at full resolution for exact message boundaries.
    Hold music, most of a hold, is only seen by the coarse pass, and only where the pre-filter
    (audits.prefilter) finds a voice possible: its blocks where the spectrum stays steady are
    skipped (`prefilter=False` runs them all). Blocks are laid out as without the pre-filter, so
    the blocks that run give the same probabilities.
    """
    run_only = None
    if prefilter:
        run_only = _widened(possible_speech(samples, active), PREFILTER_MARGIN_S)
    coarse = _vad(samples, active, stride=COARSE_STRIDE, run_only=run_only)
    maybe_speech = (coarse >= CANDIDATE_PROBABILITY) & active
    near_speech = _widened(maybe_speech, REFINE_MARGIN_S)
    fine = _vad(samples, near_speech & active, stride=1)
    return np.where(near_speech, fine, coarse)


def _widened(frames: np.ndarray, margin_s: float) -> np.ndarray:
    """The frames marked in `frames`, and those within `margin_s` of one."""
    margin = int(margin_s / FRAME_S)
    return np.convolve(frames, np.ones(2 * margin + 1))[margin: margin + len(frames)] > 0


@functools.lru_cache(maxsize=1)
def _vad_session():
    """The Silero VAD model that ships inside the faster-whisper wheel (no download)."""
    import onnxruntime
    from faster_whisper.utils import get_assets_path

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # parallel over blocks instead
    options.log_severity_level = 4
    return onnxruntime.InferenceSession(os.path.join(get_assets_path(), "silero_vad_v6.onnx"),
                                        sess_options=options, providers=["CPUExecutionProvider"])


def _vad(samples: np.ndarray, wanted: np.ndarray, stride: int, run_only: np.ndarray | None = None) -> np.ndarray:
    """Speech probability for the `wanted` frames (and short gaps between them; 0 elsewhere).

    Frames run in blocks of at most VAD_BLOCK_FRAMES, each from a fresh recurrent state primed by
    the half second before it: after a long stretch of music a running Silero takes up to ~1.5 s
    to accept that a voice started, against ~0.3 s when fresh. Blocks run on all cores
    (onnxruntime releases the GIL). With stride > 1 only every stride-th window is fed and the
    frames between are interpolated. With `run_only`, a block none of whose frames it marks is not
    run (its probabilities stay 0).
    """
    session = _vad_session()
    probabilities = np.zeros(len(wanted), dtype=np.float32)

    def run_block(frame_range: tuple[int, int]) -> None:
        first, last = frame_range
        warm_first = max(0, first - VAD_WARMUP_FRAMES)
        fed = np.arange(warm_first, last, stride)
        windows = _windows(samples, fed)
        state = np.zeros((1, 1, 128), dtype=np.float32)
        output, _, _ = session.run(None, {"input": windows, "h": state, "c": state})
        probabilities[first:last] = np.interp(np.arange(first, last), fed, output.reshape(-1))

    blocks = _block_ranges(wanted)
    if run_only is not None:
        blocks = [(first, last) for first, last in blocks if run_only[first:last].any()]
    with ThreadPoolExecutor(max_workers=max(1, min(os.cpu_count() or 1, 4))) as pool:
        list(pool.map(run_block, blocks))
    return probabilities


def _windows(samples: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Silero's input for the given frames: each frame's FRAME_N samples after the 64 before it."""
    context_n = VAD_INPUT_N - FRAME_N
    first_n, last_n = int(frames[0]) * FRAME_N - context_n, (int(frames[-1]) + 1) * FRAME_N
    lead_n = max(0, -first_n)  # before the file's start: zeros, as Silero's own wrapper does
    span = samples[max(0, first_n): last_n]
    span = np.pad(span, (lead_n, last_n - first_n - lead_n - len(span)))  # and past its end
    starts = (frames - frames[0]) * FRAME_N
    return span[starts[:, None] + np.arange(VAD_INPUT_N)]


def _block_ranges(wanted: np.ndarray) -> list[tuple[int, int]]:
    """[first, last) frame ranges covering the wanted frames, in blocks of at most VAD_BLOCK_FRAMES;
    gaps under a second are covered too, so a pause does not restart the VAD inside a message."""
    starts, lengths = _runs(wanted)
    keep = wanted[starts] | (lengths < VAD_WARMUP_FRAMES * 2)
    keep[[0, -1]] = wanted[starts[[0, -1]]]  # no leading or trailing gap
    ranges = []
    for start, length in zip(starts[keep], lengths[keep]):
        end = int(start + length)
        if ranges and ranges[-1][1] == start:
            start = ranges.pop()[0]
        ranges.append((int(start), end))
    return [(first, min(first + VAD_BLOCK_FRAMES, last))
            for begin, last in ranges for first in range(begin, last, VAD_BLOCK_FRAMES)]


def label_frames(speech_prob: np.ndarray, silent: np.ndarray) -> np.ndarray:
    """Frame labels (SILENCE, MUSIC, SPEECH) from speech probabilities and the silence mask."""
    labels = np.where(silent, SILENCE, MUSIC).astype(np.int8)
    for first, last in speech_regions(speech_prob, silent):
        labels[first:last] = SPEECH
    return _absorb_short_runs(labels)


def speech_regions(speech_prob: np.ndarray, silent: np.ndarray) -> list[tuple[int, int]]:
    """[first, last) frame ranges of spoken messages.

    Voiced frames (probability >= SPEECH_PROBABILITY) belong to one message unless what lies
    between them is a message gap: a run of silence of at least SILENCE_GAP_S, a run of sound the
    VAD is sure is not a voice (music) of at least MUSIC_GAP_S, or more than MAX_GAP_S in all.
    Pauses between a message's sentences are silent but shorter; its consonants are brief.
    """
    voiced_at = np.flatnonzero((speech_prob >= SPEECH_PROBABILITY) & ~silent)
    if len(voiced_at) == 0:
        return []
    gap_starts = np.union1d(_long_run_starts(silent, SILENCE_GAP_S),
                            _long_run_starts(~silent & (speech_prob < MUSIC_PROBABILITY), MUSIC_GAP_S))
    # consecutive voiced frames with a gap start between them belong to different messages
    gaps_before = np.searchsorted(gap_starts, voiced_at)
    breaks = np.flatnonzero((np.diff(gaps_before) > 0) | (np.diff(voiced_at) * FRAME_S > MAX_GAP_S))
    firsts = voiced_at[np.r_[0, breaks + 1]]
    lasts = voiced_at[np.r_[breaks, len(voiced_at) - 1]] + 1
    regions, previous_last = [], 0
    for first, last in zip(firsts, lasts):
        if (last - first) * FRAME_S < MIN_SPEECH_S:
            continue
        first = _onset(speech_prob, silent, int(first), floor=previous_last)
        regions.append((first, int(last)))
        previous_last = int(last)
    return regions


def _long_run_starts(mask: np.ndarray, min_s: float) -> np.ndarray:
    """First frame of each run of True in `mask` lasting at least `min_s`."""
    starts, lengths = _runs(mask)
    return starts[mask[starts] & (lengths * FRAME_S >= min_s)]


def _onset(speech_prob: np.ndarray, silent: np.ndarray, first: int, floor: int) -> int:
    """Move a region's start back to where the voice began: Silero may need a few hundred ms to
    reach SPEECH_PROBABILITY, but its probability stirs at the first syllable. Short dips
    (a stop consonant, a frame of quiet) are stepped over; a longer one ends the search."""
    limit = max(floor, first - int(MAX_ONSET_S / FRAME_S))
    tolerance = int(ONSET_DIP_S / FRAME_S)
    onset, dip = first, 0
    for i in range(first - 1, limit - 1, -1):
        if speech_prob[i] >= ONSET_PROBABILITY and not silent[i]:
            onset, dip = i, 0
        else:
            dip += 1
            if dip > tolerance:
                break
    return onset


def _runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of each run of equal labels."""
    starts = np.r_[0, np.flatnonzero(np.diff(labels)) + 1]
    return starts, np.diff(np.r_[starts, len(labels)])


def _absorb_short_runs(labels: np.ndarray) -> np.ndarray:
    """Music and silence runs shorter than 1 s take the kind of their longer music/silence
    neighbour, shortest first: a rest inside music is music, a click in dead air is silence, and
    the tail of a word after a message does not turn the silence after it into music. Runs are
    never absorbed into speech, so a short gap still keeps two messages apart."""
    labels = labels.copy()
    for max_s in ABSORB_STEPS_S:
        starts, lengths = _runs(labels)
        kinds = labels[starts]
        for i in np.flatnonzero((kinds != SPEECH) & (lengths * FRAME_S < max_s)):
            neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(kinds) and kinds[j] != SPEECH]
            if neighbours:
                kinds[i] = kinds[max(neighbours, key=lambda j: lengths[j])]
                labels[starts[i]: starts[i] + lengths[i]] = kinds[i]
    return labels


def to_segments(labels: np.ndarray, duration_s: float) -> list[Span]:
    """Frame labels to contiguous segments; the last one ends exactly at the end of the audio."""
    starts, lengths = _runs(labels)
    segments = [Span(start_s=float(start * FRAME_S), end_s=float((start + length) * FRAME_S),
                        kind=KIND_NAMES[int(labels[start])])
                for start, length in zip(starts, lengths)]
    segments[-1].end_s = duration_s
    return segments
