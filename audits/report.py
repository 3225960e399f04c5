"""Reports of audits: JSON (the contract of issue #4), Markdown and HTML for people.

    render([result], "html")          # one recording
    render(results, "md", failures=[("bad.wav", "not audio")])   # a batch, with a batch summary

Markdown and HTML say the same things from the same rows (summary, findings,
messages, timeline), so they cannot drift apart. Every piece of text that came
from a recording (transcripts, file names) is escaped: a transcript may read
"<script>". The HTML file is self-contained: inline CSS and an inline SVG timeline,
no scripts, no external assets.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from html import escape

from app.core.audit import AuditResult
from audits.rules import clock
from audits.timeline import timeline_svg

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
    return [[m.id, m.category, str(m.plays), times(m.play_times_s), ", ".join(m.products) or "–", m.text]
            for m in result.messages]


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


def _md_recording(result: AuditResult, level: str) -> str:
    parts = [f"{level} Hold audit: {_md_cell(result.recording)}", "", _md_cell(summary_line(result)), "",
             _md_cell(context_line(result)), "", f"{level}# Findings", ""]
    parts.append(_md_table(FINDING_HEADERS, finding_rows(result)) if result.findings else
                 "No findings: nothing repeated too often, no promos against an open issue or an owned product, "
                 "no long dead air.")
    parts += ["", f"{level}# Messages", ""]
    parts.append(_md_table(MESSAGE_HEADERS, message_rows(result)) if result.messages else "No speech was heard.")
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

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; margin: 0; background: #f6f7f9; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5rem; }
article, section { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 1rem 1.25rem; margin: 1rem 0; }
h1 { font-size: 1.6rem; margin: .2rem 0 .8rem; } h2 { font-size: 1.3rem; margin-top: .2rem; word-break: break-all; }
h3 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; vertical-align: top; padding: .35rem .5rem; border-bottom: 1px solid #e6e8eb; }
th { background: #f0f2f5; } td.num { text-align: right; white-space: nowrap; }
.sev { display: inline-block; padding: 0 .45rem; border-radius: 4px; color: #fff; font-weight: 600; font-size: 13px; }
.sev-high { background: #b00020; } .sev-medium { background: #b35900; } .sev-low { background: #4d4d4d; }
.cat { font-weight: 600; } .cat-promo { color: #b34700; } .cat-reassurance { color: #005a8c; }
.summary { font-size: 15px; } .context { color: #444; }
figure { margin: .5rem 0; overflow-x: auto; } svg { max-width: 100%; height: auto; }
pre { background: #f0f2f5; padding: .6rem; overflow-x: auto; font-size: 13px; }
footer { color: #666; font-size: 13px; margin: 1rem 0; }
"""


def _h(text) -> str:
    return escape(str(text), quote=True)


def _cell_html(header: str, value: str) -> str:
    if header == "Severity":
        return f'<td><span class="sev sev-{_h(value)}">{_h(value)}</span></td>'
    if header == "Category":
        return f'<td><span class="cat cat-{_h(value)}">{_h(value)}</span></td>'
    numeric = header in ("Count", "Plays", "Findings", "High", "Medium", "Low", "Length", "Promo share")
    return f'<td class="num">{_h(value)}</td>' if numeric else f"<td>{_h(value)}</td>"


def _html_table(headers: list[str], rows: list[list[str]], caption: str, link_first: list[str] | None = None) -> str:
    head = "".join(f'<th scope="col">{_h(h)}</th>' for h in headers)
    body = []
    for index, row in enumerate(rows):
        cells = [_cell_html(h, v) for h, v in zip(headers, row)]
        if link_first:
            cells[0] = f'<td><a href="#{link_first[index]}">{_h(row[0])}</a></td>'
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table><caption class="visually-hidden">{_h(caption)}</caption><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _timeline_picture(result: AuditResult) -> str:
    """The SVG timeline."""
    return f'<figure aria-label="Timeline">{timeline_svg(result)}</figure>'


def _html_recording(result: AuditResult, anchor: str, heading: str) -> str:
    findings = (_html_table(FINDING_HEADERS, finding_rows(result), "Findings") if result.findings else
                "<p>No findings: nothing repeated too often, no promos against an open issue or an owned "
                "product, no long dead air.</p>")
    messages = (_html_table(MESSAGE_HEADERS, message_rows(result), "Messages") if result.messages else
                "<p>No speech was heard.</p>")
    return f"""<article id="{_h(anchor)}">
<{heading}>Hold audit: {_h(result.recording)}</{heading}>
<p class="summary">{_h(summary_line(result))}</p>
<p class="context">{_h(context_line(result))}</p>
{_timeline_picture(result)}
<h3>Findings</h3>
{findings}
<h3>Messages</h3>
{messages}
<details><summary>Timeline as text</summary>
<pre>{_h(timeline_strip(result))}</pre>
{_html_table(TIMELINE_HEADERS, timeline_rows(result), "Timeline")}
</details>
</article>"""


def render_html(results: list[AuditResult], batch: bool, failures=()) -> str:
    anchors = [f"recording-{number}" for number in range(1, len(results) + 1)]
    title = f"Hold audits: {len(results)} recordings" if batch else f"Hold audit: {results[0].recording}"
    sections = []
    if batch:
        failed = "".join(f"<li>{_h(path)}: {_h(error)}</li>" for path, error in failures)
        table = (_html_table(BATCH_HEADERS, batch_rows(results), "Batch summary", link_first=anchors)
                 if results else "<p>No recording could be audited.</p>")
        sections.append(f'<section id="batch"><h2>Batch summary</h2>{table}'
                        + (f"<h3>Could not audit</h3><ul>{failed}</ul>" if failed else "") + "</section>")
    heading = "h2" if batch else "h1"
    sections += [_html_recording(result, anchor, heading) for result, anchor in zip(results, anchors)]
    top = f"<h1>{_h(title)}</h1>" if batch else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_h(title)}</title>
<style>{CSS}.visually-hidden {{ position: absolute; left: -9999px; }}</style>
</head>
<body>
<main>
{top}
{chr(10).join(sections)}
<footer>Generated by holdguard on {_generated()}.</footer>
</main>
</body>
</html>
"""
