"""Group plays of the same recorded message into one Message.

A hold loop plays the same few recordings again and again, and Whisper
transcribes each play slightly differently ("50%" / "fifty percent", "S7" /
"S 7", a dropped word), more so when a message was re-recorded by another voice
or at another pace. Two plays are the same message when their normalised
transcripts are close:

- `fuzz.ratio` >= SAME_RATIO on the whole normalised text (word slips), or
- `fuzz.token_set_ratio` >= SAME_SUBSET_RATIO while the shorter transcript has at
  least MIN_SUBSET_LENGTH of the longer one's words (a play cut short when the
  agent answered);
- and never when they carry different numbers ("you are number 3" and "number 2"
  are different recordings; "50% off" and "15% off" are different offers).

Tests in tests/test_messages.py pin the thresholds on real Whisper (tiny.en)
output of generated telephone-line recordings: plays of one message, re-recorded
by another voice included, score 77-99; different messages sharing words
("upgrade today") 49-65; a short reassurance inside a longer one stays apart by
the length rule.

Issue #5's acoustic pre-grouping plugs in through `keys`: plays that already
share a key start in one group whatever their text, then groups merge by text.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Hashable, Sequence

from rapidfuzz import fuzz

from app.core.audit import Message

from audits.data import Transcript

SAME_RATIO = 72  # whole-text similarity (0-100) above which two transcripts are one message
SAME_SUBSET_RATIO = 90  # token-set similarity for a play that is a cut-short copy of another
MIN_SUBSET_LENGTH = 0.6  # ...as long as it keeps this share of the other's words

_UNITS = {word: value for value, word in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {word: value * 10 for value, word in enumerate(
    "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if word != "_"}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_NUMBER_WORDS = set(_UNITS) | set(_TENS) | set(_SCALES)


def normalise(text: str) -> str:
    """Lowercase words and digits only: "Get 50% off the Galaxy S7!" -> "get 50 percent off the galaxy s 7"."""
    text = text.lower().replace("%", " percent ").replace("&", " and ")
    text = re.sub(r"\$\s?(\d[\d,.]*)", r"\1 dollars ", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,000 -> 1000
    text = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", text)  # s7 -> s 7
    words = re.sub(r"[^a-z0-9.]+|(?<!\d)\.|\.(?!\d)", " ", text).split()
    return " ".join(_numbers_to_digits(words))


def _numbers_to_digits(words: list[str]) -> list[str]:
    """Spelled-out numbers become digits: "one hundred and twenty" -> "120".

    A price said the short way, a number under a hundred ending in a unit and then a tens word
    ("nine ninety-nine", "twenty-nine ninety-five"), becomes dollars and cents: "nine ninety nine"
    -> "9.99", as "$9.99" reads "9.99 dollars"."""
    out: list[str] = []
    total = current = 0
    in_number = False
    head: int | None = None  # the dollars of a short-way price, while its cents are read
    last_was_unit = False

    def flush() -> None:
        nonlocal total, current, in_number, head, last_was_unit
        if head is not None:
            out.append(f"{head}.{current:02d}")
        elif in_number:
            out.append(str(total + current))
        total = current = 0
        in_number, head, last_was_unit = False, None, False

    for index, word in enumerate(words):
        next_is_number = index + 1 < len(words) and words[index + 1] in _NUMBER_WORDS
        if word in _TENS and last_was_unit and head is None and total == 0 and 0 < current < 100:
            head, current = current, _TENS[word]  # "nine ninety": 9 dollars, 90 cents so far
            last_was_unit = False
        elif word in _UNITS or word in _TENS:
            if head is not None and (word in _TENS or current % 10):
                flush()
            elif in_number and head is None and not _continues(current, word, last_was_unit):
                flush()  # "press one, two or three": three numbers, not six
            current += _UNITS.get(word, 0) + _TENS.get(word, 0)
            in_number, last_was_unit = True, word in _UNITS
        elif word in _SCALES and in_number and head is None:
            scale = _SCALES[word]
            if scale == 100:
                current *= 100
            else:
                total, current = total + current * scale, 0
            last_was_unit = False
        elif word == "and" and in_number and head is None and next_is_number:
            continue  # "one hundred and twenty"
        else:
            flush()
            out.append(word)
    flush()
    return out


def _continues(current: int, word: str, last_was_unit: bool) -> bool:
    """Whether a unit or tens word goes on with the number read so far: "twenty" "one", "hundred"
    "twenty", "thousand" "five"; not a unit after a unit ("seven, nine") nor a tens word after tens."""
    below_hundred = current % 100
    if last_was_unit:
        return False
    if word in _TENS:
        return below_hundred == 0
    return below_hundred == 0 or (below_hundred % 10 == 0 and _UNITS[word] < 10)


def numbers(normalised: str) -> set[str]:
    """The numbers of a normalised text, as written there ("9.99", "7")."""
    return {word for word in normalised.split() if word[0].isdigit()}


def same_message(a: str, b: str) -> bool:
    """Whether two normalised transcripts are plays of one recorded message."""
    numbers_a, numbers_b = numbers(a), numbers(b)
    if not (numbers_a <= numbers_b or numbers_b <= numbers_a):
        return False
    if fuzz.ratio(a, b) >= SAME_RATIO:
        return True
    words_a, words_b = len(a.split()), len(b.split())
    return (min(words_a, words_b) >= MIN_SUBSET_LENGTH * max(words_a, words_b)
            and fuzz.token_set_ratio(a, b) >= SAME_SUBSET_RATIO)


def group(transcripts: list[Transcript], keys: Sequence[Hashable | None] | None = None) -> list[Message]:
    """One Message per distinct recording, ids m1, m2... in order of first play.

    `keys`, parallel to `transcripts`, optionally names plays already known to be
    one recording (acoustic match); those stay together and may merge further by
    text. Plays with empty text (rejected as hallucination) are not messages.
    """
    keys = list(keys) if keys is not None else [None] * len(transcripts)
    if len(keys) != len(transcripts):
        raise ValueError(f"got {len(keys)} keys for {len(transcripts)} transcripts")
    plays = sorted(((t, key, normalise(t.text)) for t, key in zip(transcripts, keys)),
                   key=lambda play: play[0].start_s)
    groups: list[list[tuple[Transcript, str]]] = []
    group_of_key: dict[Hashable, int] = {}
    for transcript, key, normalised in plays:
        if not normalised:
            continue
        if key is not None and key in group_of_key:
            groups[group_of_key[key]].append((transcript, normalised))
            continue
        if key is not None:
            group_of_key[key] = len(groups)
        groups.append([(transcript, normalised)])
    return [_message(f"m{number}", members)
            for number, members in enumerate(_merge_by_text(groups), start=1)]


def texts_heard(messages: list[Message], transcripts: list[Transcript]) -> dict[str, list[str]]:
    """Every distinct transcript of each message's plays (message id -> texts, in play order)."""
    message_at = {start_s: message.id for message in messages for start_s in message.play_times_s}
    heard: dict[str, list[str]] = {message.id: [] for message in messages}
    for transcript in sorted(transcripts, key=lambda t: t.start_s):
        message_id, text = message_at.get(transcript.start_s), transcript.text.strip()
        if message_id and text and text not in heard[message_id]:
            heard[message_id].append(text)
    return heard


def _merge_by_text(groups: list[list[tuple[Transcript, str]]]) -> list[list[tuple[Transcript, str]]]:
    """Fold each group into the first earlier group holding a matching transcript."""
    merged: list[list[tuple[Transcript, str]]] = []
    for members in groups:
        texts = {normalised for _, normalised in members}
        target = next((earlier for earlier in merged
                       if any(same_message(a, b) for a in texts for b in {n for _, n in earlier})), None)
        if target is None:
            merged.append(list(members))
        else:
            target.extend(members)
    return merged


def _message(message_id: str, members: list[tuple[Transcript, str]]) -> Message:
    members = sorted(members, key=lambda member: member[0].start_s)
    text = representative_text(members)
    heard = next(t for t, _ in members if t.text.strip() == text)
    return Message(id=message_id, text=text,
                   play_times_s=[t.start_s for t, _ in members],
                   play_ends_s=[t.end_s for t, _ in members],
                   avg_logprob=heard.avg_logprob,
                   # a text with no words: heard before words were kept (an older library entry), not known
                   words=heard.words if heard.words or not text else None)


def representative_text(members: list[tuple[Transcript, str]]) -> str:
    """The most central transcript (closest to all the others), ties to the most common, then earliest."""
    counts = Counter(normalised for _, normalised in members)

    def centrality(normalised: str) -> tuple[float, int]:
        closeness = sum(count * fuzz.ratio(normalised, other) for other, count in counts.items())
        return closeness, counts[normalised]

    best = max(counts, key=centrality)  # max keeps the first (earliest) on ties
    return next(t.text.strip() for t, normalised in members if normalised == best)
