"""Loading hold recordings (audits.audio) and generating them (sample_audio/generate.py)."""
import json
import subprocess
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from audits.audio import SUPPORTED_EXTENSIONS, AudioError, find_audio_files, iter_blocks, load
from audits.data import SAMPLE_RATE
from tests.audio_fixtures import ROOT, generate, make_hold

SAMPLES = ROOT / "sample_audio"


@pytest.fixture(scope="module")
def short_hold(tmp_path_factory):
    """Six seconds of a real hold at 16 kHz PCM: music, a spoken message, music."""
    return make_hold(tmp_path_factory.mktemp("audio"), ["music 1.5", "say thanks-patience", "music 1.5"],
                     name="short", format="pcm-16k")


def ffmpeg(source, target, *args):
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(source), *args, str(target)], check=True)
    return target


def assert_loaded_like(audio, reference, duration_tolerance_s):
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert abs(audio.duration_s - reference.duration_s) <= duration_tolerance_s
    assert np.abs(audio.samples).max() <= 1.0
    # the same sound, not zeros or noise: loudness over time follows the original's (gain and
    # codec delay aside)
    assert np.corrcoef(envelope(audio.samples), envelope(reference.samples))[0, 1] > 0.95


def envelope(samples, frame_s=0.1, n_frames=50):
    frame = int(frame_s * SAMPLE_RATE)
    return np.sqrt(np.mean(samples[: n_frames * frame].reshape(n_frames, frame) ** 2, axis=1))


# ---------------------------------------------------------------- formats

def test_pcm16_wav_at_16k_loads_unchanged(short_hold):
    audio = load(short_hold.path)
    raw, rate = sf.read(short_hold.path, dtype="float32")
    assert rate == SAMPLE_RATE
    np.testing.assert_array_equal(audio.samples, raw)
    assert audio.path == str(short_hold.path)
    assert audio.duration_s == pytest.approx(short_hold.duration_s, abs=1e-3)


@pytest.mark.parametrize("extension, args, tolerance_s", [
    (".wav", ["-ar", "44100", "-ac", "2"], 0.001),  # CD-rate stereo PCM
    (".wav", ["-ar", "8000", "-ac", "1", "-c:a", "pcm_mulaw"], 0.001),  # a Twilio recording
    (".flac", ["-ar", "22050"], 0.001),
    (".ogg", ["-ar", "22050", "-c:a", "libvorbis"], 0.01),
    (".mp3", ["-ar", "22050", "-ac", "2"], 0.08),  # mp3 adds encoder padding
    (".m4a", ["-ar", "22050"], 0.08),  # not libsndfile's: decoded by librosa/ffmpeg
])
def test_every_format_loads_to_16k_mono_float32(short_hold, tmp_path, extension, args, tolerance_s):
    reference = load(short_hold.path)
    converted = ffmpeg(short_hold.path, tmp_path / f"hold{extension}", *args)
    assert_loaded_like(load(converted), reference, tolerance_s)


def test_mulaw_8k_keeps_the_signal(short_hold, tmp_path):
    """8 kHz mu-law keeps the telephone band: after loading it correlates with the original."""
    reference = load(short_hold.path)
    mulaw = tmp_path / "twilio.wav"
    sf.write(mulaw, sf.read(short_hold.path)[0][::2], 8000, subtype="ULAW")  # the band is under 4 kHz
    audio = load(mulaw)
    assert sf.info(mulaw).subtype == "ULAW"
    n = min(len(audio.samples), len(reference.samples))
    assert np.corrcoef(audio.samples[:n], reference.samples[:n])[0, 1] > 0.9


def test_iter_blocks_streams_the_same_samples(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.wav"
    sf.write(path, rng.uniform(-0.5, 0.5, 8000 * 25), 8000, subtype="ULAW")
    blocks = list(iter_blocks(path, block_s=10.0))
    assert len(blocks) >= 3
    assert all(block.dtype == np.float32 for block in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), load(path).samples)
    assert load(path).duration_s == pytest.approx(25.0, abs=0.01)


def test_loading_a_long_file_costs_its_samples_not_a_multiple(tmp_path):
    """Memory stays near the 16 kHz output (issue #5): decoded and resampled block by block."""
    path = tmp_path / "long.wav"
    sf.write(path, np.random.default_rng(1).uniform(-0.3, 0.3, 8000 * 600), 8000, subtype="ULAW")
    tracemalloc.start()
    audio = load(path)
    _, peak_bytes = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    output_bytes = audio.samples.nbytes
    assert audio.duration_s == pytest.approx(600.0, abs=0.01)
    assert peak_bytes < 1.3 * output_bytes


# ---------------------------------------------------------------- bad files

def write_bytes(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name, make, reason", [
    ("recording.wav", lambda p: write_bytes(p, b"Call notes: customer asked about billing.\n" * 20),
     "not an audio file (could not decode: "),
    ("notes.mp3", lambda p: write_bytes(p, b"just text\n" * 50), "not an audio file (could not decode: "),
    ("empty.wav", lambda p: write_bytes(p, b""), "no audio (empty file, 0 bytes)"),
    ("zero.wav", lambda p: sf.write(p, np.zeros(0, np.float32), 8000, subtype="ULAW"), "no audio (0 samples)"),
    ("truncated.wav", lambda p: write_bytes(p, good_wav_bytes()[:30]), "truncated or corrupt ("),
    ("cut-short.wav", lambda p: write_bytes(p, good_wav_bytes()[:44 + 1600]),
     "truncated or corrupt (header says 1.00 s of audio, the file holds 0.10 s)"),
    ("damaged.flac", lambda p: write_bytes(p, b"fLaC" + bytes(200)), "truncated or corrupt ("),
    ("voice.m4a", lambda p: write_bytes(p, b"not really an m4a\n" * 30), "not an audio file (could not decode: "),
])
def test_bad_files_raise_one_line_errors_naming_the_file(tmp_path, name, make, reason):
    path = tmp_path / name
    make(path)
    with pytest.raises(AudioError) as raised:
        load(path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {reason}")
    assert raised.value.path == str(path) and name in message


def test_random_bytes_named_mp3_are_one_line_not_decodable_audio(tmp_path, capfd):
    path = write_bytes(tmp_path / "hold.mp3", np.random.default_rng(13).bytes(50_000))
    with pytest.raises(AudioError) as raised:
        load(path)
    assert str(raised.value) == f"{path}: not an audio file (could not decode: no audio frames found in it)"
    assert capfd.readouterr().err == ""  # no decoder chatter ("Note: Trying to resync...") around it


def good_wav_bytes():
    """One second of 8 kHz 16-bit PCM as WAV bytes (a 44-byte header, then 16000 bytes)."""
    import io

    buffer = io.BytesIO()
    sf.write(buffer, np.full(8000, 0.1, np.float32), 8000, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def test_missing_file_and_folder_are_errors(tmp_path):
    with pytest.raises(AudioError, match=r"nowhere\.wav: file not found$"):
        load(tmp_path / "nowhere.wav")
    with pytest.raises(AudioError, match="is a folder, not an audio file"):
        load(tmp_path)


def test_streamed_wav_with_unknown_length_is_not_called_truncated(tmp_path):
    """WAVs written to a pipe carry 0xFFFFFFFF as their data size; they are fine."""
    data = bytearray(good_wav_bytes())
    data[40:44] = (0xFFFFFFFF).to_bytes(4, "little")
    audio = load(write_bytes(tmp_path / "streamed.wav", bytes(data)))
    assert audio.duration_s == pytest.approx(1.0, abs=0.01)


# ---------------------------------------------------------------- finding files

def test_find_audio_files_walks_folders_sorted_and_skips_the_rest(tmp_path):
    for name in ["b/2.wav", "b/1.MP3", "a.flac", "notes.txt", "a.truth.json", ".hidden.wav",
                 ".cache/x.wav", "c/d/e.ogg"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    explicit = tmp_path / "notes.txt"
    found = find_audio_files([tmp_path, explicit, tmp_path / "a.flac"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.flac", "b/1.MP3", "b/2.wav", "c/d/e.ogg", "notes.txt"]
    assert {".wav", ".mp3", ".flac", ".ogg"} <= SUPPORTED_EXTENSIONS


# ---------------------------------------------------------------- the generator

def test_generator_writes_a_twilio_like_recording_and_its_truth(tmp_path):
    hold = make_hold(tmp_path, ["music 3", "say galaxy-upgrade", "silence 2",
                                {"repeat": 2, "do": ["say thanks-patience voice=en-gb-x-rp speed=130", "music 2"]}],
                     context={"owned_products": ["Galaxy S7"]})
    info = sf.info(hold.path)
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "ULAW")
    timeline = hold.timeline
    assert [span["kind"] for span in timeline] == ["music", "speech", "silence", "speech", "music", "speech", "music"]
    assert timeline[0]["start_s"] == 0 and timeline[-1]["end_s"] == pytest.approx(info.duration, abs=0.01)
    assert all(a["end_s"] == b["start_s"] for a, b in zip(timeline, timeline[1:]))
    assert len(hold.plays("thanks-patience")) == 2
    assert hold.timeline[3]["voice"] == "en-gb-x-rp" and hold.timeline[3]["speed_wpm"] == 130
    assert hold.truth["messages"]["galaxy-upgrade"]["products"] == ["Galaxy S7"]
    assert json.loads(hold.path.with_name("hold.context.json").read_text()) == {"owned_products": ["Galaxy S7"]}


def test_generator_output_matches_its_truth(tmp_path):
    """Where the truth says silence the file is quiet line noise; where it says speech it is loud."""
    hold = make_hold(tmp_path, ["music 2", "say tip-online-billing", "silence 3", "music 2"], format="pcm-16k")
    audio = load(hold.path)

    def level_dbfs(start_s, end_s):
        clip = audio.samples[int(start_s * SAMPLE_RATE):int(end_s * SAMPLE_RATE)]
        return 20 * np.log10(np.sqrt(np.mean(clip ** 2)))

    (silence,), (speech,) = hold.spans("silence"), hold.spans("speech")
    assert level_dbfs(silence[0] + 0.2, silence[1] - 0.2) < -55
    assert level_dbfs(*speech) > -30
    assert sf.info(hold.path).samplerate == 16000


def test_generator_is_deterministic_and_seeded(tmp_path):
    timeline = ["music 3", "say thanks-patience"]
    first = make_hold(tmp_path, timeline, name="a", seed=3)
    second = make_hold(tmp_path, timeline, name="b", seed=3)
    other = make_hold(tmp_path, timeline, name="c", seed=4)
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.path.read_bytes() != other.path.read_bytes()


@pytest.mark.parametrize("scenario, error", [
    ({"timeline": ["say nobody"], "messages": {}}, "no message 'nobody'"),
    ({"timeline": ["dance 3"]}, "unknown item 'dance'"),
    ({"timeline": ["music soon"]}, "is not a number of seconds"),
    ({"timeline": ["say a speed=fast"], "messages": {"a": "Hi."}}, "whole numbers"),
    ({"timeline": [{"repeat": 2}]}, "repeat = N, do = [...]"),
    ({"timeline": []}, "timeline: missing or empty"),
    ({"timeline": ["music 1"], "format": "mp3"}, "not one of"),
    ({"timeline": ["say a voice=en-mars"], "messages": {"a": "Hi."}}, "espeak-ng has no voice 'en-mars'"),
    ({"timeline": ["say a voice=en-us+nobody"], "messages": {"a": "Hi."}}, "no voice 'en-us+nobody'"),
])
def test_bad_scenarios_are_named_errors(tmp_path, scenario, error):
    with pytest.raises(generate.ScenarioError) as raised:
        generate.generate(scenario, tmp_path / "x.wav")
    assert error in str(raised.value)


def test_generator_cli(tmp_path):
    scenario = tmp_path / "s.toml"
    scenario.write_text('timeline = ["music 2", "say hi", "silence 1"]\n[messages]\nhi = "Please hold."\n')
    out = tmp_path / "out" / "hold.wav"
    done = subprocess.run(["python", str(SAMPLES / "generate.py"), str(scenario), "--out", str(out),
                           "--format", "pcm-16k"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "1 message plays" in done.stdout
    assert sf.info(out).samplerate == 16000 and generate.truth_path(out).exists()
    bad = subprocess.run(["python", str(SAMPLES / "generate.py"), str(tmp_path / "none.toml"), "--out", str(out)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "none.toml: cannot read scenario" in bad.stderr


# ---------------------------------------------------------------- the committed samples

def test_quick_start_sample_is_what_the_readme_promises():
    info = sf.info(SAMPLES / "hold-10min.wav")
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "ULAW")
    assert info.duration == pytest.approx(600.0, abs=0.5)
    assert json.loads((SAMPLES / "hold-10min.context.json").read_text()) == {
        "open_issues": [{"id": "CASE-1042", "severity": "high", "summary": "Galaxy S7 reboots during calls"}],
        "owned_products": ["Galaxy S7"], "queue": "support"}
    timeline = json.loads((SAMPLES / "hold-10min.truth.json").read_text())["timeline"]
    plays = [span.get("message") for span in timeline if span["kind"] == "speech"]
    assert plays.count("galaxy") >= 5 and plays.count("thanks") >= 4
    assert {"outage", "wait", "tip"} <= set(plays)
    galaxy_voices = {(s["voice"], s["speed_wpm"]) for s in timeline if s.get("message") == "galaxy"}
    assert len(galaxy_voices) == 2  # one play re-recorded by another voice, at another pace
    assert any(s["kind"] == "silence" and s["end_s"] - s["start_s"] >= 30 for s in timeline)
    clean = json.loads((SAMPLES / "clean-2min.truth.json").read_text())
    assert not any(m.get("category") == "promo" for m in clean["messages"].values())


@pytest.mark.parametrize("stem", ["hold-10min", "clean-2min"])
def test_committed_samples_are_regenerated_from_their_scenarios(tmp_path, stem):
    """Editing a scenario without regenerating its sample fails here."""
    truth = generate.generate(SAMPLES / "scenarios" / f"{stem}.toml", tmp_path / f"{stem}.wav")
    committed = json.loads((SAMPLES / f"{stem}.truth.json").read_text())
    assert truth["timeline"] == committed["timeline"]
    assert truth["scenario_hash"] == committed["scenario_hash"]
