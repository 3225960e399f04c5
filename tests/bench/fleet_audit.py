"""Fleet audit: the message library cold and warm against today's per-recording audit, on one flow's recordings.

    python tests/bench/fleet_audit.py [--recordings 8] [--cache-dir DIR]

Generates (or reuses, from the cache dir) holds of the demo flow with sample_audio/generate.py, 8 kHz
mu-law like Twilio recordings: 4 to 11 minutes each, the Galaxy S7 promo and the reassurance in a
loop with 40 s of music between, an outage notice or a billing tip in some, 35 s of dead air in
some, the promo re-recorded in another voice in every third; callers differ (open case and owns
the phone / owns it / neither). Plus two warm-up holds of the same flow (other seeds).

Every run is in this process, one recording after another (audit_batch, --jobs 1), the model
loaded before the clock starts, on a fresh database with the demo flow loaded:

per-recording  the library off: every recording hears each of its messages (today before issue #12)
cold           the library on, empty at the start: it learns as the batch goes
warm           the library on, after the two warm-up holds were audited into it: the flow is known

Reports per run: wall time, recordings a minute, audio hours per CPU hour (this process's user +
system time), Whisper clips decoded (the engine wrapped to count them), and findings: the (rule,
category, count) of each recording against the truth the generator wrote and against the
per-recording run. Prints a Markdown table and the machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

ENGINE, MODEL = "faster-whisper", "tiny.en"
OPEN_AND_OWNER = {"open_issues": [{"id": "CASE-1042", "severity": "high", "summary": "Galaxy S7 reboots"}],
                  "owned_products": ["Galaxy S7"], "queue": "support"}
OWNER = {"owned_products": ["Galaxy S7"], "queue": "support"}
NOBODY = {"queue": "support"}
RERECORDED = "galaxy-upgrade voice=en-us+f3 speed=130 pitch=60"


def fleet_scenarios(count: int, first_seed: int) -> list[dict]:
    """`count` holds of the demo flow, each a little different (length, extras, caller)."""
    from tests.audio_fixtures import DEMO_MESSAGES

    scenarios = []
    for n in range(count):
        minutes = 4 + (n * 3) % 8
        loop = ["music 40", "say galaxy-upgrade", "music 40", "say thanks-patience"]
        loops = max(2, int(minutes * 60 // 100))
        timeline = ["music 8", "say outage-northeast" if n % 2 == 0 else "say tip-online-billing",
                    {"repeat": loops, "do": loop}]
        if n % 3 == 2:
            timeline += ["music 30", f"say {RERECORDED}"]
        if n % 2 == 1:
            timeline += ["silence 35"]
        timeline += ["music 10"]
        context = [OPEN_AND_OWNER, OWNER, NOBODY][n % 3]
        scenarios.append({"seed": first_seed + n, "timeline": timeline, "messages": DEMO_MESSAGES, "context": context})
    return scenarios


def recordings(folder: Path, scenarios: list[dict], prefix: str) -> list[tuple[Path, dict]]:
    """Each scenario's hold (generated, or reused when made from the same scenario) and its truth."""
    from tests.audio_fixtures import make_hold

    holds = [make_hold(folder, scenario["timeline"], name=f"{prefix}-{n:02d}", messages=scenario["messages"],
                       context=scenario["context"], seed=scenario["seed"]) for n, scenario in enumerate(scenarios)]
    return [(hold.path, hold.truth) for hold in holds]


def expected_outline(truth: dict, context: dict) -> list[tuple]:
    """The findings a hold must give, from what the generator played and the caller."""
    from audits.rules import LONG_SILENCE_MIN_S

    timeline = truth["timeline"]
    promos = sum(span.get("message") == "galaxy-upgrade" for span in timeline)
    reassurances = sum(span.get("message") == "thanks-patience" for span in timeline)
    expected = []
    if promos >= 3:
        expected.append(("repeated_promo", "promo", promos))
    if context.get("open_issues") and promos:
        expected.append(("promo_during_open_issue", "promo", promos))
    if "Galaxy S7" in context.get("owned_products", []) and promos:
        expected.append(("promo_for_owned_product", "promo", promos))
    if reassurances >= 4:
        expected.append(("repeated_reassurance", "reassurance", reassurances))
    if any(span["kind"] == "silence" and span["end_s"] - span["start_s"] >= LONG_SILENCE_MIN_S for span in timeline):
        expected.append(("long_silence", None, 1))
    return sorted(expected)


def outline(result) -> list[tuple]:
    categories = {m.id: m.category for m in result.messages}
    return sorted((f.rule, categories.get(f.message_id), f.count) for f in result.findings)


def fresh_db(folder: Path, name: str):
    from app.core.flows import read_flow_file
    from app.storage.catalog import save_catalog
    from app.storage.schema import open_database

    db = open_database(folder / f"{name}.db")
    save_catalog(db, read_flow_file(REPO / "app" / "demo_data" / "flows.toml"))
    return db


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(name: str, db, fleet: list[tuple[Path, dict]], engine, library: bool) -> dict:
    from audits.batch import audit_batch
    from tests.test_fingerprint import CountingEngine

    counting = CountingEngine(engine)
    wall, cpu = time.perf_counter(), cpu_s()
    results, failures = audit_batch([path for path, _ in fleet], db, engine=ENGINE, model=MODEL,
                                    transcriber=counting, library=library)
    wall, cpu = time.perf_counter() - wall, cpu_s() - cpu
    assert not failures, failures
    return {"name": name, "wall_s": wall, "cpu_s": cpu, "clips": counting.calls, "results": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=8)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "holdguard-bench-fleet")
    args = parser.parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)

    from audits.transcribe import shared_engine

    fleet_specs = fleet_scenarios(args.recordings, first_seed=100)
    fleet = recordings(args.cache_dir, fleet_specs, "fleet")
    warmup = recordings(args.cache_dir, fleet_scenarios(2, first_seed=900), "warmup")
    audio_h = sum(truth["duration_s"] for _, truth in fleet) / 3600
    engine = shared_engine(ENGINE, MODEL)  # loaded before any clock starts

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        per_recording = run("per-recording (no library)", fresh_db(folder, "per"), fleet, engine, library=False)
        cold = run("cold library", fresh_db(folder, "cold"), fleet, engine, library=True)
        warm_db = fresh_db(folder, "warm")
        run("warm-up", warm_db, warmup, engine, library=True)
        warm = run("warm library", warm_db, fleet, engine, library=True)

    truths = [expected_outline(truth, spec["context"]) for (_, truth), spec in zip(fleet, fleet_specs)]
    reference = [outline(result) for result in per_recording["results"]]
    print(f"{len(fleet)} recordings, {audio_h * 60:.1f} min of audio; faster-whisper {MODEL}, --jobs 1\n")
    print("| run | wall s | recordings/min | audio h per CPU h | Whisper clips | findings = truth | "
          "findings = per-recording |")
    print("|---|---|---|---|---|---|---|")
    for measured in (per_recording, cold, warm):
        outlines = [outline(result) for result in measured["results"]]
        print(f"| {measured['name']} | {measured['wall_s']:.1f} | {len(fleet) / measured['wall_s'] * 60:.1f} | "
              f"{audio_h / (measured['cpu_s'] / 3600):.0f} | {measured['clips']} | "
              f"{sum(a == b for a, b in zip(outlines, truths))}/{len(fleet)} | "
              f"{sum(a == b for a, b in zip(outlines, reference))}/{len(fleet)} |")
    print(f"\nwarm vs per-recording throughput: {per_recording['wall_s'] / warm['wall_s']:.2f}x; "
          f"cold: {per_recording['wall_s'] / cold['wall_s']:.2f}x")
    for (path, _), got, want in zip(fleet, reference, truths):
        if got != want:
            print(f"{path.name}: per-recording {got} != truth {want}", file=sys.stderr)
    print(f"\nmachine: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d', time.gmtime())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
