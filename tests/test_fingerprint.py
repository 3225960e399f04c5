"""Acoustic grouping (audits.fingerprint) and transcribing each distinct recording once (audits.pipeline).

Real generated holds (espeak-ng speech, hold music, telephone channel, mu-law) and the real
faster-whisper engine (tiny.en); the engine is wrapped only to count its calls.
"""
import tomllib
from pathlib import Path

import numpy as np
import pytest

from audits import fingerprint, pipeline
from audits.classify import CatalogMessage
from app.core.audit import Context, Issue
from audits.data import SAMPLE_RATE
from audits.spool import spool
from audits.transcribe import shared_engine
from tests.audio_fixtures import DEMO_MESSAGES, ROOT, make_hold
from tests.speech import speak

pytestmark = pytest.mark.slow

NEAR_MISSES = {  # one word apart: different recordings that must never share a transcript
    "number-two": {"text": "You are number two in line.", "category": "wait"},
    "number-three": {"text": "You are number three in line.", "category": "wait"},
    "fifty-off": {"text": "Get fifty percent off your first three months.", "category": "promo"},
    "fifteen-off": {"text": "Get fifteen percent off your first three months.", "category": "promo"},
}
DANA = Context(open_issues=[Issue("CASE-1042", "high", "Galaxy S7 reboots during calls")],
               owned_products=["Galaxy S7"], queue="support")


def demo_catalog() -> list[CatalogMessage]:
    flows = tomllib.loads((ROOT / "app" / "demo_data" / "flows.toml").read_text())
    return [CatalogMessage(segment["say"], tuple(segment.get("products", ())))
            for segment in flows["segment"] if segment.get("say")]


@pytest.fixture(scope="module")
def grouping_hold(tmp_path_factory):
    """Two messages of similar length (~6 s) and two pairs of near misses, each played again later with
    other music around it, one re-recorded by another voice; line noise 17 dB above the default."""
    timeline = []
    for say in ["thanks-patience", "fiber-offer", "number-two", "number-three", "fifty-off", "fifteen-off",
                "thanks-patience", "fiber-offer", "number-two", "fifty-off",
                "thanks-patience voice=en-gb-x-rp speed=130"]:
        timeline += ["music 2.5", f"say {say}"]
    return make_hold(tmp_path_factory.mktemp("grouping"), [*timeline, "music 2"], name="grouping",
                     messages={**DEMO_MESSAGES, **NEAR_MISSES}, noise_dbfs=-45.0, seed=21)


def speech_plays(hold):
    """The segmenter's speech segments, each named by the truth span it overlaps, and its samples."""
    with spool(hold.path) as recording:
        segments = pipeline.split(recording.audio, recording.levels_db)
        speech = [s for s in segments if s.kind == "speech"]
        clips = [recording.audio.samples[int(s.start_s * SAMPLE_RATE):int(s.end_s * SAMPLE_RATE)] for s in speech]
    truth = [span for span in hold.timeline if span["kind"] == "speech"]
    names = []
    for s in speech:
        (span,) = [t for t in truth if t["start_s"] < s.end_s and t["end_s"] > s.start_s]
        names.append(span["message"] + ("" if span.get("voice", "en-us") == "en-us" else "@" + span["voice"]))
    return names, clips


def test_plays_of_one_recording_group_together_and_different_messages_stay_apart(grouping_hold):
    names, clips = speech_plays(grouping_hold)
    assert len(names) == 11, names
    labels = fingerprint.group_clips(clips)
    groups = {}
    for name, label in zip(names, labels):
        groups.setdefault(label, set()).add(name)
    # each recording is exactly one group: replays joined, near misses and the re-recording apart
    assert sorted(sorted(g) for g in groups.values()) == sorted([[name] for name in set(names)])
    assert labels.count(labels[names.index("thanks-patience")]) == 2  # the re-recording is not one of them
    assert len(set(labels)) == 7


def test_near_misses_score_far_below_replays(grouping_hold):
    names, clips = speech_plays(grouping_hold)
    prints = {}
    for name, clip in zip(names, clips):
        prints.setdefault(name, []).append(fingerprint.fingerprint(clip))
    replay = fingerprint.compare(*prints["number-two"])
    near_miss = fingerprint.compare(prints["number-two"][0], prints["number-three"][0])
    assert replay.same and replay.local_similarity > 0.7
    assert not near_miss.same and near_miss.local_similarity < 0.45
    assert not fingerprint.compare(prints["fifty-off"][0], prints["fifteen-off"][0]).same
    other_voice = fingerprint.compare(prints["thanks-patience"][0], prints["thanks-patience@en-gb-x-rp"][0])
    assert other_voice.similarity < 0.5


def with_line_noise(samples: np.ndarray, noise_rms: float, seed: int) -> np.ndarray:
    return samples + noise_rms * np.random.default_rng(seed).standard_normal(len(samples)).astype(np.float32)


def test_fingerprints_ignore_level_and_line_noise_but_not_content():
    sentence = speak("Thank you for holding, an agent will be with you shortly.")  # about -20 dBFS
    base = fingerprint.fingerprint(with_line_noise(sentence, 0.001, seed=1))  # noise at -60 dBFS
    quieter_noisier = fingerprint.fingerprint(with_line_noise(0.3 * sentence, 0.002, seed=2))  # 24 dB SNR
    later = fingerprint.fingerprint(with_line_noise(np.r_[np.zeros(SAMPLE_RATE // 5, np.float32), sentence],
                                                    0.001, seed=3))  # starts 0.2 s later
    other = fingerprint.fingerprint(with_line_noise(speak("Please visit our website to pay your bill online."),
                                                    0.001, seed=4))
    assert fingerprint.compare(base, quieter_noisier).same
    match = fingerprint.compare(base, later)
    assert match.same and match.shift_frames == 20
    assert not fingerprint.compare(base, other).same and fingerprint.compare(base, other).similarity < 0.3
    assert fingerprint.compare(base, fingerprint.fingerprint(np.zeros(100, np.float32))) == fingerprint.NO_MATCH


def test_durations_gate():
    assert fingerprint.durations_match(8.0, 8.6) and fingerprint.durations_match(2.0, 2.45)
    assert not fingerprint.durations_match(8.0, 6.5)  # a play cut short is left to the text grouping


class CountingEngine:
    """The real engine, counting the clips it is given."""

    def __init__(self, engine):
        self.engine, self.calls = engine, 0

    def transcribe_many(self, clips, starts_s=None, prompt=None):
        self.calls += len(clips)
        return self.engine.transcribe_many(clips, starts_s, prompt)


@pytest.fixture(scope="module")
def loop_hold(tmp_path_factory):
    """A short loop: the Galaxy promo 3 times (once re-recorded, slower), reassurance 4 times, dead air."""
    return make_hold(tmp_path_factory.mktemp("loop"), [
        "music 3", "say galaxy-upgrade", "music 3", "say thanks-patience", "music 3", "say thanks-patience",
        "silence 31", "music 2", "say galaxy-upgrade", "music 3", "say thanks-patience", "music 3",
        "say galaxy-upgrade voice=en-us+f3 speed=130 pitch=60", "music 3", "say thanks-patience", "music 2"],
        name="loop", seed=22)


def outline(result):
    """What the findings and messages say, without transcript wording: (rule, category, count, severity)
    and (category, plays, first play)."""
    category = {m.id: m.category for m in result.messages}
    return ([(f.rule, category.get(f.message_id), f.count, f.severity) for f in result.findings],
            [(m.category, m.plays, round(m.play_times_s[0], 2)) for m in result.messages])


def test_each_recording_is_transcribed_once_with_the_same_findings(loop_hold):
    engine = shared_engine("faster-whisper", "tiny.en")
    once, every = CountingEngine(engine), CountingEngine(engine)
    # without the flow's scripts, whose hearings are counted in tests/test_scripts.py and test_ray_batch.py
    grouped = pipeline.audit_file(loop_hold.path, DANA, once, demo_catalog(), scripts=False)
    ungrouped = pipeline.audit_file(loop_hold.path, DANA, every, demo_catalog(), acoustic_grouping=False)
    assert every.calls == 7  # every play
    assert once.calls == 3  # the promo, its re-recording, the reassurance
    assert outline(grouped) == outline(ungrouped)
    findings, messages = outline(grouped)
    assert [rule for rule, *_ in findings] == ["repeated_promo", "promo_during_open_issue", "promo_for_owned_product",
                                                "repeated_reassurance", "promo_share_high", "long_silence"]
    assert [(category, plays) for category, plays, _ in messages] == [("promo", 3), ("reassurance", 4)]


def test_every_play_gets_its_groups_text_and_progress_counts_engine_runs(loop_hold):
    engine, seen = CountingEngine(shared_engine("faster-whisper", "tiny.en")), []
    with spool(loop_hold.path) as recording:
        segments = pipeline.split(recording.audio, recording.levels_db)
        transcripts, labels = pipeline.transcribe_distinct(recording.audio, segments, engine,
                                                           on_segment=lambda *done_total: seen.append(done_total))
    speech = [s for s in segments if s.kind == "speech"]
    assert [(t.start_s, t.end_s) for t in transcripts] == [(s.start_s, s.end_s) for s in speech]
    assert labels == [0, 1, 1, 0, 1, 2, 1]  # the 2nd promo play joined the 1st; the re-recording is group 2
    # The reassurance is heard surely (avg_logprob -0.35) once, for its four plays. The promo's first
    # hearing is unsure (-0.75 < LOW_CONFIDENCE_LOGPROB), so its other play is heard too: each decoded
    # play keeps its own text. The re-recording has no other play.
    texts = [{t.text for t, of in zip(transcripts, labels) if of == label} for label in (0, 1, 2)]
    assert [len(heard) for heard in texts] == [2, 1, 1]
    assert min(t.avg_logprob for t, of in zip(transcripts, labels) if of == 0) < pipeline.LOW_CONFIDENCE_LOGPROB
    assert engine.calls == 4 and seen == [(3, 3), (4, 4)]  # one batch of three clips, then the promo again
