"""What an audit finds, as plain data: time spans, distinct messages, findings, the caller context.

The pipeline (audits/) produces an AuditResult; storage keeps and rebuilds it;
reports and pages show it. `to_json` is the report's JSON contract.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from app.core.policy import Issue

SpanKind = Literal["speech", "music", "silence"]
Category = Literal["promo", "reassurance", "wait", "notice", "tip", "other"]
Severity = Literal["low", "medium", "high"]

__all__ = ["AuditResult", "Category", "Context", "Finding", "Issue", "LOW_CONFIDENCE_WORD", "Message", "Severity",
           "Span", "SpanKind", "Word"]

# A word Whisper gave a probability under this is marked in the reports and pages as one to check. On
# the telephone-line clips of tests/bench/word_confidence.py (Whisper base), it marks 55 % of the misheard
# words and 17 % of the right ones: a marked word was misheard 58 % of the time, any word 30 %.
LOW_CONFIDENCE_WORD = 0.5


@dataclass
class Span:
    """A stretch of the recording heard as speech, music or silence."""
    start_s: float
    end_s: float
    kind: SpanKind

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Context:
    """Who was on hold: from --context, a sidecar <stem>.context.json, or the webhook's database."""
    open_issues: list[Issue] = field(default_factory=list)
    owned_products: list[str] = field(default_factory=list)
    queue: str | None = None
    issues_as_of: str | None = None  # the call's start when the issues are those open then (ISO 8601)

    @classmethod
    def from_dict(cls, data: dict) -> "Context":
        return cls(
            open_issues=[Issue(**{k: v for k, v in issue.items() if k in ("id", "severity", "summary")})
                         for issue in data.get("open_issues", [])],
            owned_products=list(data.get("owned_products", [])),
            queue=data.get("queue"),
            issues_as_of=data.get("issues_as_of"),
        )


@dataclass(frozen=True)
class Word:
    """One word of a transcript as Whisper heard it: its text with the punctuation that follows or
    precedes it ("S7,"), and how sure Whisper was of it (0-1: its tokens' mean probability)."""
    text: str
    probability: float


@dataclass
class Message:
    """One distinct recorded message and every time it was played."""
    id: str  # "m1", "m2", ... in order of first play
    text: str  # transcript of one play (the representative)
    play_times_s: list[float]  # start of each play
    play_ends_s: list[float]  # end of each play, same order
    category: Category = "other"
    products: list[str] = field(default_factory=list)
    cue: str = ""  # why it got its category, e.g. 'sells: "upgrade", "brand new"'
    avg_logprob: float | None = None  # how sure Whisper was of `text` (mean token log-probability); None: not known
    words: tuple[Word, ...] | None = None  # the words of `text` with their probabilities; None: not known

    def unsure_words(self) -> list[tuple[int, Word]]:
        """(position in text.split(), word) of each word heard with a probability under LOW_CONFIDENCE_WORD."""
        return [(position, word) for position, word in enumerate(words_of(self.text, self.words or ()))
                if word is not None and word.probability < LOW_CONFIDENCE_WORD]

    @property
    def plays(self) -> int:
        return len(self.play_times_s)

    @property
    def played_s(self) -> float:
        return sum(end - start for start, end in zip(self.play_times_s, self.play_ends_s))


def words_as_pairs(words) -> list[list]:
    """Words as stored (JSON in audit_messages.words and the library's hearings): [["S7,", 0.93], ...]."""
    return [[word.text, word.probability] for word in words]


def words_from_pairs(pairs) -> tuple[Word, ...]:
    return tuple(Word(text, probability) for text, probability in pairs)


def words_of(text: str, words) -> list[Word | None]:
    """The Whisper word behind each word of text.split(), in order (None where none is). Whisper may
    hear one written word as several ("network" "-out"): they stand for it with the lowest probability
    among them. The text may lack a sound annotation the words had, so a word is looked for ahead."""
    words = list(words)
    found: list[Word | None] = []
    ahead = 0
    for token in text.split():
        span = _spelled_at(token, words, ahead)
        if span is None:
            found.append(None)
            continue
        first, ahead = span
        found.append(words[first] if ahead == first + 1 else
                     Word(token, min(word.probability for word in words[first:ahead])))
    return found


def _spelled_at(token: str, words: list[Word], ahead: int) -> tuple[int, int] | None:
    """The first (first, last) from `ahead` on where words[first:last] joined spell `token`, or None."""
    for first in range(ahead, len(words)):
        joined = ""
        for last in range(first, len(words)):
            joined += words[last].text
            if joined == token:
                return first, last + 1
            if not token.startswith(joined):
                break
    return None


@dataclass
class Finding:
    rule: str
    severity: Severity
    message_id: str | None
    count: int
    evidence: str  # one line a person can read
    at_s: list[float]


@dataclass
class AuditResult:
    recording: str
    duration_s: float
    segments: list[Span]
    messages: list[Message]
    findings: list[Finding]
    summary: dict  # speech_s, music_s, silence_s, promo_s, promo_share, findings
    context: Context = field(default_factory=Context)

    def to_json(self) -> dict:
        """The report's JSON contract (issue #4): exactly these keys (`low_confidence_words` added by
        issue #14: the words under LOW_CONFIDENCE_WORD, null when the audit did not keep words)."""
        return {
            "recording": self.recording,
            "duration_s": round(self.duration_s, 2),
            "segments": [{"start_s": round(s.start_s, 2), "end_s": round(s.end_s, 2), "kind": s.kind}
                         for s in self.segments],
            "messages": [{"id": m.id, "category": m.category, "text": m.text, "plays": m.plays,
                          "play_times_s": [round(t, 2) for t in m.play_times_s], "products": m.products,
                          "low_confidence_words": None if m.words is None else [
                              {"word": word.text, "position": position, "probability": word.probability}
                              for position, word in m.unsure_words()]}
                         for m in self.messages],
            "findings": [asdict(f) | {"at_s": [round(t, 2) for t in f.at_s]} for f in self.findings],
            "summary": self.summary,
        }
