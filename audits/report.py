"""Reports of audits: JSON (the contract of issue #4), Markdown and HTML for people.

    render([result], "html")          # one recording
    render(results, "md", failures=[("bad.wav", "not audio")])   # a batch, with a batch summary

Markdown and HTML say the same things from the same rows (summary, findings,
messages, timeline), so they cannot drift apart. Every piece of text that came
from a recording (transcripts, file names) is escaped: a transcript may read
"<script>". The HTML file is the Jinja template audits/templates/report.html,
autoescaped, and self-contained: holdguard's stylesheet (the one the pages serve)
inlined, an inline SVG timeline, no scripts, no external assets.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from html import escape
from pathlib import PurePath

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from app.core.audit import LOW_CONFIDENCE_WORD, AuditResult
from audits.classify import mentions, products_read
from audits.messages import normalise
from audits.pipeline import LOW_CONFIDENCE_LOGPROB
from audits.rules import clock
from audits.timeline import STYLESHEET, timeline_svg

FORMATS = ("json", "md", "html")
EXTENSIONS = {"json": ".json", "md": ".md", "html": ".html"}
SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}
# One character per cell of the text timeline strip, strongest first: a promo anywhere in a cell shows.
STRIP_MARKS = {"promo": "P", "notice": "N", "wait": "W", "tip": "T", "reassurance": "R", "other": "O",
               "speech": "s", "silence": ".", "music": "~"}
STRIP_CELLS = 72
TEXT_CHARS = 90


def render(results: list[AuditResult], fmt: str, *, batch: bool | None = None,
           failures: list[tuple[str, str]] = ()) -> str:
    """The report in `fmt` (json | md | html); a batch (default: not exactly one result) adds a summary.

    `failures` are (recording, one-line error) pairs shown in the people's formats;
    JSON keeps to its contract and leaves them to stderr.
    """
    batch = len(results) != 1 if batch is None else batch
    if fmt == "json":
        return render_json(results, batch)
    if fmt == "md":
        return render_markdown(results, batch, failures)
    if fmt == "html":
        return render_html(results, batch, failures)
    raise ValueError(f"unknown report format {fmt!r}: choose one of {', '.join(FORMATS)}")


def render_json(results: list[AuditResult], batch: bool) -> str:
    """One JSON object for one recording, a JSON list of them for a batch."""
    objects = [result.to_json() for result in results]
    return json.dumps(objects if batch else objects[0], indent=2, ensure_ascii=False) + "\n"


# --- rows both people's formats show ------------------------------------------------------------

def summary_line(result: AuditResult) -> str:
    s = result.summary
    by_severity = ", ".join(f"{count} {severity}" for severity, count in severity_counts(result).items() if count)
    return (f"{clock(result.duration_s)} on hold: speech {clock(s['speech_s'])}, music {clock(s['music_s'])}, "
            f"silence {clock(s['silence_s'])}; promos {s['promo_s']:.0f} s ({s['promo_share']:.1%} of the hold); "
            f"{len(result.messages)} messages; {s['findings']} findings" + (f" ({by_severity})" if by_severity else ""))


def severity_counts(result: AuditResult) -> dict[str, int]:
    return {severity: sum(f.severity == severity for f in result.findings) for severity in SEVERITY_RANK}


def context_line(result: AuditResult) -> str:
    context = result.context
    parts = []
    when = f" when the call started ({context.issues_as_of})" if context.issues_as_of else ""
    if context.open_issues:
        parts.append(f"open issues{when} " + "; ".join(
            f"{i.id} ({i.severity}{', ' + i.summary if i.summary else ''})" for i in context.open_issues))
    elif when:
        parts.append(f"no open issues{when}")
    if context.owned_products:
        parts.append("owns " + ", ".join(context.owned_products))
    if context.queue:
        parts.append(f"queue {context.queue}")
    return "Caller: " + ("; ".join(parts) if parts else "no context (unknown caller: no open issues or products)")


FINDING_HEADERS = ["Severity", "Rule", "Message", "Count", "Evidence", "At"]


def finding_rows(result: AuditResult) -> list[list[str]]:
    findings = sorted(result.findings, key=lambda f: SEVERITY_RANK.get(f.severity, 3))
    return [[f.severity, f.rule, f.message_id or "–", str(f.count), f.evidence, times(f.at_s)] for f in findings]


MESSAGE_HEADERS = ["Id", "Category", "Plays", "Played at", "Products", "Text"]


def message_rows(result: AuditResult) -> list[list[str]]:
    return [[m.id, m.category, str(m.plays), times(m.play_times_s),
             ", ".join(heard.shown() for heard in products_heard(m)) or "–", text_shown(m)]
            for m in result.messages]


def unsure(message) -> bool:
    """Whether Whisper was unsure of the message's transcript (a reader should not trust every word)."""
    return message.avg_logprob is not None and message.avg_logprob < LOW_CONFIDENCE_LOGPROB


def confidence_note(message) -> str:
    """ "low confidence: avg log-probability -0.80" for an unsure transcript, else ""."""
    return f"low confidence: avg log-probability {message.avg_logprob:.2f}" if unsure(message) else ""


def text_shown(message) -> str:
    """The transcript as Markdown shows it: each word Whisper was unsure of in italics with "(?)" after it
    (`_fan_ (?)`), the whole marked when Whisper was unsure of it."""
    unsure_at = {position for position, _ in message.unsure_words()}
    text = " ".join(f"_{word}_ (?)" if position in unsure_at else word
                    for position, word in enumerate(message.text.split()))
    return f"{text} ({confidence_note(message)})" if unsure(message) else text


def percent(probability: float) -> str:
    return f"{round(probability * 100)} %"


# Under the messages when a word is marked: what the mark means.
UNSURE_WORDS_LEGEND = f"Whisper was less than {percent(LOW_CONFIDENCE_WORD)} sure of the word"


def any_unsure_words(messages) -> bool:
    return any(message.unsure_words() for message in messages)


@dataclass(frozen=True)
class ProductHeard:
    """A product of a message and where its transcript says it: `words` (a word range of text.split())
    the name was matched from when the transcript does not spell it ("Galaxy S fan" -> Galaxy S7)."""
    product: str
    in_text: bool  # False: the product came from another play's hearing or the hold flow
    words: tuple[int, int] | None = None  # [first, last) of text.split(), for a misheard name
    heard: str = ""  # those words, as shown: "Galaxy S fan"
    read: bool = False  # no catalog or known name vouches for it: the name as Whisper spelled it

    def shown(self) -> str:
        if self.words is not None:
            return f"heard '{self.heard}' → {self.product}"
        if not self.in_text:
            return f"{self.product} (not in this transcript: from another play or the hold flow)"
        if self.read:
            return f"{self.product} (as heard: no catalog or known name)"
        return self.product


def products_heard(message) -> list[ProductHeard]:
    """Each product of the message with how its transcript said it (see ProductHeard)."""
    read = products_read(message.cue)
    return [replace(product_heard(message.text, product), read=product in read) for product in message.products]


def product_heard(text: str, product: str) -> ProductHeard:
    """How `text` says `product`: as spelled, misheard (the words from the name's first word, one more
    than the name has: "Galaxy S fan" for Galaxy S7), or not at all."""
    if mentions(text, product):
        return ProductHeard(product, in_text=True)
    first, n_words = normalise(product).split()[0], len(product.split())
    words = text.split()
    for index, word in enumerate(words):
        if normalise(word) == first:
            end = min(index + n_words + 1, len(words))
            return ProductHeard(product, True, (index, end), " ".join(words[index:end]).strip(".,;:!?"))
    return ProductHeard(product, in_text=False)


def marked_text(message) -> Markup:
    """The transcript as HTML for the report and the pages: each word Whisper was unsure of in
    <mark class="unsure"> saying how sure, each misheard product name in <mark class="heard-as">, the
    whole in <span class="low-confidence"> with its note when Whisper was unsure of it. Everything from
    the recording is escaped."""
    unsure_at = dict(message.unsure_words())
    words = [_word_html(word, unsure_at.get(position)) for position, word in enumerate(message.text.split())]
    starts = {heard.words[0]: heard for heard in products_heard(message) if heard.words is not None}
    pieces, index = [], 0
    while index < len(words):
        heard = starts.get(index)
        if heard is None:
            pieces.append(words[index])
            index += 1
            continue
        first, last = heard.words
        pieces.append(f'<mark class="heard-as" title="heard as {escape(heard.product)}">'
                      f'{" ".join(words[first:last])}</mark>')
        index = last
    text = " ".join(pieces) or "(no usable transcript)"
    if not unsure(message):
        return Markup(text)
    return Markup(f'<span class="low-confidence">{text}</span> '
                  f'<span class="confidence-note">({escape(confidence_note(message))})</span>')


def _word_html(text: str, unsure_word) -> str:
    if unsure_word is None:
        return escape(text)
    return (f'<mark class="unsure" title="heard with {percent(unsure_word.probability)} confidence">'
            f'{escape(text)}</mark>')


TIMELINE_HEADERS = ["From", "To", "What", "Message"]


def timeline_rows(result: AuditResult) -> list[list[str]]:
    """Every segment in order; speech labelled with the message played there."""
    rows = []
    for segment in result.segments:
        what, said = segment.kind, ""
        if segment.kind == "speech":
            message = _message_at(result, segment.start_s, segment.end_s)
            what = f"speech: {message.category}" if message else "speech (no text)"
            said = f"{message.id} {_short(message.text)}" if message else ""
        rows.append([clock(segment.start_s), clock(segment.end_s), what, said])
    return rows


def _message_at(result: AuditResult, start_s: float, end_s: float):
    """The message with a play overlapping [start_s, end_s] the most, or None."""
    best, best_overlap_s = None, 0.0
    for message in result.messages:
        for play_start_s, play_end_s in zip(message.play_times_s, message.play_ends_s):
            overlap_s = min(end_s, play_end_s) - max(start_s, play_start_s)
            if overlap_s > best_overlap_s:
                best, best_overlap_s = message, overlap_s
    return best


def timeline_strip(result: AuditResult, cells: int = STRIP_CELLS) -> str:
    """The hold as one line of characters (see STRIP_MARKS), with its length underneath."""
    duration_s = max(result.duration_s, 1e-9)
    cell_s = duration_s / cells
    spans = [(s.start_s, s.end_s, s.kind) for s in result.segments] + [
        (start, end, m.category) for m in result.messages for start, end in zip(m.play_times_s, m.play_ends_s)]
    marks = []
    for cell in range(cells):
        start_s, end_s = cell * cell_s, (cell + 1) * cell_s
        here = {kind: min(end_s, e) - max(start_s, s) for s, e, kind in spans if s < end_s and e > start_s}
        if here.get("silence", 0) < cell_s / 2:  # silence shows only where it fills half a cell
            here.pop("silence", None)
        marks.append(next((mark for kind, mark in STRIP_MARKS.items() if kind in here), " "))
    axis = f"{clock(0)}{clock(duration_s):>{cells - len(clock(0))}}"
    legend = "  ".join(f"{mark} {kind}" for kind, mark in STRIP_MARKS.items())
    return "\n".join(["".join(marks), axis, legend])


BATCH_HEADERS = ["Recording", "Length", "Promo share", "Findings", "High", "Medium", "Low", "Worst finding"]


def batch_rows(results: list[AuditResult]) -> list[list[str]]:
    rows = []
    for result in results:
        counts = severity_counts(result)
        worst = min(result.findings, key=lambda f: SEVERITY_RANK.get(f.severity, 3), default=None)
        rows.append([result.recording, clock(result.duration_s), f"{result.summary['promo_share']:.1%}",
                     str(len(result.findings)), str(counts["high"]), str(counts["medium"]), str(counts["low"]),
                     f"{worst.rule}: {worst.evidence}" if worst else "–"])
    return rows


def times(seconds: list[float], limit: int = 12) -> str:
    shown = ", ".join(clock(t) for t in seconds[:limit])
    return shown + (f" … (+{len(seconds) - limit})" if len(seconds) > limit else "")


def _short(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS].rsplit(" ", 1)[0] + "…"


def _generated() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# --- Markdown -----------------------------------------------------------------------------------

def _md_cell(text: str) -> str:
    """Table-safe and inert: no pipes or newlines, HTML characters escaped, markdown specials disarmed."""
    text = escape(" ".join(str(text).split()), quote=False)
    for special in "\\|`*[]":  # intraword underscores (rule names) do not emphasise: left readable
        text = text.replace(special, "\\" + special)
    return text


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def recording_name(result: AuditResult) -> str:
    """The file name a report is titled with; its path goes in a detail line under the title."""
    return PurePath(result.recording).name or result.recording


def _md_recording(result: AuditResult, level: str) -> str:
    parts = [f"{level} Hold audit: {_md_cell(recording_name(result))}", ""]
    if recording_name(result) != result.recording:
        parts += [f"Recording: {_md_cell(result.recording)}", ""]
    parts += [_md_cell(summary_line(result)), "", _md_cell(context_line(result)), "", f"{level}# Findings", ""]
    parts.append(_md_table(FINDING_HEADERS, finding_rows(result)) if result.findings else
                 "No findings: nothing repeated too often, no promos against an open issue or an owned product, "
                 "no long dead air.")
    parts += ["", f"{level}# Messages", ""]
    parts.append(_md_table(MESSAGE_HEADERS, message_rows(result)) if result.messages else "No speech was heard.")
    if any_unsure_words(result.messages):
        parts += ["", f"_word_ (?): {UNSURE_WORDS_LEGEND}."]
    parts += ["", f"{level}# Timeline", "", "```", timeline_strip(result), "```", "",
              _md_table(TIMELINE_HEADERS, timeline_rows(result)), ""]
    return "\n".join(parts)


def render_markdown(results: list[AuditResult], batch: bool, failures=()) -> str:
    if not batch:
        return _md_recording(results[0], "#") + f"\n_Generated by holdguard on {_generated()}._\n"
    parts = [f"# Hold audits: {len(results)} recordings", "", "## Batch summary", ""]
    parts.append(_md_table(BATCH_HEADERS, batch_rows(results)) if results else "No recording could be audited.")
    if failures:
        parts += ["", "Could not audit:", ""] + [f"- {_md_cell(path)}: {_md_cell(error)}" for path, error in failures]
    parts.append("")
    parts += [_md_recording(result, "##") for result in results]
    parts.append(f"_Generated by holdguard on {_generated()}._\n")
    return "\n".join(parts)


# --- HTML ---------------------------------------------------------------------------------------

# Autoescaped: every value the template prints is escaped unless it is Markup (the stylesheet, and the
# timeline SVG, which escapes each text it draws itself).
TEMPLATES = Environment(loader=PackageLoader("audits", "templates"), autoescape=True, undefined=StrictUndefined,
                        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _html_recording(result: AuditResult, anchor: str) -> dict:
    """What the template shows of one recording: the same rows as the Markdown, and the SVG timeline."""
    return {"anchor": anchor, "name": recording_name(result), "recording": result.recording,
            "summary": summary_line(result),
            "context": context_line(result), "timeline": Markup(timeline_svg(result)),
            "findings": finding_rows(result),
            # the text column as HTML: misheard names and unsure transcripts marked as on the pages
            "messages": [row[:-1] + [marked_text(message)]
                         for row, message in zip(message_rows(result), result.messages)],
            "unsure_words": any_unsure_words(result.messages),
            "strip": timeline_strip(result), "timeline_rows": timeline_rows(result)}


def render_html(results: list[AuditResult], batch: bool, failures=()) -> str:
    title = f"Hold audits: {len(results)} recordings" if batch else f"Hold audit: {recording_name(results[0])}"
    audits = [_html_recording(result, f"recording-{number}") for number, result in enumerate(results, 1)]
    return TEMPLATES.get_template("report.html").render(
        title=title, batch=batch, audits=audits, batch_rows=batch_rows(results), failures=list(failures),
        stylesheet=Markup(STYLESHEET), generated=_generated(), finding_headers=FINDING_HEADERS,
        message_headers=MESSAGE_HEADERS, timeline_headers=TIMELINE_HEADERS, batch_headers=BATCH_HEADERS,
        unsure_words_legend=UNSURE_WORDS_LEGEND)
