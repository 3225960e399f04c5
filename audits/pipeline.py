"""One recording through every stage: load -> segment -> transcribe speech -> group -> classify -> rules.

    result = audit_file("hold.wav", context, load_engine())

Only speech segments reach the speech engine: Whisper invents text on music.
`transcribe_segments` is the seam for issue #5 (transcribe each distinct message
once); `analyse` is everything after the engine and needs no audio.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from audits import classify, messages, rules
from audits.data import SAMPLE_RATE, Audio, AuditResult, Context, Segment, Transcript

# Speech segments can start a syllable late (a soft onset under the fading music); Whisper then
# drops the first word ("Upgrade to..." heard as "to the..."). Each clip gets this much of what
# surrounds it, never reaching into the neighbouring speech segment.
CLIP_PAD_BEFORE_S = 0.5
CLIP_PAD_AFTER_S = 0.3


def audit_file(path: str | Path, context: Context | None, transcriber,
               catalog: Iterable[classify.CatalogMessage] = (),
               on_segment: Callable[[int, int], None] | None = None,
               known_products: Iterable[str] = ()) -> AuditResult:
    """Audit one recording. Raises audits.audio.AudioError (one line) when the file is not usable audio.

    `catalog` (the hold flow's messages and products, see audits.context.load_catalog) and
    `known_products` (bare product names) help name the products a promo sells;
    `on_segment(done, total)` reports transcription progress.
    """
    from audits import audio as audio_stage, segment

    audio = audio_stage.load(path)
    segments = segment.split(audio)
    transcripts = transcribe_segments(audio, segments, transcriber, on_segment)
    return analyse(str(path), audio.duration_s, segments, transcripts, context, catalog,
                   known_products=known_products)


def transcribe_segments(audio: Audio, segments: list[Segment], transcriber,
                        on_segment: Callable[[int, int], None] | None = None) -> list[Transcript]:
    """One Transcript per speech segment, in order; music and silence are never sent to the engine."""
    speech = [s for s in segments if s.kind == "speech"]
    transcripts = []
    for done, span in enumerate(speech, start=1):
        start_s, end_s = clip_bounds_s(speech, done - 1, audio.duration_s)
        clip = audio.samples[int(start_s * SAMPLE_RATE):int(end_s * SAMPLE_RATE)]
        heard = transcriber.transcribe(clip, start_s=start_s)
        transcripts.append(replace(heard, start_s=span.start_s, end_s=span.end_s))  # a play is its segment
        if on_segment:
            on_segment(done, len(speech))
    return transcripts


def clip_bounds_s(speech: list[Segment], index: int, duration_s: float) -> tuple[float, float]:
    """Where to cut speech segment `index` for the engine: padded, but not into its speech neighbours."""
    span = speech[index]
    earliest_s = speech[index - 1].end_s if index > 0 else 0.0
    latest_s = speech[index + 1].start_s if index + 1 < len(speech) else duration_s
    return max(span.start_s - CLIP_PAD_BEFORE_S, earliest_s), min(span.end_s + CLIP_PAD_AFTER_S, latest_s)


def analyse(recording: str, duration_s: float, segments: list[Segment], transcripts: list[Transcript],
            context: Context | None = None, catalog: Iterable[classify.CatalogMessage] = (),
            group_keys: list | None = None, known_products: Iterable[str] = ()) -> AuditResult:
    """Group, classify and judge transcribed plays; `group_keys` are optional acoustic groups (issue #5)."""
    context = context or Context()
    catalog = list(catalog)
    known = list(dict.fromkeys([*context.owned_products, *(p for entry in catalog for p in entry.products),
                                *known_products]))
    grouped = messages.group(transcripts, group_keys)
    heard = classify.classify_messages(grouped, known, messages.texts_heard(grouped, transcripts), catalog)
    summary = rules.summarise(segments, heard, duration_s)
    findings = rules.find(heard, segments, duration_s, context, summary)
    return AuditResult(recording=recording, duration_s=duration_s, segments=segments, messages=heard,
                       findings=findings, summary={**summary, "findings": len(findings)}, context=context)
