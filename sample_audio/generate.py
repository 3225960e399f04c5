#!/usr/bin/env python3
"""Generate realistic hold recordings from a small scenario description.

A scenario is a TOML (or JSON) file, or the same data as a dict:

    seed = 7                      # music and line noise are deterministic per seed
    format = "ulaw-8k"            # "ulaw-8k" (like Twilio recordings) or "pcm-16k"
    voice = "en-us"               # default espeak-ng voice and pace for every message
    speed_wpm = 155
    timeline = [
      "music 40",                 # 40 s of synthetic hold music
      "say galaxy",               # one play of message "galaxy"
      "say galaxy voice=en-gb-x-rp speed=130",   # the same message re-recorded
      "silence 35",               # dead air: nothing but line noise
      {repeat = 5, do = ["music 45", "say thanks"]},
    ]

    [messages]
    thanks = "Thank you for your patience."
    galaxy = {text = "Upgrade to the Galaxy S7 today.", category = "promo", products = ["Galaxy S7"]}

    [context]                     # optional: written as <stem>.context.json for the audit
    owned_products = ["Galaxy S7"]

Speech comes from espeak-ng, music is synthesised (chords of harmonic tones, a
plucked melody, a soft drum), line noise runs under everything, and the result
goes through a telephone channel: band-pass 300-3400 Hz, 8 kHz, mu-law.

Next to the output it writes `<stem>.truth.json`: the ground-truth timeline
(start_s, end_s, kind speech|music|silence, message id) that tests and
benchmarks score the audit against.

CLI: python sample_audio/generate.py SCENARIO --out FILE.wav [--format pcm-16k] [--seed N]
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy import signal

WORK_RATE = 16_000  # Hz: everything is mixed at this rate
TELEPHONE_RATE = 8_000  # Hz: what a phone line (and a Twilio recording) carries
TELEPHONE_BAND_HZ = (300.0, 3400.0)
FORMATS = ("ulaw-8k", "pcm-16k")

DEFAULTS = {
    "seed": 0,
    "format": "ulaw-8k",
    "voice": "en-us",
    "speed_wpm": 155,
    "pitch": 50,
    "speech_dbfs": -20.0,  # RMS of spoken messages while they speak
    "music_dbfs": -24.0,  # RMS of the hold music: a little under the voice, as on real lines
    "noise_dbfs": -62.0,  # RMS of the line noise before the telephone band-pass
    "telephone_band": True,
}
MUSIC_FADE_S = 0.3  # music fades in and out around messages, like a real hold player
SPEECH_TRIM_DB = 45.0  # espeak's leading/trailing quiet below peak - this is cut off


class ScenarioError(ValueError):
    """A scenario that cannot be rendered; the message names the item and what is wrong."""


# ---------------------------------------------------------------- scenario

@dataclass(frozen=True)
class Say:
    message: str
    voice: str
    speed_wpm: int
    pitch: int


@dataclass(frozen=True)
class Music:
    duration_s: float


@dataclass(frozen=True)
class Silence:
    duration_s: float


Item = Say | Music | Silence


def load_scenario(path: str | Path) -> dict:
    """Read a scenario from a .toml or .json file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ScenarioError(f"{path}: cannot read scenario ({error.strerror})") from error
    try:
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        raise ScenarioError(f"{path}: not a valid scenario file ({error})") from error


def with_defaults(scenario: dict) -> dict:
    """The scenario with every top-level option filled in and checked."""
    full = DEFAULTS | scenario
    if full["format"] not in FORMATS:
        raise ScenarioError(f"format: {full['format']!r} is not one of {', '.join(FORMATS)}")
    if not full.get("timeline"):
        raise ScenarioError("timeline: missing or empty")
    return full


def message_specs(scenario: dict) -> dict[str, dict]:
    """Messages as {id: {"text": ..., other keys}} whether written as a string or a table."""
    specs = {}
    for message_id, spec in scenario.get("messages", {}).items():
        spec = {"text": spec} if isinstance(spec, str) else dict(spec)
        if not str(spec.get("text", "")).strip():
            raise ScenarioError(f"messages.{message_id}: no text")
        specs[message_id] = spec
    return specs


def parse_timeline(scenario: dict) -> list[Item]:
    """Expand the scenario's timeline (repeats included) into a flat list of items."""
    scenario = with_defaults(scenario)
    messages = message_specs(scenario)
    return list(_expand(scenario["timeline"], scenario, messages, where="timeline"))


def _expand(entries: list, scenario: dict, messages: dict, where: str):
    for index, entry in enumerate(entries):
        here = f"{where}[{index}]"
        if isinstance(entry, dict):
            times, body = entry.get("repeat"), entry.get("do")
            if not isinstance(times, int) or times < 0 or not isinstance(body, list):
                raise ScenarioError(f"{here}: a table item must be {{repeat = N, do = [...]}}, got {entry!r}")
            for _ in range(times):
                yield from _expand(body, scenario, messages, here + ".do")
        elif isinstance(entry, str):
            yield _parse_item(entry, scenario, messages, here)
        else:
            raise ScenarioError(f"{here}: expected a string or {{repeat, do}} table, got {entry!r}")


def _parse_item(text: str, scenario: dict, messages: dict, where: str) -> Item:
    words = text.split()
    if len(words) < 2:
        raise ScenarioError(f"{where}: {text!r} should be 'music S', 'silence S' or 'say ID [voice=V speed=WPM pitch=P]'")
    verb, argument, options = words[0], words[1], words[2:]
    if verb in ("music", "silence"):
        try:
            duration_s = float(argument)
        except ValueError:
            raise ScenarioError(f"{where}: {text!r}: duration {argument!r} is not a number of seconds") from None
        if duration_s <= 0 or options:
            raise ScenarioError(f"{where}: {text!r}: expected '{verb} SECONDS' with SECONDS > 0")
        return Music(duration_s) if verb == "music" else Silence(duration_s)
    if verb != "say":
        raise ScenarioError(f"{where}: {text!r}: unknown item {verb!r} (music, silence, say)")
    if argument not in messages:
        raise ScenarioError(f"{where}: {text!r}: no message {argument!r} in [messages]")
    spec = messages[argument]
    voice = {"voice": spec.get("voice", scenario["voice"]),
             "speed": spec.get("speed_wpm", scenario["speed_wpm"]),
             "pitch": spec.get("pitch", scenario["pitch"])}
    for option in options:
        key, _, value = option.partition("=")
        if key not in voice or not value:
            raise ScenarioError(f"{where}: {text!r}: option {option!r} should be voice=, speed= or pitch=")
        voice[key] = value
    try:
        return Say(argument, str(voice["voice"]), int(voice["speed"]), int(voice["pitch"]))
    except ValueError:
        raise ScenarioError(f"{where}: {text!r}: speed and pitch must be whole numbers") from None


# ---------------------------------------------------------------- speech

@functools.lru_cache(maxsize=1)
def espeak_voices() -> frozenset[str]:
    """Voice and variant names espeak-ng knows, lower-cased: -v quietly falls back to its default
    voice for any other name, so a typo would otherwise go unnoticed."""
    names = set()
    for kind in ("--voices", "--voices=variant"):
        listing = subprocess.run(["espeak-ng", kind], capture_output=True, text=True).stdout
        for row in listing.splitlines()[1:]:
            columns = row.split()
            if len(columns) >= 5:  # Pty Language Age/Gender VoiceName File [Other languages]
                names.update({columns[1], columns[3], columns[4].rsplit("/", 1)[-1]})
                names.update(other.strip("(") for other in columns[5::2])
    return frozenset(name.lower() for name in names)


def _check_voice(voice: str) -> None:
    base, _, variant = voice.lower().partition("+")
    known = espeak_voices()
    if base not in known or (variant and variant not in known):
        raise ScenarioError(f"espeak-ng has no voice {voice!r} (see: espeak-ng --voices)")


@functools.lru_cache(maxsize=64)
def speak(text: str, voice: str, speed_wpm: int, pitch: int) -> np.ndarray:
    """Text to speech with espeak-ng: float32 at WORK_RATE, quiet ends trimmed. Cached: a replayed
    message is the same recording, as on a real hold system."""
    if shutil.which("espeak-ng") is None:
        raise ScenarioError("espeak-ng is not installed (apt-get install espeak-ng)")
    _check_voice(voice)
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = Path(tmp) / "speech.wav"
        result = subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed_wpm), "-p", str(pitch), "-w", str(wav_path), text],
            capture_output=True, text=True)
        if result.returncode != 0 or not wav_path.exists():
            reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise ScenarioError(f"espeak-ng failed for voice {voice!r}: {reason}")
        samples, rate = sf.read(wav_path, dtype="float32")
    samples = soxr.resample(samples, rate, WORK_RATE)
    samples = _trim_quiet_ends(samples)
    samples.setflags(write=False)
    return samples


def _trim_quiet_ends(samples: np.ndarray, frame: int = 160) -> np.ndarray:
    """Cut espeak's silent lead-in and tail so the truth timeline marks the voice itself."""
    n_frames = len(samples) // frame
    rms = np.sqrt(np.mean(samples[: n_frames * frame].reshape(n_frames, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (-SPEECH_TRIM_DB / 20))
    if len(loud) == 0:
        return samples
    return samples[loud[0] * frame: (loud[-1] + 1) * frame].copy()


def _active_rms(samples: np.ndarray, frame: int = 320) -> float:
    """RMS over the frames that carry sound, so pauses don't lower a message's level."""
    n_frames = max(1, len(samples) // frame)
    rms = np.sqrt(np.mean(samples[: n_frames * frame].reshape(n_frames, -1) ** 2, axis=1))
    active = rms[rms > rms.max() * 0.05]
    return float(np.sqrt(np.mean(active ** 2))) if len(active) else 1.0


def _db_to_gain(dbfs: float) -> float:
    return 10 ** (dbfs / 20)


# ---------------------------------------------------------------- music

PROGRESSIONS = [  # scale degrees (0-based) of chord roots in a major key
    [0, 5, 3, 4], [0, 4, 5, 3], [0, 3, 0, 4], [5, 3, 0, 4],
]
MAJOR_SCALE = [0, 2, 4, 5, 7, 9, 11]


def _midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def _tone(freq_hz: float, duration_s: float, harmonics: int, rolloff: float, rng: np.random.Generator) -> np.ndarray:
    """A harmonic tone: partials k*f with amplitude 1/k^rolloff and random phases."""
    t = np.arange(int(duration_s * WORK_RATE)) / WORK_RATE
    tone = np.zeros_like(t)
    for k in range(1, harmonics + 1):
        if k * freq_hz < WORK_RATE / 2 - 500:
            tone += np.sin(2 * np.pi * k * freq_hz * t + rng.uniform(0, 2 * np.pi)) / k ** rolloff
    return tone


def _envelope(n: int, attack_s: float, release_s: float) -> np.ndarray:
    """Linear attack and release over n samples, so notes and music items start and stop softly."""
    env = np.ones(n)
    attack, release = min(n, int(attack_s * WORK_RATE)), min(n, int(release_s * WORK_RATE))
    env[:attack] = np.linspace(0, 1, attack)
    env[n - release:] *= np.linspace(1, 0, release)
    return env


def _add(track: np.ndarray, at: int, sound: np.ndarray) -> None:
    """Mix a sound into a looping track (wrapping past the end, so the loop is seamless)."""
    at %= len(track)
    first = min(len(sound), len(track) - at)
    track[at: at + first] += sound[:first]
    if first < len(sound):
        track[: len(sound) - first] += sound[first:]


@functools.lru_cache(maxsize=8)
def music_loop(seed: int, bars: int = 32, bpm: float = 92.0) -> np.ndarray:
    """A deterministic loop of hold music (about a minute and a half): a chord pad over a common
    progression, a plucked melody wandering the scale, a soft kick and hi-hat; WORK_RATE,
    peak-normalised. Music-like and clearly not speech: steady harmonic tones, no syllables."""
    rng = np.random.default_rng(seed)
    beat_s = 60.0 / bpm
    bar_n = int(4 * beat_s * WORK_RATE)
    track = np.zeros(bars * bar_n)
    key = 48 + int(rng.integers(0, 12))  # a C3..B3 tonic
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    melody_degree = 7
    for bar in range(bars):
        root_degree = progression[bar % len(progression)]
        chord = [key + MAJOR_SCALE[(root_degree + step) % 7] + 12 * ((root_degree + step) // 7)
                 for step in (0, 2, 4)]
        start = bar * bar_n
        pad_s = 4 * beat_s + 0.4  # overlaps the next chord a little: legato
        for note in chord + [chord[0] - 12]:
            tone = _tone(_midi_hz(note), pad_s, harmonics=6, rolloff=1.6, rng=rng)
            _add(track, start, 0.18 * tone * _envelope(len(tone), 0.25, 0.6))
        for eighth in range(8):
            if rng.random() < 0.3:  # rests keep the melody from sounding mechanical
                continue
            melody_degree = int(np.clip(melody_degree + rng.integers(-2, 3), 4, 13))
            note = key + 12 + MAJOR_SCALE[melody_degree % 7] + 12 * (melody_degree // 7)
            tone = _tone(_midi_hz(note), 0.9, harmonics=4, rolloff=1.2, rng=rng)
            pluck = np.exp(-np.arange(len(tone)) / (0.28 * WORK_RATE)) * _envelope(len(tone), 0.01, 0.1)
            _add(track, start + int(eighth * beat_s / 2 * WORK_RATE), 0.22 * tone * pluck)
        for beat in range(4):
            at = start + int(beat * beat_s * WORK_RATE)
            if beat in (0, 2):
                t = np.arange(int(0.25 * WORK_RATE)) / WORK_RATE
                kick = np.sin(2 * np.pi * (90 * t - 60 * t ** 2)) * np.exp(-t / 0.06)
                _add(track, at, 0.25 * kick)
            hat = rng.standard_normal(int(0.04 * WORK_RATE)) * np.exp(-np.arange(int(0.04 * WORK_RATE)) / 120)
            _add(track, at + int(beat_s / 2 * WORK_RATE), 0.03 * np.diff(hat, prepend=0))
    return (track / np.abs(track).max()).astype(np.float32)


# ---------------------------------------------------------------- rendering

@dataclass
class TruthSpan:
    start_s: float
    end_s: float
    kind: str  # speech | music | silence
    message: str | None = None
    voice: str | None = None
    speed_wpm: int | None = None


def render(scenario: dict) -> tuple[np.ndarray, list[TruthSpan]]:
    """Mix the scenario's timeline at WORK_RATE (before the telephone channel): samples and truth."""
    scenario = with_defaults(scenario)
    messages = message_specs(scenario)
    items = parse_timeline(scenario)
    loop = music_loop(int(scenario["seed"]))
    loop = loop * (_db_to_gain(scenario["music_dbfs"]) / _active_rms(loop))
    pieces, truth, at_n, music_at = [], [], 0, 0
    for item in items:
        if isinstance(item, Say):
            speech = speak(messages[item.message]["text"], item.voice, item.speed_wpm, item.pitch)
            piece = speech * (_db_to_gain(scenario["speech_dbfs"]) / _active_rms(speech))
            truth.append(TruthSpan(0, 0, "speech", item.message, item.voice, item.speed_wpm))
        elif isinstance(item, Music):
            n = int(item.duration_s * WORK_RATE)
            piece = np.take(loop, np.arange(music_at, music_at + n), mode="wrap")
            piece = piece * _envelope(n, MUSIC_FADE_S, MUSIC_FADE_S)
            music_at = (music_at + n) % len(loop)  # the track plays on where it paused
            truth.append(TruthSpan(0, 0, "music"))
        else:
            piece = np.zeros(int(item.duration_s * WORK_RATE))
            truth.append(TruthSpan(0, 0, "silence"))
        truth[-1].start_s, truth[-1].end_s = at_n / WORK_RATE, (at_n + len(piece)) / WORK_RATE
        pieces.append(piece.astype(np.float32))
        at_n += len(piece)
    mix = np.concatenate(pieces)
    rng = np.random.default_rng([int(scenario["seed"]), 1])
    mix += (rng.standard_normal(len(mix)) * _db_to_gain(scenario["noise_dbfs"])).astype(np.float32)
    return mix, _merge_adjacent(truth)


def _merge_adjacent(truth: list[TruthSpan]) -> list[TruthSpan]:
    """Back-to-back music (or silence) items are one stretch of it; each speech play stays its own."""
    merged: list[TruthSpan] = []
    for span in truth:
        if merged and span.kind != "speech" and merged[-1].kind == span.kind:
            merged[-1].end_s = span.end_s
        else:
            merged.append(span)
    return merged


def telephone_channel(samples: np.ndarray, output_format: str, band: bool = True) -> tuple[np.ndarray, int]:
    """What a phone line does to the mix: band-pass 300-3400 Hz, then 8 kHz for ulaw-8k."""
    if band:
        sos = signal.butter(6, TELEPHONE_BAND_HZ, btype="bandpass", fs=WORK_RATE, output="sos")
        samples = signal.sosfilt(sos, samples).astype(np.float32)
    rate = WORK_RATE
    if output_format == "ulaw-8k":
        samples, rate = soxr.resample(samples, WORK_RATE, TELEPHONE_RATE), TELEPHONE_RATE
    return np.clip(samples, -1.0, 1.0).astype(np.float32), rate


def scenario_hash(scenario: dict) -> str:
    """A short fingerprint of the scenario, to tell whether a generated file is current."""
    return hashlib.sha256(json.dumps(scenario, sort_keys=True).encode()).hexdigest()[:16]


def generate(scenario: dict | str | Path, out_path: str | Path, output_format: str | None = None,
             seed: int | None = None) -> dict:
    """Render a scenario to `out_path` (WAV) plus `<stem>.truth.json` (and `<stem>.context.json`
    when the scenario has a [context]). Returns the truth document."""
    if not isinstance(scenario, dict):
        scenario = load_scenario(scenario)
    scenario = dict(scenario)
    if output_format is not None:
        scenario["format"] = output_format
    if seed is not None:
        scenario["seed"] = seed
    full = with_defaults(scenario)
    out_path = Path(out_path)
    mix, truth = render(full)
    samples, rate = telephone_channel(mix, full["format"], band=bool(full["telephone_band"]))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    subtype = "ULAW" if full["format"] == "ulaw-8k" else "PCM_16"
    sf.write(out_path, samples, rate, subtype=subtype, format="WAV")
    document = {
        "recording": out_path.name,
        "duration_s": round(len(samples) / rate, 3),
        "sample_rate": rate,
        "format": full["format"],
        "scenario_hash": scenario_hash(scenario),
        "messages": message_specs(full),
        "timeline": [{k: (round(v, 3) if isinstance(v, float) else v)
                      for k, v in asdict(span).items() if v is not None}
                     for span in truth],
    }
    truth_path(out_path).write_text(_dump_truth(document))
    if "context" in full:
        out_path.with_name(out_path.stem + ".context.json").write_text(json.dumps(full["context"]) + "\n")
    return document


def _dump_truth(document: dict) -> str:
    """JSON a person can read: one timeline span per line."""
    head = json.dumps({k: v for k, v in document.items() if k != "timeline"}, indent=1)
    spans = ",\n  ".join(json.dumps(span) for span in document["timeline"])
    return head[:-2] + ',\n "timeline": [\n  ' + spans + "\n ]\n}\n"


def truth_path(wav_path: str | Path) -> Path:
    """Where the ground truth of a generated recording lives: `<stem>.truth.json` beside it."""
    wav_path = Path(wav_path)
    return wav_path.with_name(wav_path.stem + ".truth.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Generate a hold recording (speech, hold music, dead air, telephone line) from a scenario.",
        epilog="Example: python sample_audio/generate.py sample_audio/scenarios/hold-10min.toml "
               "--out sample_audio/hold-10min.wav")
    parser.add_argument("scenario", help="scenario file (.toml or .json)")
    parser.add_argument("--out", required=True, help="output WAV path; <stem>.truth.json is written beside it")
    parser.add_argument("--format", choices=FORMATS, help="override the scenario's format (default ulaw-8k)")
    parser.add_argument("--seed", type=int, help="override the scenario's seed (music and noise)")
    args = parser.parse_args(argv)
    try:
        document = generate(args.scenario, args.out, args.format, args.seed)
    except ScenarioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    kinds = {}
    for span in document["timeline"]:
        kinds[span["kind"]] = kinds.get(span["kind"], 0.0) + span["end_s"] - span["start_s"]
    plays = sum(span["kind"] == "speech" for span in document["timeline"])
    print(f"{args.out}: {document['duration_s']:.1f} s, {document['format']}, {plays} message plays; "
          + ", ".join(f"{kind} {seconds:.0f} s" for kind, seconds in sorted(kinds.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
