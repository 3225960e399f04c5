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

__all__ = ["AuditResult", "Category", "Context", "Finding", "Issue", "Message", "Severity", "Span", "SpanKind"]


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

    @property
    def plays(self) -> int:
        return len(self.play_times_s)

    @property
    def played_s(self) -> float:
        return sum(end - start for start, end in zip(self.play_times_s, self.play_ends_s))


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
        """The report's JSON contract (issue #4): exactly these keys."""
        return {
            "recording": self.recording,
            "duration_s": round(self.duration_s, 2),
            "segments": [{"start_s": round(s.start_s, 2), "end_s": round(s.end_s, 2), "kind": s.kind}
                         for s in self.segments],
            "messages": [{"id": m.id, "category": m.category, "text": m.text, "plays": m.plays,
                          "play_times_s": [round(t, 2) for t in m.play_times_s], "products": m.products}
                         for m in self.messages],
            "findings": [asdict(f) | {"at_s": [round(t, 2) for t in f.at_s]} for f in self.findings],
            "summary": self.summary,
        }
