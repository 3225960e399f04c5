"""The timeline picture of one hold recording, as inline SVG.

A horizontal bar of the hold: music and silence in neutral tones, each play of a
spoken message coloured by its category, findings marked with triangles under
the bar at each moment they cite, a time axis in mm:ss and a legend. Every
shape carries a `<title>` tooltip. All text comes from recordings (transcripts)
or reports, so all of it is escaped here: the result is safe to embed as-is.

Used by the HTML audit report and by the `/audits/<id>` page; play rectangles
carry `data-start-s` so the page can make them seek its audio player.
"""
from __future__ import annotations

import re
from html import escape
from pathlib import Path

from app.core.audit import AuditResult

# holdguard's one stylesheet, which the pages serve and the HTML report inlines: the picture takes its
# colours from its custom properties, so the SVG, the pages' badges and the report's never disagree.
# The shared look of reports and pages: the audit layer owns it, the web serves it (/assets/holdguard.css).
STYLESHEET_PATH = Path(__file__).resolve().parent / "static" / "holdguard.css"
STYLESHEET = STYLESHEET_PATH.read_text(encoding="utf-8")


def stylesheet_colours(group: str, css: str = STYLESHEET) -> dict[str, str]:
    """{name: colour} of the stylesheet's `--<group>-<name>: #rrggbb` properties, in their order."""
    return dict(re.findall(rf"--{group}-([a-z]+):\s*(#[0-9A-Fa-f]{{6}})\b", css))


CATEGORY_COLOURS = stylesheet_colours("category")  # promo, reassurance, wait, notice, tip, other
KIND_COLOURS = stylesheet_colours("kind")  # music, silence, speech
SEVERITY_COLOURS = stylesheet_colours("severity")  # high, medium, low

MARGIN_PX = 12
LEGEND_ROW_PX = 20
BAR_HEIGHT_PX = 36
MARKER_PX = 10  # height of one finding triangle
FONT_PX = 12
CHAR_PX = 6.5  # rough width of one character at FONT_PX, for laying out the legend
TICK_STEPS_S = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
TICK_LABEL_PX = 60  # room one "45:00" label needs, so labels never collide


def format_mmss(seconds: float) -> str:
    """70.4 -> "1:10"; minutes keep counting past the hour ("75:00")."""
    whole_s = int(round(max(seconds, 0.0)))
    return f"{whole_s // 60}:{whole_s % 60:02d}"


def timeline_svg(result: AuditResult, width_px: int = 1000) -> str:
    """Inline SVG of the hold: music / silence / speech by category, findings marked, axis, legend."""
    duration_s = _drawn_duration_s(result)
    inner_px = max(width_px - 2 * MARGIN_PX, 1)

    def x_of(at_s: float) -> float:
        return MARGIN_PX + min(max(at_s, 0.0), duration_s) / duration_s * inner_px

    legend_svg, legend_px = _legend(result, width_px)
    bar_top_px = legend_px + 8
    markers_svg, markers_px = _finding_markers(result, x_of, bar_top_px + BAR_HEIGHT_PX + 2)
    axis_top_px = bar_top_px + BAR_HEIGHT_PX + 2 + markers_px + 2
    height_px = axis_top_px + 6 + FONT_PX + 6

    label = (f"Timeline of {result.recording}: {format_mmss(result.duration_s)} on hold, "
             f"{len(result.messages)} messages, {len(result.findings)} findings")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" role="img" '
        f'width="{width_px}" height="{height_px}" viewBox="0 0 {width_px} {height_px}" '
        f'font-family="system-ui, sans-serif" font-size="{FONT_PX}" aria-label="{_text(label)}">',
        f"<title>{_text(label)}</title>",
        legend_svg,
        _bar(result, x_of, bar_top_px, duration_s),
        markers_svg,
        _axis(duration_s, x_of, axis_top_px),
        "</svg>",
    ]
    return "\n".join(part for part in parts if part)


def _text(value) -> str:
    """Escape for both element text and attribute values."""
    return escape(str(value), quote=True)


def _drawn_duration_s(result: AuditResult) -> float:
    # A hand-built or truncated result may have spans past duration_s; never divide by zero.
    ends_s = [result.duration_s] + [s.end_s for s in result.segments] + \
        [end for m in result.messages for end in m.play_ends_s]
    return max(max(ends_s), 1.0)


def _rect(x0_px: float, x1_px: float, top_px: float, fill: str, tooltip: str, extra: str = "") -> str:
    width_px = max(x1_px - x0_px, 1.0)  # a very short play must still be visible
    return (f'<rect x="{x0_px:.1f}" y="{top_px}" width="{width_px:.1f}" height="{BAR_HEIGHT_PX}" '
            f'fill="{fill}"{extra}><title>{_text(tooltip)}</title></rect>')


def _bar(result: AuditResult, x_of, top_px: float, duration_s: float) -> str:
    """Segments by kind, then every message play on top, coloured by its category."""
    shapes = [f'<rect x="{MARGIN_PX}" y="{top_px}" width="{x_of(duration_s) - MARGIN_PX:.1f}" '
              f'height="{BAR_HEIGHT_PX}" fill="{KIND_COLOURS["silence"]}" stroke="#555"/>']
    for segment in result.segments:
        tooltip = f"{segment.kind} {format_mmss(segment.start_s)}–{format_mmss(segment.end_s)}"
        shapes.append(_rect(x_of(segment.start_s), x_of(segment.end_s), top_px,
                            KIND_COLOURS.get(segment.kind, KIND_COLOURS["speech"]), tooltip,
                            f' class="segment segment-{_text(segment.kind)}"'))
    for message in result.messages:
        colour = CATEGORY_COLOURS.get(message.category, CATEGORY_COLOURS["other"])
        for number, (start_s, end_s) in enumerate(zip(message.play_times_s, message.play_ends_s), 1):
            tooltip = (f"{message.id} ({message.category}) play {number} of {message.plays}, "
                       f"{format_mmss(start_s)}–{format_mmss(end_s)}: {message.text}")
            shapes.append(_rect(x_of(start_s), x_of(end_s), top_px, colour, tooltip,
                                f' class="play play-{_text(message.category)}"'
                                f' data-message-id="{_text(message.id)}" data-start-s="{start_s:.2f}"'))
    return "\n".join(shapes)


def _finding_markers(result: AuditResult, x_of, top_px: float) -> tuple[str, float]:
    """A triangle under the bar at each cited moment; coincident marks stack downwards."""
    shapes, stacked = [], {}
    for finding in result.findings:
        colour = SEVERITY_COLOURS.get(finding.severity, SEVERITY_COLOURS["low"])
        for at_s in finding.at_s:
            x_px = x_of(at_s)
            bucket = round(x_px / MARKER_PX)  # marks closer than one triangle would overlap
            row = stacked.get(bucket, 0)
            stacked[bucket] = row + 1
            tip_px = top_px + row * MARKER_PX
            tooltip = f"{finding.rule} ({finding.severity}) at {format_mmss(at_s)}: {finding.evidence}"
            shapes.append(
                f'<polygon class="finding finding-{_text(finding.severity)}" '
                f'data-rule="{_text(finding.rule)}" data-at-s="{at_s:.2f}" fill="{colour}" '
                f'points="{x_px:.1f},{tip_px:.1f} {x_px - MARKER_PX / 2:.1f},{tip_px + MARKER_PX:.1f} '
                f'{x_px + MARKER_PX / 2:.1f},{tip_px + MARKER_PX:.1f}"><title>{_text(tooltip)}</title></polygon>')
    rows = max(stacked.values(), default=1)
    return "\n".join(shapes), rows * MARKER_PX


def _tick_step_s(duration_s: float, inner_px: float) -> int:
    max_ticks = max(inner_px // TICK_LABEL_PX, 1)
    return next((step for step in TICK_STEPS_S if duration_s / step <= max_ticks), TICK_STEPS_S[-1])


def _axis(duration_s: float, x_of, top_px: float) -> str:
    step_s = _tick_step_s(duration_s, x_of(duration_s) - x_of(0))
    shapes = [f'<line x1="{x_of(0):.1f}" y1="{top_px}" x2="{x_of(duration_s):.1f}" y2="{top_px}" stroke="#333"/>']
    for tick_s in range(0, int(duration_s) + 1, step_s):
        x_px = x_of(tick_s)
        anchor = "start" if tick_s == 0 else ("end" if x_px > x_of(duration_s) - 20 else "middle")
        shapes.append(f'<line x1="{x_px:.1f}" y1="{top_px}" x2="{x_px:.1f}" y2="{top_px + 5}" stroke="#333"/>'
                      f'<text class="tick" x="{x_px:.1f}" y="{top_px + 6 + FONT_PX}" text-anchor="{anchor}" '
                      f'fill="#222">{format_mmss(tick_s)}</text>')
    return "\n".join(shapes)


def _legend_items(result: AuditResult) -> list[tuple[str, str, str]]:
    """(label, shape, colour) for everything the picture can show, findings only when present."""
    items = [("music", "box", KIND_COLOURS["music"]), ("silence", "box", KIND_COLOURS["silence"])]
    if any(s.kind == "speech" and not _has_play_within(result, s.start_s, s.end_s) for s in result.segments):
        items.append(("speech (no message)", "box", KIND_COLOURS["speech"]))
    items += [(category, "box", colour) for category, colour in CATEGORY_COLOURS.items()]
    severities = {finding.severity for finding in result.findings if finding.at_s}
    items += [(f"{severity} finding", "triangle", colour)
              for severity, colour in SEVERITY_COLOURS.items() if severity in severities]
    return items


def _has_play_within(result: AuditResult, start_s: float, end_s: float) -> bool:
    return any(play_start_s < end_s and play_end_s > start_s for m in result.messages
               for play_start_s, play_end_s in zip(m.play_times_s, m.play_ends_s))


def _legend(result: AuditResult, width_px: int) -> tuple[str, float]:
    """Legend entries laid out left to right, wrapping onto new rows when the width runs out."""
    shapes, x_px, row = ['<g class="legend">'], float(MARGIN_PX), 0
    for label, shape, colour in _legend_items(result):
        item_px = 14 + 4 + CHAR_PX * len(label) + 14
        if x_px + item_px > width_px - MARGIN_PX and x_px > MARGIN_PX:
            x_px, row = float(MARGIN_PX), row + 1
        top_px = row * LEGEND_ROW_PX + 3
        if shape == "box":
            shapes.append(f'<rect x="{x_px:.1f}" y="{top_px}" width="14" height="14" fill="{colour}" stroke="#555"/>')
        else:
            shapes.append(f'<polygon fill="{colour}" points="{x_px + 7:.1f},{top_px} {x_px:.1f},{top_px + 14} '
                          f'{x_px + 14:.1f},{top_px + 14}"/>')
        shapes.append(f'<text x="{x_px + 18:.1f}" y="{top_px + 12}" fill="#222">{_text(label)}</text>')
        x_px += item_px
    shapes.append("</g>")
    return "\n".join(shapes), (row + 1) * LEGEND_ROW_PX
