"""Speech / music / silence segmentation (audits.segment) scored against generated ground truth."""
import json

import numpy as np
import pytest

from audits import segment
from audits.audio import load
from audits.data import SAMPLE_RATE, Audio
from tests.audio_fixtures import ROOT, HoldRecording, make_hold

KINDS = ("speech", "music", "silence")


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Three short holds (~40-60 s), built once for the module."""
    folder = tmp_path_factory.mktemp("segment")
    return {
        # a reassurance, 35 s of dead air, a tip: 8 kHz mu-law like a Twilio recording
        "dead_air": make_hold(folder, ["music 5", "say thanks-patience", "silence 35", "music 4",
                                       "say tip-online-billing", "music 3"], name="dead_air"),
        # five messages close together, five voices and paces, 16 kHz PCM, other music
        "close": make_hold(folder, [
            "music 4", "say galaxy-upgrade speed=125", "silence 1",
            "say thanks-patience voice=en-us+f3 speed=185", "music 1.5",
            "say wait-announcement voice=en-gb-scotland", "music 3",
            "say fiber-offer voice=en-029 pitch=70", "silence 0.8",
            "say outage-northeast voice=en-gb-x-rp speed=140", "music 3"],
            name="close", format="pcm-16k", seed=11),
        # nothing but hold music
        "music_only": make_hold(folder, ["music 40"], name="music_only", seed=5),
        # three messages a second of music apart (music 1.2 s incl. fades): three plays, not one
        "music_gaps": make_hold(folder, [
            "music 3", "say galaxy-upgrade", "music 1.0", "say thanks-patience", "music 1.2",
            "say wait-announcement", "music 3"], name="music_gaps", seed=12),
        # two- and three-word phrases (0.3-0.9 s) between music: what a coarse VAD pass could step over
        "short_phrases": make_hold(folder, [
            "music 4", "say hold", "music 5", "say moment", "music 3", "say thanks", "music 4",
            "say hold voice=en-gb speed=200", "music 4", "say moment voice=en-us+f3", "music 6"],
            name="short_phrases", messages=SHORT_PHRASES, seed=1),
    }


SHORT_PHRASES = {"hold": "Please hold.", "moment": "One moment.", "thanks": "Thanks."}


def split_file(hold: HoldRecording):
    return segment.split(load(hold.path))


def frame_accuracy(segments, hold: HoldRecording, step_s=0.01) -> float:
    """Share of 10 ms steps whose predicted kind is the truth's."""
    def labels(spans):
        out = np.full(int(hold.duration_s / step_s), -1)
        for start_s, end_s, kind in spans:
            out[int(start_s / step_s):int(end_s / step_s)] = KINDS.index(kind)
        return out
    truth = labels((s["start_s"], s["end_s"], s["kind"]) for s in hold.timeline)
    predicted = labels((s.start_s, s.end_s, s.kind) for s in segments)
    return float(np.mean(truth == predicted))


def overlapping(segments, start_s, end_s, kind="speech"):
    return [s for s in segments if s.kind == kind and s.start_s < end_s and s.end_s > start_s]


def assert_well_formed(segments, duration_s):
    assert segments[0].start_s == 0 and segments[-1].end_s == pytest.approx(duration_s)
    assert all(a.end_s == b.start_s for a, b in zip(segments, segments[1:]))
    assert all(s.kind in KINDS and s.end_s > s.start_s for s in segments)
    assert all(a.kind != b.kind for a, b in zip(segments, segments[1:]))


def assert_each_message_is_one_segment(segments, hold: HoldRecording, tolerance_s=0.5):
    truth_plays = hold.spans("speech")
    for start_s, end_s in truth_plays:
        (found,) = overlapping(segments, start_s, end_s)  # exactly one segment per play
        assert abs(found.start_s - start_s) < tolerance_s and abs(found.end_s - end_s) < tolerance_s
    assert len([s for s in segments if s.kind == "speech"]) == len(truth_plays)


def assert_music_never_speech(segments, hold: HoldRecording, edge_s=0.5):
    for start_s, end_s in hold.spans("music"):
        assert not overlapping(segments, start_s + edge_s, end_s - edge_s), (start_s, end_s)


def assert_agrees_with_truth(segments, hold: HoldRecording, min_accuracy: float):
    assert_well_formed(segments, hold.duration_s)
    assert frame_accuracy(segments, hold) >= min_accuracy
    assert_each_message_is_one_segment(segments, hold)
    assert_music_never_speech(segments, hold)


# ---------------------------------------------------------------- real recordings

@pytest.mark.parametrize("name", ["dead_air", "close", "music_only", "short_phrases", "music_gaps"])
def test_segments_agree_with_the_truth(recordings, name):
    hold = recordings[name]
    assert_agrees_with_truth(split_file(hold), hold, min_accuracy=0.95)


@pytest.mark.parametrize("name", ["dead_air", "close", "music_only", "music_gaps", "short_phrases"])
def test_the_prefilter_changes_no_segment(recordings, name):
    """Silero everywhere there is sound, or only where audits.prefilter finds a voice possible: the same."""
    audio = load(recordings[name].path)
    outline = lambda segments: [(s.start_s, s.end_s, s.kind) for s in segments]
    assert outline(segment.split(audio)) == outline(segment.split(audio, prefilter=False))


def test_dead_air_is_one_silence(recordings):
    hold = recordings["dead_air"]
    segments = split_file(hold)
    ((start_s, end_s),) = hold.spans("silence")
    (found,) = overlapping(segments, start_s, end_s, kind="silence")
    assert abs(found.start_s - start_s) < 0.5 and abs(found.end_s - end_s) < 0.5
    assert found.duration_s >= 34


def test_hold_music_alone_has_no_speech(recordings):
    segments = split_file(recordings["music_only"])
    assert [s.kind for s in segments] == ["music"]


def test_quick_start_sample():
    """The committed 10-minute sample: 14 plays found one by one, 35 s of dead air, music is music."""
    hold = HoldRecording(ROOT / "sample_audio" / "hold-10min.wav",
                         json.loads((ROOT / "sample_audio" / "hold-10min.truth.json").read_text()))
    segments = split_file(hold)
    assert_agrees_with_truth(segments, hold, min_accuracy=0.97)
    assert [round(s.duration_s) for s in segments if s.kind == "silence"] == [35]


# ---------------------------------------------------------------- edge cases

def audio_of(samples):
    return Audio(path="synthetic.wav", samples=np.asarray(samples, dtype=np.float32))


def test_digital_silence_and_line_noise_are_silence():
    rng = np.random.default_rng(0)
    for samples in (np.zeros(SAMPLE_RATE * 5), rng.normal(0, 10 ** (-62 / 20), SAMPLE_RATE * 5)):
        segments = segment.split(audio_of(samples))
        assert [(s.kind, s.start_s, s.end_s) for s in segments] == [("silence", 0.0, 5.0)]


def test_tiny_and_empty_audio():
    assert segment.split(audio_of([])) == []
    (only,) = segment.split(audio_of(np.zeros(100)))
    assert (only.kind, only.end_s) == ("silence", pytest.approx(100 / SAMPLE_RATE))


@pytest.mark.parametrize("seconds", [0.05, 1.0, 2.5])
def test_short_clips_of_a_message(recordings, seconds):
    """Clips shorter than the VAD's blocks and margins: one frame label each, covering the clip."""
    hold = recordings["dead_air"]
    (start_s, _), = hold.plays("thanks-patience")
    samples = load(hold.path).samples[int(start_s * SAMPLE_RATE):][:int(seconds * SAMPLE_RATE)]
    probabilities = segment.speech_probabilities(samples, np.ones(-(-len(samples) // segment.FRAME_N), bool))
    assert len(probabilities) == -(-len(samples) // segment.FRAME_N)
    segments = segment.split(audio_of(samples))
    assert_well_formed(segments, seconds)
    if seconds > 1:
        (speech,) = [s for s in segments if s.kind == "speech"]
        assert speech.duration_s >= 0.8 * seconds


def test_a_click_in_dead_air_stays_silence():
    samples = np.random.default_rng(1).normal(0, 1e-3, SAMPLE_RATE * 6)
    samples[SAMPLE_RATE * 3: SAMPLE_RATE * 3 + 800] = 0.5  # a 50 ms click
    assert [s.kind for s in segment.split(audio_of(samples))] == ["silence"]


# ---------------------------------------------------------------- the joining rules

def frames(seconds):
    return int(round(seconds / segment.FRAME_S))


def regions_of(pattern):
    """speech_regions() over a pattern of (kind, seconds): 'voice', 'pause' (silent), 'music'."""
    probability = {"voice": 0.9, "pause": 0.02, "music": 0.0}
    prob = np.concatenate([np.full(frames(s), probability[k]) for k, s in pattern])
    silent = np.concatenate([np.full(frames(s), k == "pause") for k, s in pattern])
    return [(round(a * segment.FRAME_S, 1), round(b * segment.FRAME_S, 1))
            for a, b in segment.speech_regions(prob, silent)]


def test_sentence_pauses_stay_inside_one_message():
    assert regions_of([("music", 2), ("voice", 2), ("pause", 0.5), ("voice", 2), ("music", 2)]) == [(2.0, 6.5)]


def test_messages_split_on_silence_or_music_between_them():
    assert len(regions_of([("voice", 2), ("pause", 0.8), ("voice", 2)])) == 2
    assert len(regions_of([("voice", 2), ("music", 1.0), ("voice", 2)])) == 2


def test_voiced_blips_are_not_messages():
    assert regions_of([("music", 2), ("voice", 0.1), ("music", 2)]) == []

