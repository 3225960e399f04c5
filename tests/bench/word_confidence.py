"""Word probabilities of misheard and right words: where to put LOW_CONFIDENCE_WORD (issue #14).

    python tests/bench/word_confidence.py [--model base] [--cache-dir DIR] [--conditions N]

The clips of tests/bench/accuracy.py (the first play of each of its 10 messages in 6 voice and line
conditions, through the telephone channel), decoded as audits decode them (faster-whisper, the
catalog's product names as the vocabulary prompt, clips batched). Each word Whisper returns is
labelled misheard or right by aligning the hearing's words with the message's true text (Whisper's
English normaliser on each word, edit-distance alignment; a word that is only a symbol, "%", is read
with the word before it), and the table says, for each threshold, how many misheard and right words it
would mark. Prints Markdown and the machine. Nothing here runs in the test suite.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "bench"))

import accuracy  # noqa: E402
from audits.transcribe import shared_engine, vocabulary_prompt  # noqa: E402

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def labelled_words(words, true_text: str) -> list[tuple[float, bool]]:
    """(probability, heard right) of each word that the normaliser keeps."""
    from rapidfuzz.distance import Levenshtein

    units: list[tuple[str, list[int]]] = []  # (text, indices of the words it is made of)
    for index, word in enumerate(words):
        if units and not re.search(r"\w", word.text):
            units[-1] = (units[-1][0] + word.text, units[-1][1] + [index])
        else:
            units.append((word.text, [index]))
    heard = [(token, indices) for text, indices in units for token in accuracy.NORMALISE(text).split()]
    right = {index: True for _, indices in heard for index in indices}
    for tag, _, _, first, last in Levenshtein.opcodes(accuracy.NORMALISE(true_text).split(),
                                                     [token for token, _ in heard]):
        for token, indices in heard[first:last]:
            for index in indices:
                right[index] = right[index] and tag == "equal"
    return [(words[index].probability, ok) for index, ok in sorted(right.items())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/holdguard-accuracy"))
    parser.add_argument("--conditions", type=int, default=len(accuracy.CONDITIONS))
    args = parser.parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    clips = [clip for _, hold in accuracy.build_holds(args.cache_dir, args.conditions)
             for clip in accuracy.first_play_clips(hold)]
    engine = shared_engine("faster-whisper", args.model)
    heard = engine.transcribe_many([clip for _, clip in clips], prompt=vocabulary_prompt(accuracy.CATALOG_PRODUCTS))
    labels = [label for (message, _), transcript in zip(clips, heard)
              for label in labelled_words(transcript.words, accuracy.MESSAGES[message]["text"])]
    misheard = np.array([p for p, ok in labels if not ok])
    right = np.array([p for p, ok in labels if ok])
    print(f"### {args.model}: {len(clips)} clips, {len(labels)} words, {len(misheard)} misheard "
          f"({len(misheard) / len(labels):.0%})\n")
    print(f"probability quartiles: misheard {np.percentile(misheard, [25, 50, 75]).round(2).tolist()}, "
          f"right {np.percentile(right, [25, 50, 75]).round(2).tolist()}\n")
    print("| threshold | misheard words marked | right words marked | marked words that were misheard |")
    print("|---|---|---|---|")
    for threshold in THRESHOLDS:
        hit, false = int((misheard < threshold).sum()), int((right < threshold).sum())
        print(f"| {threshold} | {hit}/{len(misheard)} ({hit / len(misheard):.0%}) | {false}/{len(right)} "
              f"({false / len(right):.0%}) | {hit}/{hit + false} ({hit / max(hit + false, 1):.0%}) |")
    print(f"\nmachine: {accuracy.machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
