"""The message library: each distinct message the fleet's audits have heard, so Whisper hears it once.

    library = load(db, engine="faster-whisper", model="tiny.en")    # read at the start of a batch
    result = pipeline.audit_file(path, context, transcriber, catalog, library=library)
    record(db, audit_id, result, library.take_news())                # what this recording added, stored

A hold flow plays the same few recordings to every caller. An audit groups the speech segments of
one recording by their sound (audits.fingerprint), then matches each group's first play against the
library's entries exactly as strictly as the plays of one recording are matched (the same
`fingerprint.group_plays`, the same thresholds): a different message sharing a jingle or an opening
phrase is not taken for one in the library, it is heard by Whisper and joins the library itself.

An entry keeps the anchor's fingerprint and the hearings Whisper made of it (up to
pipeline.MAX_HEARINGS decoded plays, in pipeline.hearing_order), and who heard them: the engine with its
package version, the model, and the vocabulary prompt. An entry heard otherwise is not reused: the
text would not be what this engine, model and prompt hear. A later recording's plays of an entry get
its hearings in the same order (pipeline.hearing_order), so auditing a recording again gives the
transcripts, messages and findings of its first audit without running the engine.

A batch with workers (audits.batch processes, Ray actors) keeps the library in its driver only: the
workers survey the recordings, the driver matches them against the library in the order given and
decides which plays are heard (audits.pipeline.plan and the hearing rounds), as one process would.
"""
from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field, replace

import numpy as np

from app.core.audit import AuditResult, words_as_pairs, words_from_pairs
from app.core.products import same_product
from app.storage import library as store
from audits import fingerprint
from audits.data import Transcript


@dataclass(frozen=True)
class HeardBy:
    """Who heard an entry: its transcripts are reused only for the same engine, model and prompt."""
    engine: str  # "faster-whisper 1.1.1": the package version too
    model: str
    vocabulary: str = ""  # the vocabulary prompt given to Whisper (audits.transcribe.vocabulary_prompt)


@dataclass
class Entry:
    """One distinct recorded message: what its first play sounded like, and what Whisper heard."""
    key: str  # uuid hex, made where it was first heard; the database row's key
    heard_by: HeardBy
    anchor: fingerprint.Fingerprint
    hearings: list[Transcript]  # decoded plays in hearing order; times are of no meaning here


@dataclass
class News:
    """What one recording's audit added to the library: new entries, entries heard again (all their
    hearings now), and the recording's plays of each entry (start times)."""
    entries: list[Entry] = field(default_factory=list)
    hearings: dict[str, list[Transcript]] = field(default_factory=dict)
    plays: dict[str, list[float]] = field(default_factory=dict)


def engine_version(engine: str) -> str:
    """"faster-whisper 1.1.1": a new engine version may hear other text."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{engine} {version(engine)}"
    except PackageNotFoundError:
        return engine


class Library:
    """The entries audits match speech against, and what the audits since `take_news` added."""

    def __init__(self, entries=(), *, engine: str = "", model: str = ""):
        self.entries: list[Entry] = list(entries)
        self.engine, self.model = engine_version(engine) if engine else "", str(model)
        self._news = News()

    def heard_by(self, prompt: str | None) -> HeardBy:
        return HeardBy(self.engine, self.model, prompt or "")

    # ---- called by audits.pipeline (plan, transcribe_distinct) ----------------------------------

    def match(self, anchors: list[fingerprint.Fingerprint], prompt: str | None) -> list[Entry]:
        """The entry of each of a recording's groups (`anchors`: each group's first play): an entry this
        engine heard that it matches (as strictly as two plays of one recording), else a new entry,
        which joins the library now, with no hearings yet, so the next recording of a batch matches it."""
        heard_by = self.heard_by(prompt)
        usable = [entry for entry in self.entries if entry.heard_by == heard_by]
        known = [entry.anchor for entry in usable]
        labels = fingerprint.group_plays(anchors, known)  # `known` gains the anchor of each new group
        new = [Entry(uuid.uuid4().hex, heard_by, anchor, []) for anchor in known[len(usable):]]
        self.entries += new
        return [(usable + new)[label] for label in labels]

    def learn(self, planned) -> None:
        """Note what an audit (an audits.pipeline.Plan, its hearings filled) added, for `take_news`: its
        new entries, the entries it heard again, and its plays of each."""
        speech = planned.survey.speech
        for use in planned.uses:
            entry, hearings = use.entry, use.entry.hearings[:use.hearings]
            if use.before == 0:
                self._news.entries.append(replace(entry, hearings=hearings))
            elif len(hearings) > use.before:
                self._news.hearings[entry.key] = hearings
            self._news.plays.setdefault(entry.key, []).extend(speech[i].start_s for i in use.plays)

    def forget(self, planned) -> None:
        """Undo what a failed audit (an audits.pipeline.Plan) added: its new entries and the hearings
        it asked for (a failed audit adds nothing)."""
        for use in planned.uses:
            if use.before is not None:
                del use.entry.hearings[use.before:]
        self.entries = [entry for entry in self.entries if entry.hearings]

    def take_news(self) -> News:
        """What the audits since the last call added (and forget it)."""
        news, self._news = self._news, News()
        return news


# ---- the database --------------------------------------------------------------------------------

def load(db, *, engine: str, model: str) -> Library | None:
    """The library as stored now, the entries heard by this engine version and model; None for a
    database without the library's tables (not migrated: `holdguard db init`)."""
    if not store.exists(db):
        return None
    version = engine_version(engine)
    return Library((entry_from_row(row) for row in store.load_entries(db, version, str(model))),
                   engine=engine, model=model)


def record(db, audit_id: int, result: AuditResult, news: News) -> None:
    """Store one audited recording's news: new entries, new hearings, and its plays of each entry with
    the message they were grouped into (text, category, products) and whom they reached."""
    message_at = {start_s: message for message in result.messages for start_s in message.play_times_s}
    open_issue = bool(result.context and result.context.open_issues)
    owned = result.context.owned_products if result.context else []
    uses = []
    for key, plays in news.plays.items():
        message = next((message_at[start_s] for start_s in plays if start_s in message_at), None)
        products = message.products if message else []
        uses.append({"entry_key": key, "plays": len(plays), "message_id": message.id if message else None,
                     "category": message.category if message else None, "products": json.dumps(products),
                     "open_issue": int(open_issue),
                     "owns_product": int(any(same_product(p, o) for p in products for o in owned))})
    store.record(db, audit_id, new_entries=[entry_row(entry) for entry in news.entries],
                 hearings={key: (_hearings_json(hearings), best_text(hearings)) for key, hearings in news.hearings.items()},
                 uses=uses)


def entry_row(entry: Entry) -> dict:
    """An Entry as a library_messages row (the fingerprint as base64 float32 in JSON)."""
    return {"entry_key": entry.key, "engine": entry.heard_by.engine, "model": entry.heard_by.model,
            "vocabulary": entry.heard_by.vocabulary, "duration_s": round(entry.anchor.duration_s, 2),
            "fingerprint": json.dumps({"frames": _b64(entry.anchor.frames), "n_mels": entry.anchor.frames.shape[1],
                                       "loudness_db": _b64(entry.anchor.loudness_db)}),
            "hearings": _hearings_json(entry.hearings), "text": best_text(entry.hearings)}


def entry_from_row(row: dict) -> Entry:
    stored = json.loads(row["fingerprint"])
    frames = np.frombuffer(base64.b64decode(stored["frames"]), dtype="<f4").reshape(-1, stored["n_mels"])
    loudness_db = np.frombuffer(base64.b64decode(stored["loudness_db"]), dtype="<f4")
    hearings = [Transcript(0.0, 0.0, h["text"], h["avg_logprob"], h["no_speech_prob"], h["compression_ratio"],
                           words_from_pairs(h.get("words", ())))  # none kept before issue #14
                for h in json.loads(row["hearings"])]
    return Entry(row["entry_key"], HeardBy(row["engine"], row["model"], row["vocabulary"] or ""),
                 fingerprint.Fingerprint(frames.astype(np.float32), loudness_db.astype(np.float32)), hearings)


def best_text(hearings: list[Transcript]) -> str:
    """The surest non-empty hearing's text ("" when Whisper's every hearing was rejected)."""
    spoken = [heard for heard in hearings if heard.text.strip()]
    return max(spoken, key=lambda heard: heard.avg_logprob).text.strip() if spoken else ""


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def _hearings_json(hearings: list[Transcript]) -> str:
    return json.dumps([{"text": h.text, "avg_logprob": h.avg_logprob, "no_speech_prob": h.no_speech_prob,
                        "compression_ratio": h.compression_ratio, "words": words_as_pairs(h.words)}
                       for h in hearings])
