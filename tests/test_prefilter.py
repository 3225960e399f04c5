"""The music/silence pre-filter (audits.prefilter): it rules out steady music and silence, never a voice.

The recordings are generated (espeak-ng speech, the generator's hold music, a telephone line) and
go through the real decoder; "never a voice" is checked against the truth and against Silero VAD
run without the pre-filter: the segments must be the same.
"""
import json

import numpy as np
import pytest
import soundfile as sf

from audits import prefilter, segment
from audits.audio import load
from audits.data import SAMPLE_RATE, Audio
from tests.audio_fixtures import DEMO_MESSAGES, ROOT, generate, make_hold

RATE = generate.WORK_RATE
LEAD_S = 6.0  # music (or line noise) before the voice
TAIL_S = 6.0


def _gain(dbfs: float) -> float:
    return 10 ** (dbfs / 20)


def mixed(folder, name: str, *, speech_dbfs: float, music_dbfs: float | None, music_after_start: bool = True,
          message: str = "galaxy-upgrade", voice: str = "en-us", seed: int = 3, output_format: str = "ulaw-8k"):
    """A voice laid over hold music that keeps playing under it (or, with music_after_start=False,
    music cut off the moment the voice starts; music_dbfs=None: line noise only). Returns the
    WAV's path and the voice's (start_s, end_s)."""
    voice_samples = generate.speak(DEMO_MESSAGES[message]["text"], voice, 155, 50)
    voice_samples = voice_samples * (_gain(speech_dbfs) / generate._active_rms(voice_samples))
    total_n = int((LEAD_S + TAIL_S) * RATE) + len(voice_samples)
    mix = np.zeros(total_n, dtype=np.float32)
    if music_dbfs is not None:
        loop = generate.music_loop(seed)
        mix += np.take(loop * (_gain(music_dbfs) / generate._active_rms(loop)), np.arange(total_n), mode="wrap")
    start_n = int(LEAD_S * RATE)
    if not music_after_start:
        mix[start_n:] = 0
    mix[start_n: start_n + len(voice_samples)] += voice_samples
    mix += np.random.default_rng(seed).standard_normal(total_n).astype(np.float32) * _gain(-62)  # line noise
    samples, rate = generate.telephone_channel(mix, output_format)
    path = folder / f"{name}.wav"
    sf.write(path, samples, rate, subtype="ULAW" if output_format == "ulaw-8k" else "PCM_16")
    return path, (LEAD_S, LEAD_S + len(voice_samples) / RATE)


def sounding(samples) -> np.ndarray:
    levels_db = segment.frame_levels_db(samples)
    return levels_db >= segment.silence_threshold_db(levels_db)


def possible(audio: Audio) -> np.ndarray:
    return prefilter.possible_speech(audio.samples, sounding(audio.samples))


def frames_of(start_s: float, end_s: float) -> slice:
    return slice(int(start_s / segment.FRAME_S), int(end_s / segment.FRAME_S))


def speech_of(segments) -> list[tuple[float, float]]:
    return [(s.start_s, s.end_s) for s in segments if s.kind == "speech"]


def assert_same_segments_as_without(audio: Audio) -> list:
    """Silero over every sounding frame, and only where the pre-filter lets it: the same segments."""
    with_prefilter = segment.split(audio)
    without = segment.split(audio, prefilter=False)
    assert [(s.start_s, s.end_s, s.kind) for s in with_prefilter] == [(s.start_s, s.end_s, s.kind) for s in without]
    return with_prefilter


# ---------------------------------------------------------------- a voice is never ruled out

@pytest.mark.parametrize("speech_dbfs", [-20.0, -24.0, -27.0])
def test_speech_over_music_is_kept(tmp_path, speech_dbfs):
    """A voice over music that plays on under it, from 4 dB over the music to 3 dB under it."""
    path, (start_s, end_s) = mixed(tmp_path, "over", speech_dbfs=speech_dbfs, music_dbfs=-24.0)
    audio = load(path)
    assert possible(audio)[frames_of(start_s, end_s)].mean() >= 0.7
    found = speech_of(assert_same_segments_as_without(audio))
    assert found and start_s - 0.3 <= found[0][0] <= start_s + 0.3  # Silero hears it, and so it is kept


def test_speech_over_music_16k_and_another_voice(tmp_path):
    path, (start_s, end_s) = mixed(tmp_path, "wide", speech_dbfs=-24.0, music_dbfs=-24.0, seed=9,
                                   voice="en-gb-scotland", message="thanks-patience", output_format="pcm-16k")
    audio = load(path)
    assert possible(audio)[frames_of(start_s, end_s)].mean() >= 0.7
    assert speech_of(assert_same_segments_as_without(audio))


@pytest.mark.parametrize("speech_dbfs", [-45.0, -50.0])
def test_quiet_speech_is_kept(tmp_path, speech_dbfs):
    """25-30 dB under a normal voice, over the line noise alone: its sounding frames are all kept."""
    path, (start_s, end_s) = mixed(tmp_path, "quiet", speech_dbfs=speech_dbfs, music_dbfs=None)
    audio = load(path)
    voice = frames_of(start_s, end_s)
    assert np.array_equal(possible(audio)[voice], sounding(audio.samples)[voice])
    assert speech_of(assert_same_segments_as_without(audio))


def test_speech_right_after_music(tmp_path):
    """Music cut off by a voice, no fade and no pause: kept from its first syllable."""
    path, (start_s, end_s) = mixed(tmp_path, "cut", speech_dbfs=-20.0, music_dbfs=-24.0, music_after_start=False,
                                   message="thanks-patience")
    audio = load(path)
    first_possible_s = np.flatnonzero(possible(audio))[0] * segment.FRAME_S
    assert start_s - 1.0 <= first_possible_s <= start_s + 0.1
    (found,) = speech_of(assert_same_segments_as_without(audio))
    assert found[0] == pytest.approx(start_s, abs=0.15)


def test_holds_segment_the_same(tmp_path):
    """Holds with short phrases between music and messages a second of music apart."""
    hold = make_hold(tmp_path, ["music 4", "say galaxy-upgrade", "music 1.2", "say thanks-patience", "music 8",
                                "say tip-online-billing voice=en-us+f3 speed=190", "silence 3", "music 6"],
                     name="mixed_hold", seed=21)
    audio = load(hold.path)
    segments = assert_same_segments_as_without(audio)
    assert len(speech_of(segments)) == 3
    for start_s, end_s in hold.spans("speech"):
        assert possible(audio)[frames_of(start_s, end_s)].mean() >= 0.5


# ---------------------------------------------------------------- music and silence are ruled out

@pytest.mark.parametrize("seed", [1, 5, 12, 45])
@pytest.mark.parametrize("output_format", ["ulaw-8k", "pcm-16k"])
def test_hold_music_alone_is_ruled_out(tmp_path, seed, output_format):
    hold = make_hold(tmp_path, ["music 40"], name="music", seed=seed, format=output_format)
    kept = possible(load(hold.path))
    assert kept[frames_of(1.0, 39.0)].mean() < 0.01  # a stray frame at most; the fades at the ends
    assert kept.mean() < 0.05                          # change the level and may be kept


def test_silence_is_ruled_out():
    rng = np.random.default_rng(0)
    for samples in (np.zeros(SAMPLE_RATE * 10, dtype=np.float32),
                    rng.normal(0, 10 ** (-62 / 20), SAMPLE_RATE * 10).astype(np.float32)):
        assert not prefilter.possible_speech(samples, sounding(samples)).any()


def test_the_sample_hold_skips_most_music():
    """The committed 10-minute sample: most of its music is ruled out, none of its 14 plays."""
    truth = json.loads((ROOT / "sample_audio" / "hold-10min.truth.json").read_text())
    audio = load(ROOT / "sample_audio" / "hold-10min.wav")
    kept = possible(audio)
    music = np.zeros(len(kept), dtype=bool)
    for span in truth["timeline"]:
        if span["kind"] == "music":
            music[frames_of(span["start_s"] + 0.5, span["end_s"] - 0.5)] = True
        if span["kind"] == "speech":
            assert kept[frames_of(span["start_s"], span["end_s"])].mean() >= 0.5
    assert kept[music].mean() < 0.1
    assert_same_segments_as_without(audio)


def test_short_and_empty_input():
    assert prefilter.possible_speech(np.zeros(0, dtype=np.float32), np.zeros(0, dtype=bool)).shape == (0,)
    samples = np.random.default_rng(2).normal(0, 0.1, 300).astype(np.float32)  # shorter than one frame
    assert prefilter.possible_speech(samples, np.ones(1, dtype=bool)).tolist() == [True]
