"""Both Whisper engines hear real generated speech, agree with each other, and return "" on non-speech."""
import numpy as np
import pytest
from rapidfuzz import fuzz

from app.core.audit import LOW_CONFIDENCE_WORD, Message
from audits.data import SAMPLE_RATE
from audits.transcribe import Decoded, ModelError, Transcriber, hallucination, load_engine, normalise, shared_engine
from tests.speech import speak

SENTENCE = "Upgrade to the brand new Galaxy S7 today"
ENGINES = ["openai-whisper", "faster-whisper"]


@pytest.fixture(scope="session", params=ENGINES)
def engine(request):
    return shared_engine(request.param)


@pytest.fixture(scope="session")
def sentence_samples():
    return speak(SENTENCE)


def synthetic_music(duration_s: float = 4.0, seed: int = 0) -> np.ndarray:
    """Hold-music stand-in: random notes with harmonics and a struck-string decay, over a bass note."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * SAMPLE_RATE)) / SAMPLE_RATE
    music = np.zeros_like(t)
    beat_s = 0.6
    for start_s in np.arange(0, duration_s, beat_s):
        since_s = np.clip(t - start_s, 0, None) * (t >= start_s)
        pitch_hz = rng.choice([261.63, 293.66, 329.63, 392.0, 440.0, 523.25])
        envelope = (t >= start_s) * np.exp(-2.5 * since_s)
        for harmonic in range(1, 7):
            music += envelope * 0.6 ** harmonic * np.sin(2 * np.pi * pitch_hz * harmonic * since_s)
        music += 0.5 * envelope * np.sin(np.pi * pitch_hz * since_s)  # an octave below
    return (0.3 * music / np.abs(music).max()).astype(np.float32)


NON_SPEECH = {
    "silence": lambda: np.zeros(3 * SAMPLE_RATE, np.float32),
    "line noise": lambda: (0.05 * np.random.default_rng(1).standard_normal(3 * SAMPLE_RATE)).astype(np.float32),
    "music": synthetic_music,
    "other music": lambda: synthetic_music(seed=3),
    "beep tone": lambda: (0.3 * np.sin(2 * np.pi * 440 * np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32),
}


def test_engine_hears_the_sentence(engine, sentence_samples):
    transcript = engine.transcribe(sentence_samples, start_s=70.0)
    assert fuzz.ratio(normalise(transcript.text), normalise(SENTENCE)) >= 80, transcript.text
    assert "galaxy s7" in normalise(transcript.text)
    assert transcript.start_s == 70.0
    assert transcript.end_s == pytest.approx(70.0 + len(sentence_samples) / SAMPLE_RATE)
    assert -1.0 < transcript.avg_logprob < 0 and 0 <= transcript.no_speech_prob < 0.6
    assert 0 < transcript.compression_ratio < 2.4


def test_engines_agree_on_the_same_audio(sentence_samples):
    heard = [shared_engine(name).transcribe(sentence_samples) for name in ENGINES]
    assert fuzz.ratio(normalise(heard[0].text), normalise(heard[1].text)) >= 95
    assert heard[0].avg_logprob == pytest.approx(heard[1].avg_logprob, abs=0.05)
    assert heard[0].no_speech_prob == pytest.approx(heard[1].no_speech_prob, abs=0.05)
    assert [word.text for word in heard[0].words] == [word.text for word in heard[1].words]
    assert [word.probability for word in heard[0].words] == pytest.approx(
        [word.probability for word in heard[1].words], abs=0.011)


def unsure_words(transcript) -> list[str]:
    """The words of a hearing the reports mark: under LOW_CONFIDENCE_WORD."""
    heard = Message("m1", transcript.text, [0.0], [1.0], words=transcript.words)
    return [word.text for _, word in heard.unsure_words()]


def test_engine_hears_each_word_with_a_probability(engine, sentence_samples):
    """The words of the text, each with how sure Whisper was of it: the words of the sentence it heard
    right are not marked unsure (base hears "Upgrade" as "up, read", those it may mark)."""
    transcript = engine.transcribe(sentence_samples)
    assert " ".join(word.text for word in transcript.words) == transcript.text
    assert all(0.0 <= word.probability <= 1.0 for word in transcript.words)
    said = set(normalise(SENTENCE).split())
    heard_right = [word.text for word in transcript.words if normalise(word.text) in said]
    assert len(heard_right) >= 6, transcript.text
    assert not set(heard_right) & set(unsure_words(transcript)), transcript.words


def test_garbled_speech_has_words_marked_unsure(engine, sentence_samples):
    """The sentence under white noise as loud as it (0 dB SNR): Whisper still writes a sentence, and
    says it was unsure of its words."""
    rms = np.sqrt(np.mean(sentence_samples ** 2))
    noise = np.random.default_rng(7).standard_normal(len(sentence_samples)).astype(np.float32) * rms
    transcript = engine.transcribe(sentence_samples + noise)
    assert transcript.words, transcript.text
    assert len(unsure_words(transcript)) >= len(transcript.words) / 2, transcript.words


@pytest.mark.parametrize("kind", NON_SPEECH)
def test_non_speech_gives_no_text(engine, kind):
    transcript = engine.transcribe(NON_SPEECH[kind](), start_s=5.0)
    assert transcript.text == ""
    assert transcript.start_s == 5.0


def test_transcribe_many_keeps_order_and_start_times(sentence_samples):
    engine = shared_engine("faster-whisper")
    silence = np.zeros(SAMPLE_RATE, np.float32)
    transcripts = engine.transcribe_many([silence, sentence_samples], starts_s=[1.0, 12.0])
    assert [t.start_s for t in transcripts] == [1.0, 12.0]
    assert transcripts[0].text == "" and "galaxy" in normalise(transcripts[1].text)


def test_batched_clips_hear_what_each_clip_hears_alone(sentence_samples):
    """faster-whisper decodes clips of up to 20 s with the same token cap together: same text and
    scores as one by one, a beep decoding up to its cap included. A tiny clip, an empty one, one near
    a full window and one over it are decoded alone, in their place."""
    engine = shared_engine("faster-whisper")
    quiet = np.zeros(SAMPLE_RATE // 2, np.float32)
    long_clip = np.concatenate([sentence_samples, np.zeros(31 * SAMPLE_RATE, np.float32), sentence_samples])
    near_full = np.concatenate([np.zeros(22 * SAMPLE_RATE, np.float32), sentence_samples])
    clips = [np.zeros(100, np.float32), sentence_samples, np.zeros(0, np.float32), NON_SPEECH["music"](),
             long_clip, NON_SPEECH["beep tone"](), near_full,
             np.concatenate([quiet, sentence_samples[::-1].copy(), quiet, quiet])]  # reversed: another clip
    starts_s = [1.0, 3.0, 9.0, 20.0, 40.0, 80.0, 90.0, 130.0]
    together = engine.transcribe_many(clips, starts_s)
    alone = [engine.transcribe(clip, start_s) for clip, start_s in zip(clips, starts_s)]
    for batched, single in zip(together, alone):
        assert (batched.start_s, batched.end_s, batched.text) == (single.start_s, single.end_s, single.text)
        assert batched.avg_logprob == pytest.approx(single.avg_logprob, abs=1e-3)
        assert batched.no_speech_prob == pytest.approx(single.no_speech_prob, abs=1e-3)
        assert batched.compression_ratio == pytest.approx(single.compression_ratio, abs=1e-3)
        assert [word.text for word in batched.words] == [word.text for word in single.words]
        assert [word.probability for word in batched.words] == pytest.approx(
            [word.probability for word in single.words], abs=0.011)
    assert together[0].text == together[2].text == together[3].text == together[5].text == ""
    assert "galaxy s7" in normalise(together[1].text) and "galaxy" in normalise(together[6].text)
    assert normalise(together[4].text).count("galaxy") == 2  # both windows of the long clip


def test_empty_segment_gives_no_text():
    transcript = shared_engine("faster-whisper").transcribe(np.zeros(0, np.float32), start_s=3.0)
    assert (transcript.text, transcript.start_s, transcript.end_s) == ("", 3.0, 3.0)


def test_stereo_samples_are_refused():
    with pytest.raises(ValueError, match="mono"):
        shared_engine("faster-whisper").transcribe(np.zeros((2, SAMPLE_RATE), np.float32))


def test_shared_engine_loads_once_per_process():
    assert shared_engine("faster-whisper") is shared_engine("faster-whisper")


@pytest.mark.parametrize("text, no_speech_prob, avg_logprob, rejected", [
    (" Thanks for watching!", 0.05, -0.2, True),  # subtitle phantom, whatever the scores
    (" Subtitles by the Amara.org community", 0.1, -0.3, True),
    (" You", 0.95, -0.97, True),  # silence's usual filler
    (" Thank you.", 0.1, -0.3, False),  # the same kind of filler, clearly spoken
    (" [Music]", 0.2, -0.3, True),
    (" ♪ ♪", 0.2, -0.3, True),
    (" Thank you very much.", 0.88, -1.25, True),  # Whisper's own no-speech rule
    (" Please stay on the line.", 0.65, -0.8, False),  # a quiet voice: unsure of speech, sure of words
    (" I'm going to go ahead and take a look.", 0.95, -0.75, True),  # fluent, but surely not speech
    (" Press one for billing.", 0.1, -1.27, False),  # telephone-band speech: unsure words, sure speech
    (" beep" * 40, 0.5, -0.05, True),  # repetition
    (" Subscribe to our premium plan today.", 0.1, -0.3, False),  # a promo, not a YouTube outro
])
def test_hallucination_guard(text, no_speech_prob, avg_logprob, rejected):
    from whisper.utils import compression_ratio

    decoded = Decoded(text, avg_logprob, no_speech_prob, compression_ratio(text), n_tokens=8)
    assert (hallucination(decoded) is not None) == rejected


def test_annotations_are_stripped_from_kept_text():
    from audits.transcribe import combine

    decoded = [Decoded(" (upbeat music) Welcome to Acme support.", -0.3, 0.1, 1.0, 9)]
    assert combine(decoded, 0.0, 3.0).text == "Welcome to Acme support."


def test_unknown_engine_is_a_one_line_error():
    with pytest.raises(ModelError, match="unknown engine 'whisper-cpp': choose one of openai-whisper, faster-whisper"):
        load_engine("whisper-cpp")


@pytest.mark.parametrize("engine_name", ENGINES)
def test_unknown_model_is_a_one_line_error(engine_name):
    with pytest.raises(ModelError, match=r"unknown model 'huge\.en'") as error:
        load_engine(engine_name, "huge.en")
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def telephone_clips(tmp_path_factory):
    """Every demo message once, over a noisy telephone line in a voice tiny.en mishears often: the
    clips whose last phrase and product names are unsure, cut as the pipeline cuts them."""
    from audits.audio import load
    from audits.pipeline import CLIP_PAD_AFTER_S, CLIP_PAD_BEFORE_S
    from tests.audio_fixtures import DEMO_MESSAGES, make_hold

    timeline = ["music 2"] + [step for message in DEMO_MESSAGES for step in (f"say {message}", "music 2")]
    hold = make_hold(tmp_path_factory.mktemp("telephone"), timeline, name="telephone", voice="en-gb-scotland",
                     noise_dbfs=-40.0, seed=5)
    samples = load(hold.path).samples
    return [samples[int((start_s - CLIP_PAD_BEFORE_S) * SAMPLE_RATE):int((end_s + CLIP_PAD_AFTER_S) * SAMPLE_RATE)]
            for start_s, end_s in hold.spans("speech")]


def test_a_clip_is_heard_the_same_in_a_batch_alone_and_with_another_thread_count(telephone_clips):
    """With the vocabulary prompt, as audits decode: the batched path, the one-clip path (a clip retried
    or over 20 s) and a decoder with other threads hear the same text, so a worker of a batch and a
    single run do. (The batched path once encoded the prompt without Whisper's leading space and
    dropped an unfinished last phrase: 30 and 1 of 60 clips differed in tests/bench/accuracy.py.)"""
    from audits.transcribe import DECODER_THREADS, vocabulary_prompt

    prompt = vocabulary_prompt(["Galaxy S7", "Fiber 1G", "Home Protection Plan"])
    engine = shared_engine("faster-whisper")
    together = engine.transcribe_many(telephone_clips, prompt=prompt)
    alone = [engine.transcribe(clip, prompt=prompt) for clip in telephone_clips]
    other_threads = load_engine("faster-whisper", threads=DECODER_THREADS + 1).transcribe_many(telephone_clips,
                                                                                             prompt=prompt)
    assert len(together) >= 6 and all(heard.text for heard in together)
    for batched, single, threaded in zip(together, alone, other_threads):
        assert batched.text == single.text == threaded.text
        # a word is marked unsure however the clip was decoded
        assert [word.text for word in batched.words] == [word.text for word in single.words]
        for other in (single, threaded):
            assert [word.probability for word in batched.words] == pytest.approx(
                [word.probability for word in other.words], abs=0.011)
        assert batched.avg_logprob == pytest.approx(single.avg_logprob, abs=1e-3)
        assert batched.avg_logprob == pytest.approx(threaded.avg_logprob, abs=1e-3)


class Scripted(Transcriber):
    """An engine whose decodings are given per beam size, to follow what `transcribe` does with them."""

    engine = "scripted"

    def __init__(self, by_beam: dict[int, str], beam_size: int = 5):
        super().__init__("none", beam_size, 1)
        self.by_beam, self.asked = by_beam, []

    def _decode(self, samples, max_tokens, prompt, beam_size):
        self.asked.append(beam_size)
        text = self.by_beam[beam_size]
        return [Decoded(text, -0.2, 0.1, len(text) / max(len(set(text)), 1), len(text.split()))]


LOOP = " Meet the new Galaxy S" + ".I.l" * 30


def test_a_hearing_lost_to_a_loop_is_decoded_again_greedily():
    clip = np.zeros(SAMPLE_RATE, np.float32)
    engine = Scripted({5: LOOP, 1: " Meet the new Galaxy S9."})
    assert engine.transcribe(clip).text == "Meet the new Galaxy S9." and engine.asked == [5, 1]
    looping = Scripted({5: LOOP, 1: LOOP})  # greedy loops too: nothing kept, as before
    assert looping.transcribe(clip).text == "" and looping.asked == [5, 1]
    greedy = Scripted({1: LOOP}, beam_size=1)  # nothing else to try
    assert greedy.transcribe(clip).text == "" and greedy.asked == [1]
    heard = Scripted({5: " Thank you for your patience.", 1: "never asked"})
    assert heard.transcribe(clip).text == "Thank you for your patience." and heard.asked == [5]


@pytest.fixture(scope="module")
def looping_clip(tmp_path_factory):
    """The Galaxy S9 promo of tests/bench/accuracy.py's en-us+f3 hold, cut as the pipeline cuts it."""
    from audits import pipeline, segment
    from audits.audio import load
    from tests.audio_fixtures import make_hold
    from tests.bench.accuracy import CONDITIONS, MESSAGES, TIMELINE

    _label, voice, speed, noise = CONDITIONS[2]
    hold = make_hold(tmp_path_factory.mktemp("looping"), TIMELINE, name="hold-en-us-f3-165-wpm", messages=MESSAGES,
                     voice=voice, speed_wpm=speed, noise_dbfs=noise, seed=3)
    audio = load(hold.path)
    return pipeline.play_clip(audio, [span for span in segment.split(audio) if span.kind == "speech"], 3)


@pytest.mark.slow
@pytest.mark.parametrize("engine_name", ENGINES)
def test_a_clip_the_beam_search_loops_on_is_heard_greedily(engine_name, looping_clip, monkeypatch):
    """Heard without a prompt, base's beam search loops on it ("Meet the new Galaxy S.I.l.l.l...",
    rejected as repetition) in both engines; the promo is heard greedily instead of lost."""
    engine, asked = shared_engine(engine_name, "base"), []
    decode = engine._decode
    monkeypatch.setattr(engine, "_decode", lambda *args: asked.append(args[-1]) or decode(*args))
    heard = engine.transcribe(looping_clip)
    assert asked == [engine.beam_size, 1], asked  # the beam search's text was rejected as a loop
    assert normalise(heard.text).startswith("meet the new galaxy"), heard.text
    if engine_name == "faster-whisper":  # decoded in a batch, then alone greedily: the same
        asked.clear()
        assert engine.transcribe_many([looping_clip])[0].text == heard.text and asked == [1]
