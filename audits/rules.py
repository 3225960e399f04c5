"""Findings: what went wrong on one hold, as rules over classified messages, segments and caller context.

Rules (names are the report's contract, issue #4) and how severe each hit is:

repeated_promo            one promo played >= 3 times: 3 low, 4-5 medium, >= 6 high
promo_during_open_issue   any promo play while the caller has an open issue: the
                          worst open issue's severity (critical counts as high)
promo_for_owned_product   a promo naming a product the caller owns: medium, high from 3 plays
repeated_reassurance      one reassurance played >= 4 times: 4-5 low, 6-9 medium, >= 10 high
promo_share_high          promos take > 15 % of the hold: medium, > 30 % high
long_silence              a silence >= 30 s anywhere in the hold, at its start or end too
                          (a caller hears dead air there as much as between messages):
                          medium, >= 60 s high
dead_air                  nothing audible in the whole recording, no music and no speech
                          (the hold content never played, or the line was dead): high,
                          instead of long_silence

Everything here is pure: data in, findings out.
"""
from __future__ import annotations

from app.core.audit import Context, Finding, Message, Severity, Span
from app.core.products import same_product

REPEATED_PROMO_MIN_PLAYS = 3
REPEATED_REASSURANCE_MIN_PLAYS = 4
PROMO_SHARE_MAX = 0.15
LONG_SILENCE_MIN_S = 30.0
SILENCE_JOIN_GAP_S = 0.5  # silences split by a click or a breath of noise are one silence
QUOTE_CHARS = 36  # enough to recognise a message: "Upgrade to the brand new Galaxy S7…"


def clock(seconds: float) -> str:
    """"mm:ss" (or "h:mm:ss" from an hour) for a time in the recording."""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def quote(text: str, max_chars: int = QUOTE_CHARS) -> str:
    """A message's text cut at a word boundary for one-line evidence: 'Upgrade to the brand new…'."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return f"'{text}'"
    cut = text[:max_chars] if text[max_chars] == " " else text[:max_chars].rsplit(" ", 1)[0]
    cut = cut.rstrip(",;:.")
    return f"'{cut}…'"


def _by_count(count: int, medium_from: int, high_from: int) -> Severity:
    return "high" if count >= high_from else "medium" if count >= medium_from else "low"


def _played(message: Message) -> str:
    return f"{message.category} {message.id} {quote(message.text)} played {message.plays}×"


def _played_how_often(message: Message, duration_s: float) -> str:
    spacing_s = (message.play_times_s[-1] - message.play_times_s[0]) / max(message.plays - 1, 1)
    return f"{_played(message)} in {clock(duration_s)} (about every {clock(spacing_s)})"


def _with_cue(evidence: str, message: Message) -> str:
    return f"{evidence}; {message.cue}" if message.cue else evidence


def summarise(segments: list[Span], messages: list[Message], duration_s: float) -> dict:
    """Seconds of speech / music / silence, seconds of promos and their share of the hold."""
    seconds = {kind: float(sum(s.duration_s for s in segments if s.kind == kind))
               for kind in ("speech", "music", "silence")}
    promo_s = float(sum(m.played_s for m in messages if m.category == "promo"))
    return {"speech_s": round(seconds["speech"], 2), "music_s": round(seconds["music"], 2),
            "silence_s": round(seconds["silence"], 2), "promo_s": round(promo_s, 2),
            "promo_share": round(promo_s / duration_s, 4) if duration_s > 0 else 0.0}


def repeated(messages: list[Message], duration_s: float) -> list[Finding]:
    """repeated_promo and repeated_reassurance: one message played too often."""
    findings = []
    for message in messages:
        if message.category == "promo" and message.plays >= REPEATED_PROMO_MIN_PLAYS:
            rule, severity = "repeated_promo", _by_count(message.plays, 4, 6)
        elif message.category == "reassurance" and message.plays >= REPEATED_REASSURANCE_MIN_PLAYS:
            rule, severity = "repeated_reassurance", _by_count(message.plays, 6, 10)
        else:
            continue
        findings.append(Finding(rule, severity, message.id, message.plays,
                                _with_cue(_played_how_often(message, duration_s), message), list(message.play_times_s)))
    return findings


def promo_during_open_issue(messages: list[Message], context: Context) -> list[Finding]:
    """Every promo played while the caller had an open issue, naming the issue(s)."""
    if not context.open_issues:
        return []
    issues = ", ".join(f"{issue.id} ({issue.severity})" for issue in context.open_issues)
    verb = "is" if len(context.open_issues) == 1 else "are"
    about = context.open_issues[0].summary if len(context.open_issues) == 1 else ""
    severity = _worst_issue_severity(context)
    return [Finding("promo_during_open_issue", severity, message.id, message.plays,
                    _with_cue(f"{_played(message)} while {issues} {verb} open"
                              + (f" ({about})" if about else ""), message),
                    list(message.play_times_s))
            for message in messages if message.category == "promo"]


def _worst_issue_severity(context: Context) -> Severity:
    ranks = {"low": 0, "medium": 1, "high": 2, "critical": 2}
    worst = max(ranks.get(str(issue.severity).lower(), 1) for issue in context.open_issues)
    return ("low", "medium", "high")[worst]


def promo_for_owned_product(messages: list[Message], context: Context) -> list[Finding]:
    """Promos naming a product the caller already owns."""
    findings = []
    for message in messages:
        owned = [product for product in message.products
                 if any(same_product(product, mine) for mine in context.owned_products)]
        if message.category != "promo" or not owned:
            continue
        findings.append(Finding(
            "promo_for_owned_product", "high" if message.plays >= 3 else "medium", message.id,
            message.plays,
            _with_cue(f"{message.category} {message.id} {quote(message.text)} sells {', '.join(owned)}, "
                      f"which the caller already owns (played {message.plays}×)", message),
            list(message.play_times_s)))
    return findings


def promo_share_high(messages: list[Message], summary: dict, duration_s: float) -> list[Finding]:
    """Promos taking more than PROMO_SHARE_MAX of the hold."""
    share = summary["promo_share"]
    if share <= PROMO_SHARE_MAX:
        return []
    promos = [m for m in messages if m.category == "promo"]
    play_times_s = sorted(t for m in promos for t in m.play_times_s)
    evidence = (f"promos took {summary['promo_s']:.0f} s of a {clock(duration_s)} hold ({share:.1%}, "
                f"limit {PROMO_SHARE_MAX:.0%}): {len(play_times_s)} plays of "
                + ", ".join(f"{m.id} ({m.plays}×)" for m in promos))
    return [Finding("promo_share_high", "high" if share > 2 * PROMO_SHARE_MAX else "medium", None,
                    len(play_times_s), evidence, play_times_s)]


def silences(segments: list[Span]) -> list[Span]:
    """Every silence in the recording, in order, adjacent pieces joined."""
    joined: list[Span] = []
    for segment in sorted((s for s in segments if s.kind == "silence"), key=lambda s: s.start_s):
        if joined and segment.start_s - joined[-1].end_s <= SILENCE_JOIN_GAP_S:
            joined[-1] = Span(joined[-1].start_s, max(joined[-1].end_s, segment.end_s), "silence")
        else:
            joined.append(Span(segment.start_s, segment.end_s, "silence"))
    return joined


def long_silence(segments: list[Span]) -> list[Finding]:
    """One finding listing every silence of LONG_SILENCE_MIN_S or more in the hold, edges included."""
    long_ones = [s for s in silences(segments) if s.duration_s >= LONG_SILENCE_MIN_S]
    if not long_ones:
        return []
    longest_s = max(s.duration_s for s in long_ones)
    spans = ", ".join(f"{s.duration_s:.0f} s at {clock(s.start_s)}–{clock(s.end_s)}" for s in long_ones)
    noun = "silence" if len(long_ones) == 1 else "silences"
    evidence = (f"{len(long_ones)} {noun} of {LONG_SILENCE_MIN_S:.0f} s or more in the hold: {spans} "
                "(callers hang up thinking they were dropped)")
    return [Finding("long_silence", "high" if longest_s >= 60 else "medium", None, len(long_ones),
                    evidence, [s.start_s for s in long_ones])]


def dead_air(segments: list[Span], duration_s: float) -> list[Finding]:
    """The whole recording silent: no music, no speech, nothing the caller could hear."""
    if duration_s <= 0 or any(s.kind != "silence" for s in segments):
        return []
    evidence = (f"nothing but silence for the whole {clock(duration_s)} recording: no music and no speech "
                "(the hold content did not play, or the line was dead)")
    return [Finding("dead_air", "high", None, 1, evidence, [0.0])]


def find(messages: list[Message], segments: list[Span], duration_s: float,
         context: Context | None = None, summary: dict | None = None) -> list[Finding]:
    """All findings for one recording, grouped by rule in the order of the module docstring."""
    context = context or Context()
    summary = summary or summarise(segments, messages, duration_s)
    repeats = repeated(messages, duration_s)
    return ([f for f in repeats if f.rule == "repeated_promo"]
            + promo_during_open_issue(messages, context)
            + promo_for_owned_product(messages, context)
            + [f for f in repeats if f.rule == "repeated_reassurance"]
            + promo_share_high(messages, summary, duration_s)
            + (dead_air(segments, duration_s) or long_silence(segments)))
