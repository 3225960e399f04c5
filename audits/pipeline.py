"""One recording through every stage: load -> segment -> transcribe speech -> group -> classify -> rules.

    result = audit_file("hold.wav", context, load_engine())

Only speech segments reach the speech engine: Whisper invents text on music.
A hold loop plays the same few recordings again and again, so the engine runs
once per distinct recording (`transcribe_distinct`): plays are grouped by their
sound first (audits.fingerprint), one play of each group is transcribed and
every play gets its text. Re-recorded versions (another voice or pace) sound
different, are transcribed on their own and merge by text in audits.messages.
The recording is decoded into a temporary file (audits.spool) and read back in
slices, so memory does not grow with the length of the hold.
`analyse` is everything after the engine and needs no audio. A batch with workers (audits.batch)
runs the steps of `transcribe_distinct` apart: `survey` in the workers, `plan` and the hearing
rounds in its driver, the engine on the chosen clips in the workers again.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from audits import classify, messages, rules
from app.core.audit import AuditResult, Context, Span
from audits.data import SAMPLE_RATE, Audio, Transcript
from audits.library import Entry, Library
from audits.scripts import (ScriptHearing, distinct_scripts, heard_with, hearing_with_script,
                            keeps_what_was_heard, script_for)

# Speech segments can start a syllable late (a soft onset under the fading music); Whisper then
# drops the first word ("Upgrade to..." heard as "to the..."). Each clip gets this much of what
# surrounds it, never reaching into the neighbouring speech segment.
CLIP_PAD_BEFORE_S = 0.5
CLIP_PAD_AFTER_S = 0.3

# More than one hearing: a distinct message is decoded from one play; when that hearing is unsure
# (avg_logprob under LOW_CONFIDENCE_LOGPROB, or no text) or is a promo naming none of the products the
# audit knows, up to MAX_HEARINGS plays of it are decoded in all, and the best hearing speaks for the
# plays not decoded. One play may be heard "Galaxy S fan" where another is heard "Galaxy S7". The
# threshold is measured in tests/bench/accuracy.py: telephone-band espeak heard right scores -0.3 to
# -0.55, heard with wrong words -0.6 to -0.9.
LOW_CONFIDENCE_LOGPROB = -0.6
MAX_HEARINGS = 3
# Which plays of a message are heard, in order (hearing_order): whole plays before cut ones (a play
# shorter than this fraction of the message's longest lost words to the segmenter or the recording's
# end), and among whole plays the cleanest first, by an estimate of each play's signal-to-noise ratio:
# its loud frames (speech) against its quiet ones (the line and music under the pauses between words).
WHOLE_PLAY_FRACTION = 0.9
SNR_FRAME_S = 0.02
SNR_SPEECH_PERCENTILE, SNR_FLOOR_PERCENTILE = 95, 10


def audit_file(path: str | Path, context: Context | None, transcriber,
               catalog: Iterable[classify.CatalogMessage] = (),
               on_segment: Callable[[int, int], None] | None = None,
               known_products: Iterable[str] = (), acoustic_grouping: bool = True,
               vocabulary: bool = True, max_hearings: int = MAX_HEARINGS, library=None,
               scripts: bool = True) -> AuditResult:
    """Audit one recording. Raises audits.audio.AudioError (one line) when the file is not usable audio.

    `catalog` (the hold flow's messages and products, see audits.context.load_catalog) and
    `known_products` (bare product names) help name the products a promo sells;
    `on_segment(done, total)` reports transcription progress (engine runs done / to do).
    `acoustic_grouping=False` transcribes every play (slower; for comparisons).
    The product names of the catalog and `known_products` are given to Whisper as its vocabulary
    (audits.transcribe.vocabulary_prompt) unless `vocabulary` is False. The caller's own products are
    not: given alone, they make Whisper hear them in a promo for a product that sounds alike ("Galaxy
    S9" heard "Galaxy S7" in 5 of 6 voices with tiny.en, 1 of 6 with base; tests/bench/accuracy.py),
    which is the finding we must not invent. They are still looked for in every hearing. A message is
    heard from up to `max_hearings` plays (see transcribe_distinct). With a message `library`
    (audits.library.Library), speech heard in earlier recordings is not heard again. A message whose
    first hearing reads like one of the catalog's scripts is heard again with it (audits.scripts)
    unless `scripts` is False.
    """
    from audits.spool import spool
    from audits.transcribe import vocabulary_prompt

    catalog = list(catalog)
    known = known_product_names(context, catalog, known_products)
    prompt = vocabulary_prompt(known_product_names(None, catalog, known_products)) if vocabulary else None
    with spool(path) as recording:
        audio = recording.audio
        segments = split(audio, recording.levels_db)
        if acoustic_grouping:
            transcripts, keys = transcribe_distinct(audio, segments, transcriber, on_segment, prompt=prompt,
                                                    known_products=known, max_hearings=max_hearings,
                                                    library=library,
                                                    scripts=distinct_scripts(catalog) if scripts else ())
        else:
            transcripts = transcribe_segments(audio, segments, transcriber, on_segment, prompt=prompt)
            keys = None
    return analyse(str(path), audio.duration_s, segments, transcripts, context, catalog,
                   group_keys=keys, known_products=known_products)


def split(audio: Audio, levels_db) -> list[Span]:
    """audits.segment.split, with the frame levels measured while the audio was decoded (audits.spool):
    the segmenter then reads the samples only where its VAD looks."""
    from audits import segment

    return segment.split(audio, levels_db)


def transcribe_segments(audio: Audio, segments: list[Span], transcriber,
                        on_segment: Callable[[int, int], None] | None = None,
                        prompt: str | None = None) -> list[Transcript]:
    """One Transcript per speech segment, in order, the engine run on every one of them;
    music and silence are never sent to the engine."""
    speech = [s for s in segments if s.kind == "speech"]
    return transcribe_plays(audio, speech, range(len(speech)), transcriber, on_segment, prompt)


def transcribe_distinct(audio: Audio, segments: list[Span], transcriber,
                        on_segment: Callable[[int, int], None] | None = None, prompt: str | None = None,
                        known_products: Iterable[str] = (),
                        max_hearings: int = MAX_HEARINGS, library=None,
                        scripts: list[str] | tuple = ()) -> tuple[list[Transcript], list[int]]:
    """One Transcript per speech segment, in order, the engine run once per acoustic group, or up to
    `max_hearings` times for a group whose first hearing `needs_another_hearing`; a group whose first
    hearing reads like one of the flow's `scripts` is heard once more with it (`script_hearings`).

    Returns the transcripts and each play's group number (the `group_keys` of `analyse`). Plays are
    heard in `hearing_order`: whole plays before cut ones, the cleanest first. A play that was decoded
    keeps its own text; the others get their group's best hearing.

    With a message `library` (audits.library.Library) its entries are groups too, matched as strictly:
    a group heard before gets its earlier hearings (in the order decoded then) and is only
    heard again while it has fewer than `max_hearings` and needs another; the library then learns
    what was heard here. This is one recording's turn of what a batch does for all its recordings at
    once (audits.batch): `survey`, `plan`, `first_hearings`, `more_hearings`, `plan_transcripts`.
    """
    library = library if library is not None else Library()
    planned = plan(survey(audio, segments), library, heard_with(prompt, scripts), known_products)
    speech = planned.survey.speech
    try:  # plan made the library's new entries; first_hearings holds their places
        asked = first_hearings([planned])[0]
        fill(asked, transcribe_plays(audio, speech, [play for play, *_ in asked], transcriber, on_segment, prompt))
        scripted = script_hearings([planned], scripts)[0]
        progress = on_segment and (lambda done, total: on_segment(len(asked) + done, len(asked) + total))
        heard = transcribe_with_scripts(audio, speech, [play for play, *_ in scripted],
                                        [script for *_, script in scripted], firsts(scripted), transcriber, progress)
        adopt_scripted(scripted, heard, planned.known_products)
        again = more_hearings([planned], max_hearings)[0]
        so_far = len(asked) + len(scripted)
        progress = on_segment and (lambda done, total: on_segment(so_far + done, so_far + total))
        fill(again, transcribe_plays(audio, speech, [play for play, *_ in again], transcriber, progress, prompt))
    except BaseException:
        library.forget(planned)
        raise
    library.learn(planned)
    return plan_transcripts(planned), planned.keys


@dataclass
class Survey:
    """What an audit needs of a recording's audio before anything is heard (plain data, no samples):
    its segments, and its speech plays grouped by sound within it."""
    duration_s: float
    segments: list[Span]
    groups: list[int]  # per speech play: its acoustic group in this recording, 0, 1, ... by first play
    anchors: list  # per group: its first play's audits.fingerprint.Fingerprint
    snr_db: list[float]  # per speech play, for hearing_order

    @property
    def speech(self) -> list[Span]:
        return [span for span in self.segments if span.kind == "speech"]


def survey(audio: Audio, segments: list[Span]) -> Survey:
    """Fingerprint and group the speech plays of one recording; each clip is read once and dropped."""
    from audits import fingerprint

    snrs: list[float] = []

    def clips():
        for span in (s for s in segments if s.kind == "speech"):
            clip = audio.samples[_sample(span.start_s):_sample(span.end_s)]
            snrs.append(snr_db(clip))
            yield clip

    anchors: list = []
    groups = fingerprint.group_clips(clips(), anchors)
    return Survey(audio.duration_s, segments, groups, anchors, snrs)


@dataclass
class Use:
    """One message (a library entry) as one recording plays it."""
    entry: Entry
    plays: list[int]  # indices into the speech plays, in hearing_order
    before: int | None = None  # the entry's hearings before this recording (set by the hearing rounds)
    hearings: int = 0  # how many of the entry's hearings speak for this recording's plays


@dataclass
class Plan:
    """A surveyed recording matched against the message library: what it plays, what it must hear."""
    survey: Survey
    known_products: list[str]  # for needs_another_hearing and best_hearing: the caller's products too
    uses: list[Use]
    keys: list[int]  # per speech play: its use (the group_keys of analyse)


def plan(surveyed: Survey, library, prompt: str | None, known_products: Iterable[str]) -> Plan:
    """Match a recording's groups against `library` (audits.library.Library), which gains an entry for
    each group it did not know. Recordings of a batch are planned in the order given. The survey's
    anchors go to the library (a batch keeps many surveys; only new messages' anchors are kept)."""
    entries = library.match(surveyed.anchors, prompt)
    surveyed.anchors = []
    uses: dict[str, Use] = {}  # by entry key, in order of first play
    for play, group in enumerate(surveyed.groups):
        uses.setdefault(entries[group].key, Use(entries[group], [])).plays.append(play)
    number = {key: n for n, key in enumerate(uses)}
    speech = surveyed.speech
    for use in uses.values():
        use.plays = hearing_order(speech, use.plays, surveyed.snr_db)
    return Plan(surveyed, list(known_products), list(uses.values()),
                [number[entries[group].key] for group in surveyed.groups])


# A play asked to be heard: (index into its recording's speech plays, the entry, the hearing's place in it).
Asked = tuple[int, Entry, int]


def first_hearings(plans: list[Plan]) -> list[list[Asked]]:
    """Round one, per plan: the first play (in hearing order) of each entry with no hearing yet, in the
    first of `plans` that plays it. Its place in the entry is held until `fill`."""
    asked = []
    for planned in plans:
        mine = []
        for use in planned.uses:
            if not use.entry.hearings:
                use.before = 0
                use.entry.hearings.append(None)
                mine.append((use.plays[0], use.entry, 0))
        asked.append(mine)
    return asked


# A play asked to be heard again with the flow's script it reads like: (play, the entry, the script).
Scripted = tuple[int, Entry, str]


def script_hearings(plans: list[Plan], scripts: list[str] | tuple) -> list[list[Scripted]]:
    """Between rounds one and two, per plan: the first play of each entry first heard in this plan
    (round one) whose hearing reads like one of `scripts` (audits.scripts.script_for), with that script."""
    asked = []
    for planned in plans:
        mine = []
        for use in planned.uses:
            first = use.entry.hearings[0] if use.before == 0 else None
            script = script_for(first.text, list(scripts), planned.known_products) if first is not None else None
            if script is not None:
                mine.append((use.plays[0], use.entry, script))
        asked.append(mine)
    return asked


def firsts(asked: list[Scripted]) -> list[Transcript]:
    """The first hearings of the entries asked to be heard with their scripts."""
    return [entry.hearings[0] for _, entry, _ in asked]


def adopt_scripted(asked: list[Scripted], heard: list[ScriptHearing], known_products: list[str]) -> None:
    """An entry's first hearing becomes the one made with its script when that keeps every number and
    known product the first heard and adds only numbers the audio confirmed
    (audits.scripts.keeps_what_was_heard)."""
    for (_, entry, _script), (scripted, confirmed) in zip(asked, heard, strict=True):
        if keeps_what_was_heard(entry.hearings[0], scripted, known_products, confirmed):
            entry.hearings[0] = replace(scripted, start_s=0.0, end_s=0.0)


def more_hearings(plans: list[Plan], max_hearings: int = MAX_HEARINGS) -> list[list[Asked]]:
    """Round two, once round one is filled (every entry has its first hearing), per plan in order:
    for an entry whose first hearing `needs_another_hearing` (for this recording's products), the plays
    beyond the entry's hearings so far, up to `max_hearings` in all. Each recording's plays take the
    entry's hearings as they stand after its turn, so a batch hears what its recordings would one by one."""
    asked = []
    for planned in plans:
        mine = []
        for use in planned.uses:
            heard = use.entry.hearings
            use.before = len(heard) if use.before is None else use.before
            unsure = heard[0] is not None and needs_another_hearing(heard[0], planned.known_products)
            limit = max_hearings if unsure else 1  # no first hearing: its engine run failed
            for play in use.plays[len(heard):limit]:
                mine.append((play, use.entry, len(heard)))
                heard.append(None)
            use.hearings = len(heard)
        asked.append(mine)
    return asked


def fill(asked: list[Asked], heard: list[Transcript]) -> None:
    """Put the engine's hearings of the asked plays in their places (times of no meaning there)."""
    for (_, entry, place), transcript in zip(asked, heard, strict=True):
        entry.hearings[place] = replace(transcript, start_s=0.0, end_s=0.0)


def plan_transcripts(planned: Plan) -> list[Transcript]:
    """One Transcript per speech play once its hearings are filled: a play in the entry's hearings
    (in hearing order) takes that hearing, the others the best of them. Raises ValueError when a hearing
    this recording needs is missing (its engine run failed)."""
    speech = planned.survey.speech
    heard_as: dict[int, Transcript] = {}
    for use in planned.uses:
        hearings = use.entry.hearings[:use.hearings]
        if None in hearings:
            raise ValueError("a message it plays could not be heard (its engine run failed)")
        best = best_hearing(hearings, planned.known_products)
        for rank, play in enumerate(use.plays):
            heard_as[play] = hearings[rank] if rank < len(hearings) else best
    return [replace(heard_as[index], start_s=span.start_s, end_s=span.end_s) for index, span in enumerate(speech)]


def hearing_order(speech: list[Span], indices: list[int], snrs_db: list[float]) -> list[int]:
    """Plays of one message (indices into `speech`) in the order to hear them: whole plays (at least
    WHOLE_PLAY_FRACTION of the longest) cleanest first (`snrs_db`, one per play, see snr_db), then cut
    plays longest first; ties keep play order. A noisy play decoded first would be the one hearing of
    a sure-sounding message."""
    if len(indices) < 2:
        return list(indices)
    longest_s = max(speech[i].duration_s for i in indices)

    def order(i: int) -> tuple[bool, float]:
        span = speech[i]
        if span.duration_s < WHOLE_PLAY_FRACTION * longest_s:
            return True, -span.duration_s
        return False, -snrs_db[i]

    return sorted(indices, key=order)  # stable


def snr_db(samples) -> float:
    """A play's signal-to-noise ratio estimate in dB: the level of its loud frames (speech) over that
    of its quiet ones (what is under the pauses between words)."""
    import numpy as np

    frame_n = int(SNR_FRAME_S * SAMPLE_RATE)
    n_frames = len(samples) // frame_n
    if n_frames < 2:
        return 0.0
    frames = np.asarray(samples[:n_frames * frame_n], dtype=np.float32).reshape(n_frames, frame_n)
    levels_db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)  # (n_frames,)
    speech_db, floor_db = np.percentile(levels_db, [SNR_SPEECH_PERCENTILE, SNR_FLOOR_PERCENTILE])
    return float(speech_db - floor_db)


def needs_another_hearing(heard: Transcript, known_products: list[str]) -> bool:
    """Whether a message's first hearing is too unsure to speak for its other plays: no text, a low
    avg_logprob, or a promo that names none of the known products."""
    if not heard.text.strip() or heard.avg_logprob < LOW_CONFIDENCE_LOGPROB:
        return True
    return (bool(known_products) and classify.classify_text(heard.text)[0] == "promo"
            and not any(classify.mentions(heard.text, product) for product in known_products))


def best_hearing(hearings: list[Transcript], known_products: list[str]) -> Transcript:
    """The hearing naming the most known products, then the surest (highest avg_logprob), then the first."""
    def score(heard: Transcript) -> tuple[bool, int, float]:
        named = sum(classify.mentions(heard.text, product) for product in known_products)
        return bool(heard.text.strip()), named, heard.avg_logprob

    return max(hearings, key=score)


def known_product_names(context: Context | None, catalog: Iterable[classify.CatalogMessage] = (),
                        known_products: Iterable[str] = ()) -> list[str]:
    """Every product name the audit knows of: the caller's, the catalog's, then `known_products`."""
    owned = context.owned_products if context else []
    return list(dict.fromkeys([*owned, *(p for entry in catalog for p in entry.products), *known_products]))


def transcribe_plays(audio: Audio, speech: list[Span], indices: Iterable[int], transcriber,
                     on_segment: Callable[[int, int], None] | None = None,
                     prompt: str | None = None) -> list[Transcript]:
    """The engine's Transcripts of the speech segments at `indices` (padded clips), each timed as its
    segment. Clips go to the engine's `transcribe_many` BATCH_CLIPS at a time (engines that batch
    decode them together); `on_segment(done, total)` after each batch. `prompt`: see
    audits.transcribe.vocabulary_prompt (engines without it are called without)."""
    from audits.transcribe import BATCH_CLIPS

    indices = list(indices)
    transcripts: list[Transcript] = []
    for first in range(0, len(indices), BATCH_CLIPS):
        batch = indices[first: first + BATCH_CLIPS]
        bounds = [clip_bounds_s(speech, i, audio.duration_s) for i in batch]
        vocabulary = {"prompt": prompt} if prompt else {}
        heard = transcriber.transcribe_many([_cut(audio, start_s, end_s) for start_s, end_s in bounds],
                                            [start_s for start_s, _ in bounds], **vocabulary)
        transcripts += [replace(text, start_s=speech[i].start_s, end_s=speech[i].end_s)  # a play is its segment
                        for i, text in zip(batch, heard)]
        if on_segment:
            on_segment(len(transcripts), len(indices))
    return transcripts


def transcribe_with_scripts(audio: Audio, speech: list[Span], indices: list[int], scripts: list[str],
                            first_hearings: list[Transcript], transcriber,
                            on_segment: Callable[[int, int], None] | None = None) -> list[ScriptHearing]:
    """Each play alone, with its script as the prompt (`transcribe_plays`), its numbers judged by the
    clip against its first hearing's (audits.scripts.hearing_with_script; not with an engine that
    cannot score); `on_segment(done, total)` after each."""
    heard = []
    for index, script, first in zip(indices, scripts, first_hearings, strict=True):
        scripted = transcribe_plays(audio, speech, [index], transcriber, prompt=script)[0]
        score = (functools.partial(transcriber.score, play_clip(audio, speech, index))
                 if hasattr(transcriber, "score") else None)
        heard.append(hearing_with_script(first, scripted, score))
        if on_segment:
            on_segment(len(heard), len(indices))
    return heard


def play_clip(audio: Audio, speech: list[Span], index: int):
    """The samples the engine hears of speech segment `index` (`clip_bounds_s`)."""
    return _cut(audio, *clip_bounds_s(speech, index, audio.duration_s))


def _cut(audio: Audio, start_s: float, end_s: float):
    return audio.samples[_sample(start_s):_sample(end_s)]


def _sample(at_s: float) -> int:
    return int(at_s * SAMPLE_RATE)


def clip_bounds_s(speech: list[Span], index: int, duration_s: float) -> tuple[float, float]:
    """Where to cut speech segment `index` for the engine: padded, but not into its speech neighbours."""
    span = speech[index]
    earliest_s = speech[index - 1].end_s if index > 0 else 0.0
    latest_s = speech[index + 1].start_s if index + 1 < len(speech) else duration_s
    return max(span.start_s - CLIP_PAD_BEFORE_S, earliest_s), min(span.end_s + CLIP_PAD_AFTER_S, latest_s)


def analyse(recording: str, duration_s: float, segments: list[Span], transcripts: list[Transcript],
            context: Context | None = None, catalog: Iterable[classify.CatalogMessage] = (),
            group_keys: list | None = None, known_products: Iterable[str] = ()) -> AuditResult:
    """Group, classify and judge transcribed plays; `group_keys` are optional acoustic groups (issue #5)."""
    context = context or Context()
    catalog = list(catalog)
    known = known_product_names(context, catalog, known_products)
    grouped = messages.group(transcripts, group_keys)
    heard = classify.classify_messages(grouped, known, messages.texts_heard(grouped, transcripts), catalog)
    summary = rules.summarise(segments, heard, duration_s)
    findings = rules.find(heard, segments, duration_s, context, summary)
    return AuditResult(recording=recording, duration_s=duration_s, segments=segments, messages=heard,
                       findings=findings, summary={**summary, "findings": len(findings)}, context=context)
