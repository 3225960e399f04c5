"""Transcript accuracy: word error rate, product names and findings, per Whisper model and option.

    python tests/bench/accuracy.py [--models tiny.en,base] [--cache-dir DIR] [--conditions N]

Two kinds of speech:

generated   the demo flow's messages plus four more (a promo for another phone whose name is one
            sound off the caller's, "Galaxy S9"; an iPhone promo and a protection plan priced "nine
            ninety-nine a month"; a "you are currently caller number seven" announcement), spoken by
            espeak-ng in several voices, paces and line-noise levels, mixed with hold music and sent
            through the telephone channel (300-3400 Hz, 8 kHz mu-law), as sample_audio/generate.py
            makes them. One hold per condition plays every message, the Galaxy S7 promo three times.
real        recorded human speech shipped in packages, fetched here with the package clients (never
            stored in the repository): `jfk.wav` (11 s) from the npm package nodejs-whisper 0.3.1
            (whisper.cpp's sample; words known), also sent through the telephone channel; `sample.wav`
            (30 s, a two-speaker telephone-style conversation, timed transcript `sample.stm`) from
            the PyPI wheel pyannote.audio 4.0.7.

Measured, with faster-whisper (the two engines give the same text, tests/test_base_model.py):

clips       the first play of every message, cut as the pipeline cuts it (0.5 s before, 0.3 s after),
            decoded plain, with the vocabulary prompt of the catalog's product names, and with the
            caller's product only (what prompting with no catalog loaded would do; the audit does not):
            word error rate after Whisper's
            English normaliser, promo clips whose product is named (audits.classify.mentions), clips
            naming a catalog product they do not say ("invented"), decoding time; and with the
            vocabulary then the flow's script (audits.scripts: a clip whose hearing reads like one
            of the flow's messages heard again with its text as the prompt, kept only when it keeps
            what the first hearing heard).
drift       the same voices saying 8 messages that differ from the flow's script by a number or a
            model (a price of "nineteen ninety-nine" where the script says "nine ninety-nine", a
            Galaxy S9 where it says S7, ...), heard with the vocabulary then the scripts: how often
            a number of the script the audio does not say reaches the text ("script's number
            written"), and the caller's Galaxy S7 named where the audio says S9.
holds       the whole pipeline (pipeline.audit_file) on each hold for a caller who owns a Galaxy S7
            and has an open case, with and without the flow's catalog loaded (every message's script
            and products): plain (no prompt, one hearing), vocabulary only, vocabulary + more
            hearings, vocabulary + more hearings + the flow's scripts (the default). "findings right" = the
            (rule, category, count) outline equals the one the same stages give on the true text;
            "products right" = every promo message names its product and no other; audit time.

--decoding-options: faster-whisper's own decoding options (beam size, patience, timestamps, the
temperature fallback, prompt variants; DECODING_OPTIONS) on the clips instead, one at a time.

Prints Markdown tables and the machine. Nothing here runs in the test suite.
"""
from __future__ import annotations

import argparse
import functools
import platform
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from app.core.audit import Context, Issue, Span  # noqa: E402
from audits import pipeline  # noqa: E402
from audits.classify import CatalogMessage, mentions  # noqa: E402
from audits.data import SAMPLE_RATE, Transcript  # noqa: E402
from audits.scripts import distinct_scripts, hearing_with_script, keeps_what_was_heard, script_for  # noqa: E402
from audits.transcribe import shared_engine, vocabulary_prompt  # noqa: E402
from tests.audio_fixtures import DEMO_MESSAGES, generate, make_hold  # noqa: E402

EXTRA_MESSAGES = {
    "galaxy-s9": {"text": "Meet the new Galaxy S9. Trade in your old phone and save two hundred dollars today.",
                  "category": "promo", "products": ["Galaxy S9"]},
    "iphone-offer": {"text": "Trade in your old phone and get the new iPhone 15 for only nine ninety-nine a month.",
                     "category": "promo", "products": ["iPhone 15"]},
    "protection-plan": {"text": "For only nine ninety-nine a month, the Home Protection Plan covers repairs to every "
                                "device in your home.", "category": "promo", "products": ["Home Protection Plan"]},
    "position": {"text": "You are currently caller number seven, waiting to speak with a representative.",
                 "category": "wait", "products": []},
}
MESSAGES = {**DEMO_MESSAGES, **EXTRA_MESSAGES}
CATALOG = [CatalogMessage(spec["text"], tuple(spec["products"])) for spec in MESSAGES.values() if spec["products"]]
CATALOG_PRODUCTS = [product for entry in CATALOG for product in entry.products]
# The hold flow as audits.context.load_catalog reads it: every message's script, with its products.
FLOW = [CatalogMessage(spec["text"], tuple(spec["products"])) for spec in MESSAGES.values()]
# What the audio says where the flow's script says otherwise: (script's message, what is said).
DRIFT = {
    "iphone-offer": "Trade in your old phone and get the new iPhone 15 for only nineteen ninety-nine a month.",
    "protection-plan": "For only nineteen ninety-nine a month, the Home Protection Plan covers repairs to every "
                       "device in your home.",
    "galaxy-upgrade": "Upgrade to the brand new Galaxy S9 today and get fifty percent off your first three months. "
                      "Ask your agent how.",
    "galaxy-s9": "Meet the new Galaxy S7. Trade in your old phone and save two hundred dollars today.",
    "fiber-offer": "Switch to Fiber One Gig home internet and save thirty dollars a month for a year.",
    "outage-northeast": "We are aware of a network outage affecting customers in the Northeast. Engineers are "
                        "working on it and expect service to be restored by 8 PM today.",
    "wait-announcement": "Your estimated wait time is about eighteen minutes. You are number four in line.",
    "position": "You are currently caller number nine, waiting to speak with a representative.",
}
OWNED = ["Galaxy S7"]
DANA = Context(open_issues=[Issue("CASE-1042", "high", "Galaxy S7 reboots during calls")], owned_products=OWNED)
TIMELINE = ["music 4", "say outage-northeast", "music 4", "say galaxy-upgrade", "music 4", "say thanks-patience",
            "music 4", "say galaxy-s9", "music 4", "say galaxy-upgrade", "music 4", "say position", "music 4",
            "say iphone-offer", "music 4", "say protection-plan", "music 4", "say fiber-offer", "music 4",
            "say galaxy-upgrade", "music 4", "say wait-announcement", "music 4", "say tip-online-billing",
            "music 4", "say thanks-patience", "music 4"]
# (label, espeak voice, words a minute, line noise dBFS before the telephone band): clear to noisy.
CONDITIONS = [("en-us 155 wpm", "en-us", 155, -62.0), ("en-gb-x-rp 140 wpm", "en-gb-x-rp", 140, -62.0),
              ("en-us+f3 165 wpm", "en-us+f3", 165, -62.0), ("en-gb-scotland 155 wpm", "en-gb-scotland", 155, -62.0),
              ("en-us 155 wpm, noisy", "en-us", 155, -40.0), ("en-gb-x-rp 140 wpm, noisy", "en-gb-x-rp", 140, -40.0)]
JFK_TEXT = ("And so, my fellow Americans: ask not what your country can do for you, "
            "ask what you can do for your country.")


# ---------------------------------------------------------------- scoring

def _normaliser():
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()


NORMALISE = _normaliser()


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words) after Whisper's English normaliser."""
    from rapidfuzz.distance import Levenshtein

    ref, hyp = NORMALISE(reference).split(), NORMALISE(hypothesis).split()
    return Levenshtein.distance(ref, hyp), len(ref)


# ---------------------------------------------------------------- generated speech

def build_holds(cache: Path, n_conditions: int) -> list:
    holds = []
    for label, voice, speed, noise in CONDITIONS[:n_conditions]:
        name = "hold-" + "".join(c if c.isalnum() else "-" for c in label)
        holds.append((label, make_hold(cache, TIMELINE, name=name, messages=MESSAGES, voice=voice, speed_wpm=speed,
                                       noise_dbfs=noise, seed=len(holds) + 1)))
    return holds


def first_play_clips(hold) -> list[tuple[str, np.ndarray]]:
    """(message id, clip) for the first play of every message, cut with the pipeline's padding."""
    from audits.audio import load

    samples, clips, seen = load(hold.path).samples, [], set()
    for span in hold.timeline:
        message = span.get("message")
        if span["kind"] == "speech" and message not in seen:
            seen.add(message)
            start_s = span["start_s"] - pipeline.CLIP_PAD_BEFORE_S
            end_s = span["end_s"] + pipeline.CLIP_PAD_AFTER_S
            clips.append((message, samples[int(start_s * SAMPLE_RATE):int(end_s * SAMPLE_RATE)]))
    return clips


class WithScripts:
    """An engine that hears each clip as audits.pipeline hears a message's first play: with the prompt,
    then again with the flow's script it reads like, kept when it keeps what the first heard."""

    def __init__(self, engine, catalog):
        self.engine, self.scripts = engine, distinct_scripts(catalog)
        self.known = pipeline.known_product_names(DANA, catalog)
        self.rehearings = 0

    def transcribe_many(self, clips: list[np.ndarray], prompt: str | None = None) -> list[Transcript]:
        heard, self.firsts = [], self.engine.transcribe_many(clips, prompt=prompt)
        for clip, first in zip(clips, self.firsts):
            script = script_for(first.text, self.scripts, self.known)
            scripted = self.engine.transcribe(clip, prompt=script) if script else None
            self.rehearings += script is not None
            if scripted:
                scripted, confirmed = hearing_with_script(first, scripted, functools.partial(self.engine.score, clip))
            heard.append(scripted if scripted and keeps_what_was_heard(first, scripted, self.known, confirmed) else first)
        return heard


def clip_scores(engine, clips: list[tuple[str, np.ndarray]], prompt: str | None) -> dict:
    started = time.perf_counter()
    heard = engine.transcribe_many([clip for _, clip in clips], prompt=prompt)
    elapsed_s = time.perf_counter() - started
    errors = words = named = promos = invented = 0
    for (message, _), transcript in zip(clips, heard):
        spec = MESSAGES[message]
        edits, n = word_errors(spec["text"], transcript.text)
        errors, words = errors + edits, words + n
        for product in CATALOG_PRODUCTS:
            said = product in spec["products"]
            if said:
                promos += 1
                named += mentions(transcript.text, product)
            elif mentions(transcript.text, product):
                invented += 1
                print(f"    invented {product!r} in {message}: {transcript.text!r}")
    return {"errors": errors, "words": words, "named": named, "promos": promos, "invented": invented,
            "time_s": elapsed_s, "texts": [t.text for t in heard]}


def build_drift(cache: Path, n_conditions: int) -> list[tuple[str, str, np.ndarray]]:
    """(condition, the script's message id, clip) of every DRIFT message in every condition."""
    messages = {f"{message}-drift": {"text": said, "category": "other", "products": []}
                for message, said in DRIFT.items()}
    timeline = [item for message in messages for item in ("music 3", f"say {message}")] + ["music 3"]
    clips = []
    for number, (label, voice, speed, noise) in enumerate(CONDITIONS[:n_conditions]):
        hold = make_hold(cache, timeline, name=f"drift-{number}", messages=messages, voice=voice, speed_wpm=speed,
                         noise_dbfs=noise, seed=100 + number)
        clips += [(label, message.removesuffix("-drift"), clip) for message, clip in first_play_clips(hold)]
    return clips


def drift_scores(engine, clips, prompt: str | None) -> dict:
    """Word error rate against what is said, the script's numbers written that the audio does not say
    (and that the vocabulary-only hearing did not write either), the caller's product named."""
    from audits.scripts import _numbers

    started = time.perf_counter()
    finals = engine.transcribe_many([clip for *_, clip in clips], prompt=prompt)
    firsts = engine.firsts
    errors = words = written = owned = 0
    for (label, message, _), first, final in zip(clips, firsts, finals):
        said, script = DRIFT[message], MESSAGES[message]["text"]
        edits, n = word_errors(said, final.text)
        errors, words = errors + edits, words + n
        copied = ((_numbers(final.text) - _numbers(said)) & _numbers(script)) - _numbers(first.text)
        written += bool(copied)
        named_owned = any(mentions(final.text, p) and not mentions(said, p) for p in OWNED)
        owned += named_owned
        if copied or named_owned:
            print(f"    {label} {message}: script's {sorted(copied)} written: {final.text!r}")
    return {"errors": errors, "words": words, "written": written, "owned": owned, "clips": len(clips),
            "time_s": time.perf_counter() - started}


# ---------------------------------------------------------------- holds through the pipeline

def outline(result) -> list[tuple]:
    category = {m.id: m.category for m in result.messages}
    return sorted((f.rule, category.get(f.message_id), f.count) for f in result.findings)


def truth_result(hold, catalog):
    """What the stages after the engine make of the true words of every play."""
    segments = [Span(span["start_s"], span["end_s"], span["kind"]) for span in hold.timeline]
    transcripts = [Transcript(span["start_s"], span["end_s"], MESSAGES[span["message"]]["text"])
                   for span in hold.timeline if span["kind"] == "speech"]
    return pipeline.analyse(str(hold.path), hold.duration_s, segments, transcripts, DANA, catalog)


def products_right(hold, result) -> tuple[int, int, list[str]]:
    """(promo messages whose products are exactly right, promo messages, what went wrong)."""
    right, total, wrong = 0, 0, []
    for message_id, spec in MESSAGES.items():
        plays = hold.plays(message_id)
        if spec["category"] != "promo" or not plays:
            continue
        total += 1
        start_s = plays[0][0]
        found = next((m for m in result.messages
                      if any(abs(at - start_s) < 1.5 for at in m.play_times_s)), None)
        named = [p for p in CATALOG_PRODUCTS if found and any(mentions(p, f) or mentions(f, p) for f in found.products)]
        if found and named == spec["products"]:
            right += 1
        else:
            wrong.append(f"{message_id}: {found.products if found else 'not found'}")
    return right, total, wrong


HOLD_OPTIONS = {"plain": {"vocabulary": False, "max_hearings": 1, "scripts": False},
                "vocabulary": {"vocabulary": True, "max_hearings": 1, "scripts": False},
                "vocabulary + hearings": {"vocabulary": True, "max_hearings": pipeline.MAX_HEARINGS, "scripts": False},
                "vocabulary + hearings + scripts (default)": {"vocabulary": True,
                                                              "max_hearings": pipeline.MAX_HEARINGS, "scripts": True}}


def hold_scores(engine, holds, option: dict, catalog) -> dict:
    right = products_ok = products_total = 0
    started = time.perf_counter()
    for label, hold in holds:
        result = pipeline.audit_file(hold.path, DANA, engine, catalog, **option)
        expected = outline(truth_result(hold, catalog))
        if outline(result) == expected:
            right += 1
        else:
            print(f"    {label}: findings {outline(result)} != {expected}")
        ok, total, wrong = products_right(hold, result)
        products_ok, products_total = products_ok + ok, products_total + total
        for line in wrong:
            print(f"    {label}: {line}")
    return {"right": right, "holds": len(holds), "products_ok": products_ok, "products_total": products_total,
            "time_s": time.perf_counter() - started}


# ---------------------------------------------------------------- real recorded speech

def fetch_real_speech(cache: Path) -> list[tuple[str, np.ndarray, str]]:
    """(label, samples, words) of the real recordings, fetched from their packages once into `cache`."""
    import soundfile

    real = []
    jfk = cache / "jfk.wav"
    if not jfk.exists() and shutil.which("npm"):
        subprocess.run(["npm", "pack", "nodejs-whisper@0.3.1", "--silent"], cwd=cache, check=True,
                       capture_output=True)
        with tarfile.open(cache / "nodejs-whisper-0.3.1.tgz") as archive:
            member = archive.getmember("package/cpp/whisper.cpp/bindings/go/samples/jfk.wav")
            jfk.write_bytes(archive.extractfile(member).read())
    if jfk.exists():
        samples, rate = soundfile.read(jfk, dtype="float32")
        assert rate == SAMPLE_RATE
        real.append(("jfk.wav (npm nodejs-whisper 0.3.1), 16 kHz", samples, JFK_TEXT))
        phone, phone_rate = generate.telephone_channel(samples, "ulaw-8k")
        import soxr

        real.append(("jfk.wav, telephone channel 8 kHz mu-law",
                     soxr.resample(phone, phone_rate, SAMPLE_RATE).astype(np.float32), JFK_TEXT))
    sample, stm = cache / "pyannote-sample.wav", cache / "pyannote-sample.stm"
    if not sample.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "pyannote.audio==4.0.7",
                        "-d", str(cache)], check=True)
        with zipfile.ZipFile(cache / "pyannote_audio-4.0.7-py3-none-any.whl") as wheel:
            sample.write_bytes(wheel.read("pyannote/audio/sample/sample.wav"))
            stm.write_bytes(wheel.read("pyannote/audio/sample/sample.stm"))
    samples, rate = soundfile.read(sample, dtype="float32")
    for number, (start_s, end_s, words) in enumerate(stm_turns(stm), start=1):
        clip = samples[int(max(start_s - pipeline.CLIP_PAD_BEFORE_S, 0) * rate):int((end_s + pipeline.CLIP_PAD_AFTER_S) * rate)]
        real.append((f"sample.wav (PyPI pyannote.audio 4.0.7), 2 speakers, part {number}", clip, words))
    return real


def stm_turns(stm: Path, most_s: float = 12.0) -> list[tuple[float, float, str]]:
    """The timed transcript's lines joined into pieces of at most `most_s`, as the segmenter would cut
    speech (a 30 s clip is a full Whisper window, which no hold message is)."""
    pieces: list[tuple[float, float, str]] = []
    for line in stm.read_text().splitlines():
        if not line.strip():
            continue
        _, _, _, start, end, words = line.split(maxsplit=5)
        if pieces and float(end) - pieces[-1][0] <= most_s:
            pieces[-1] = (pieces[-1][0], float(end), pieces[-1][2] + " " + words)
        else:
            pieces.append((float(start), float(end), words))
    return pieces


def real_scores(engine, real, prompt: str | None) -> dict:
    errors = words = 0
    started = time.perf_counter()
    for (label, samples, text), heard in zip(real, engine.transcribe_many([clip for _, clip, _ in real], prompt=prompt)):
        edits, n = word_errors(text, heard.text)
        errors, words = errors + edits, words + n
        print(f"    {label}: WER {edits / n:.3f} {heard.text!r}")
    return {"errors": errors, "words": words, "time_s": time.perf_counter() - started}


# ---------------------------------------------------------------- decoding options

# faster-whisper's own options over holdguard's (beam 5, temperature 0, the catalog's names as the
# prompt), decoded one clip at a time; "_prompt" picks another prompt.
DECODING_OPTIONS = {
    "beam 5, temperature 0 (holdguard's)": {},
    "greedy (beam 1)": {"beam_size": 1},
    "beam 10": {"beam_size": 10},
    "patience 2": {"patience": 2.0},
    "without timestamps": {"without_timestamps": True},
    "temperature fallback to 1.0": {"temperature": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0], "log_prob_threshold": -1.0,
                                    "compression_ratio_threshold": 2.4},
    "prompt as a sentence": {"_prompt": "sentence"},
    "prompt without Whisper's leading space": {"_prompt": "no space"},
}


def option_scores(engine, clips: list[tuple[str, np.ndarray]], option: dict) -> dict:
    """clip_scores for one decoding option (no retry of a hearing that reads the prompt back)."""
    from audits.transcribe import _decoded, combine, token_limit

    option = dict(option)
    names = vocabulary_prompt(CATALOG_PRODUCTS)
    prompt = {"sentence": "Thank you for holding. Ask about the " + names.rstrip(".").replace(", ", ", the ") + ".",
              "no space": engine.whisper_model.hf_tokenizer.encode(names, add_special_tokens=False).ids,
              }.get(option.pop("_prompt", ""), names)
    settings = dict(language="en", temperature=0.0, beam_size=5, initial_prompt=prompt,
                    condition_on_previous_text=False, no_speech_threshold=None, vad_filter=False) | option

    class OneByOne:
        def transcribe_many(self, samples_list, prompt=None):
            heard = []
            for samples in samples_list:
                segments, _ = engine.whisper_model.transcribe(
                    samples, max_new_tokens=token_limit(len(samples) / SAMPLE_RATE), **settings)
                heard.append(combine([_decoded(segment) for segment in segments], 0.0, len(samples) / SAMPLE_RATE))
            return heard

    return clip_scores(OneByOne(), clips, None)


# ---------------------------------------------------------------- main

def machine() -> str:
    import os

    cpu = platform.processor() or "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, load average {load:.2f} at the end"


def configurations(args) -> list[tuple[str, str]]:
    """(row label "base int8", compute type) for every model and compute type asked for."""
    return [(f"{model} {compute_type}", compute_type)
            for model in args.models.split(",") for compute_type in args.compute_types.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny.en,base")
    parser.add_argument("--compute-types", default="int8",
                        help="faster-whisper weights as these (comma-separated: int8, float32), each model")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/holdguard-accuracy"))
    parser.add_argument("--conditions", type=int, default=len(CONDITIONS), help="how many voice conditions")
    parser.add_argument("--hold-conditions", type=int, default=3, help="how many of them to audit whole")
    parser.add_argument("--skip-holds", action="store_true")
    parser.add_argument("--skip-clips", action="store_true", help="only the holds through the pipeline")
    parser.add_argument("--hold-options", default=",".join(HOLD_OPTIONS), help="which of: " + ", ".join(HOLD_OPTIONS))
    parser.add_argument("--decoding-options", action="store_true",
                        help="only faster-whisper's decoding options on the clips (DECODING_OPTIONS)")
    args = parser.parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    holds = build_holds(args.cache_dir, args.conditions)
    clips = [clip for _, hold in holds for clip in first_play_clips(hold)]
    real = [] if args.skip_clips else fetch_real_speech(args.cache_dir)
    prompts = {"plain": None, "vocabulary: catalog": vocabulary_prompt(CATALOG_PRODUCTS),
               "vocabulary: caller's product only": vocabulary_prompt(OWNED),
               "vocabulary: catalog, then the flow's scripts": vocabulary_prompt(CATALOG_PRODUCTS)}
    drift = [] if args.skip_clips else build_drift(args.cache_dir, args.conditions)
    clip_rows, real_rows, hold_rows, drift_rows = [], [], [], []
    if args.decoding_options:
        print("| model | option | WER | promo product named | product invented | time s |\n|---|---|---|---|---|---|")
        for model, compute_type in configurations(args):
            engine = shared_engine("faster-whisper", model.split()[0], compute_type=compute_type)
            for label, option in DECODING_OPTIONS.items():
                s = option_scores(engine, clips, option)
                print(f"| {model} | {label} | {s['errors'] / s['words']:.3f} | {s['named']}/{s['promos']} | "
                      f"{s['invented']} | {s['time_s']:.1f} |", flush=True)
        print(f"\nmachine: {machine()}")
        return 0
    for model, compute_type in configurations(args):
        engine = shared_engine("faster-whisper", model.split()[0], compute_type=compute_type)
        engine.transcribe_many([clips[0][1]])  # warm up
        for option, prompt in ({} if args.skip_clips else prompts).items():
            print(f"{model} / {option}", flush=True)
            hearer = WithScripts(engine, FLOW) if option.endswith("scripts") else engine
            scores = clip_scores(hearer, clips, prompt)
            clip_rows.append((model, option, scores))
            if option != "vocabulary: caller's product only":
                real_rows.append((model, option, real_scores(hearer, real, prompt)))
        if drift:
            print(f"{model} / drift", flush=True)
            drift_rows.append((model, drift_scores(WithScripts(engine, FLOW), drift, prompts["vocabulary: catalog"])))
        if args.skip_holds:
            continue
        for catalog_label, catalog in (("catalog loaded", FLOW), ("no catalog", [])):
            for option in args.hold_options.split(","):
                settings = HOLD_OPTIONS[option]
                print(f"{model} / holds, {catalog_label} / {option}", flush=True)
                hold_rows.append((model, catalog_label, option,
                                  hold_scores(engine, holds[:args.hold_conditions], settings, catalog)))

    n_clips = len(clips)
    if args.skip_clips:
        clip_rows = real_rows = []
    print(f"\n### Generated speech: {n_clips} clips ({len(holds)} conditions x {n_clips // len(holds)} messages), "
          "telephone channel\n")
    print("| model | decoding | WER | promo product named | product invented | time s |")
    print("|---|---|---|---|---|---|")
    for model, option, s in clip_rows:
        print(f"| {model} | {option} | {s['errors'] / s['words']:.3f} | {s['named']}/{s['promos']} | "
              f"{s['invented']} | {s['time_s']:.1f} |")
    if drift_rows:
        print(f"\n### Audio that differs from its script ({len(drift)} clips), vocabulary then the flow's scripts\n")
        print("| model | WER against what is said | script's number written | caller's product named | time s |")
        print("|---|---|---|---|---|")
        for model, s in drift_rows:
            print(f"| {model} | {s['errors'] / s['words']:.3f} | {s['written']}/{s['clips']} | "
                  f"{s['owned']}/{s['clips']} | {s['time_s']:.1f} |")
    print("\n### Real recorded speech\n")
    print("| model | decoding | WER | time s |")
    print("|---|---|---|---|")
    for model, option, s in real_rows:
        print(f"| {model} | {option} | {s['errors'] / s['words']:.3f} | {s['time_s']:.1f} |")
    if hold_rows:
        print(f"\n### Holds through the pipeline ({min(len(holds), args.hold_conditions)} holds, "
              "caller owns a Galaxy S7, open case)\n")
        print("| model | catalog | option | findings right | promo products right | audit time s |")
        print("|---|---|---|---|---|---|")
        for model, catalog_label, option, s in hold_rows:
            print(f"| {model} | {catalog_label} | {option} | {s['right']}/{s['holds']} | "
                  f"{s['products_ok']}/{s['products_total']} | {s['time_s']:.1f} |")
    print(f"\nmachine: {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
