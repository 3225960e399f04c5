"""Short hold recordings built on the fly for tests, with the sample generator.

    from tests.audio_fixtures import make_hold

    hold = make_hold(tmp_path, ["music 8", "say galaxy-upgrade", "music 6", "say thanks-patience"])
    hold.path        # the 8 kHz mu-law WAV, like a Twilio recording
    hold.truth       # ground truth: {"timeline": [{start_s, end_s, kind, message?}], "messages": ...}
    hold.plays("galaxy-upgrade")   # [(start_s, end_s), ...]

Message ids are the demo flow's segments (app/demo_data/flows.toml) plus a wait
announcement; pass `messages=` for others. A recording whose file and truth
already exist for the same scenario is reused, so a session-scoped fixture
(tmp_path_factory) builds it once per run.
"""
from __future__ import annotations

import importlib.util
import json
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load_generator():
    """sample_audio/ is scripts, not a package: import its generator from the file."""
    name = "holdguard_sample_generate"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "sample_audio" / "generate.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


generate = _load_generator()


def _demo_messages() -> dict[str, dict]:
    flows = tomllib.loads((ROOT / "app" / "demo_data" / "flows.toml").read_text())
    messages = {segment["id"]: {"text": segment["say"], "category": segment["kind"],
                                "products": segment.get("products", [])}
                for segment in flows["segment"] if segment.get("say")}
    messages["wait-announcement"] = {
        "text": "Your estimated wait time is about eight minutes. You are number four in line.",
        "category": "wait", "products": []}
    return messages


DEMO_MESSAGES = _demo_messages()


@dataclass
class HoldRecording:
    path: Path
    truth: dict

    @property
    def duration_s(self) -> float:
        return self.truth["duration_s"]

    @property
    def timeline(self) -> list[dict]:
        return self.truth["timeline"]

    def spans(self, kind: str) -> list[tuple[float, float]]:
        """(start_s, end_s) of every truth span of one kind: speech, music or silence."""
        return [(span["start_s"], span["end_s"]) for span in self.timeline if span["kind"] == kind]

    def plays(self, message_id: str) -> list[tuple[float, float]]:
        """(start_s, end_s) of every play of one message."""
        return [(span["start_s"], span["end_s"]) for span in self.timeline if span.get("message") == message_id]


def make_hold(directory: str | Path, timeline: list, *, name: str = "hold", messages: dict | None = None,
              context: dict | None = None, **options) -> HoldRecording:
    """Generate `<directory>/<name>.wav` (+ .truth.json, + .context.json when `context` is given)
    from a timeline such as ["music 8", "say galaxy-upgrade", "silence 35"]. Options are scenario
    keys: format ("ulaw-8k" default, "pcm-16k"), seed, voice, speed_wpm, noise_dbfs..."""
    scenario = {"timeline": timeline, "messages": messages or DEMO_MESSAGES, **options}
    if context is not None:
        scenario["context"] = context
    path = Path(directory) / f"{name}.wav"
    truth_file = generate.truth_path(path)
    if path.exists() and truth_file.exists():
        truth = json.loads(truth_file.read_text())
        if truth.get("scenario_hash") == generate.scenario_hash(scenario):
            return HoldRecording(path, truth)
    return HoldRecording(path, generate.generate(scenario, path))
