"""`holdguard audit --ray` (a local Ray) against the local process pool, on the same few recordings.

    python tests/bench/ray_batch.py [--recordings 6] [--minutes 3] [--runs 3] [--jobs 2] [--model tiny.en]

Generates, once (kept in ~/.cache/holdguard/bench/ray, or $HOLDGUARD_CACHE_DIR/bench/ray), N holds of
M minutes from the demo flow's messages (a promo and a reassurance in a loop with hold music
between, an outage notice or a tip in some; each its own voice seed), 8 kHz mu-law like a Twilio
recording. Then, alternating, each `--runs` times, each its own process on a fresh database with
the demo hold flow loaded:

pool   `holdguard audit FILES --jobs J --model M --format json` (audits.batch's worker processes)
ray    `holdguard audit FILES --jobs J --model M --ray --format json` (a local Ray started and stopped by the
       command: its start-up is part of the time, as it is for a user)

Prints the median and each wall time, and whether every run's findings, and its whole reports, equal
the first pool run's (with the message library, which hearing of a message a recording reuses
depends on the order results arrive in: the transcripts can differ, the findings must not).
Every run has a time limit, so the bench always ends.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.audio_fixtures import make_hold  # noqa: E402

RUN_LIMIT_S = 900
MUSIC_S = 25


def cache_dir() -> Path:
    base = Path(os.environ.get("HOLDGUARD_CACHE_DIR", Path.home() / ".cache" / "holdguard"))
    folder = base / "bench" / "ray"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def recordings(count: int, minutes: float) -> list[Path]:
    """`count` holds of about `minutes` each, generated once and reused."""
    paths = []
    for number in range(count):
        first = ["say outage-northeast"] if number % 2 == 0 else ["say tip-online-billing"]
        loop, timeline = ["say galaxy-upgrade", f"music {MUSIC_S}", "say thanks-patience"], [f"music {MUSIC_S}", *first]
        while sum(float(step.split()[1]) if step.startswith("music") else 6.0 for step in timeline) < minutes * 60:
            timeline += [f"music {MUSIC_S}", *loop]
        hold = make_hold(cache_dir(), timeline, name=f"hold-{number + 1}", seed=100 + number)
        paths.append(hold.path)
    return paths


def fresh_database(folder: Path, name: str) -> Path:
    from app.core.flows import read_flow_file
    from app.storage.catalog import save_catalog
    from app.storage.connect import connect
    from app.storage.schema import migrate

    path = folder / f"{name}.db"
    db = connect(path)
    migrate(db)
    save_catalog(db, read_flow_file(REPO / "app" / "demo_data" / "flows.toml"))
    db.conn.close()
    return path


def run(files: list[Path], db_path: Path, *options: str) -> tuple[float, list]:
    command = [sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main(prog_name='holdguard'))",
               "audit", *map(str, files), "--format", "json", "--db", str(db_path), *options]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=RUN_LIMIT_S)
    wall_s = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}")
    return wall_s, json.loads(done.stdout)


def findings(reports: list) -> list:
    """Each recording's findings: rule, severity, count."""
    return [sorted((f["rule"], f["severity"], f["count"]) for f in report["findings"]) for report in reports]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=6)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--model", default="tiny.en")
    args = parser.parse_args()

    files = recordings(args.recordings, args.minutes)
    audio_s = sum(json.loads(path.with_suffix(".truth.json").read_text())["duration_s"] for path in files)
    common = ("--jobs", str(args.jobs), "--model", args.model)
    variants = {"pool": common, "ray": (*common, "--ray")}
    walls: dict[str, list[float]] = {name: [] for name in variants}
    reference, same, same_findings = None, True, True
    with tempfile.TemporaryDirectory(prefix="holdguard-bench-ray-") as folder:
        for attempt in range(args.runs):
            for name, options in variants.items():
                wall_s, reports = run(files, fresh_database(Path(folder), f"{name}-{attempt}"), *options)
                walls[name].append(wall_s)
                reference = reports if reference is None else reference
                same = same and reports == reference
                same_findings = same_findings and findings(reports) == findings(reference)
                print(f"run {attempt + 1} {name}: {wall_s:.1f} s", flush=True)

    print(f"\n{len(files)} recordings, {audio_s / 60:.1f} min of audio, --jobs {args.jobs} --model {args.model}; "
          f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print("| variant | median wall | runs | recordings/min |")
    print("|---|---|---|---|")
    for name, times in walls.items():
        median = statistics.median(times)
        print(f"| {name} | {median:.1f} s | {', '.join(f'{t:.1f}' for t in times)} | {len(files) / median * 60:.1f} |")
    ratio = statistics.median(walls["ray"]) / statistics.median(walls["pool"])
    print(f"ray / pool: {ratio:.2f}; findings identical in every run: {same_findings}; "
          f"reports (transcripts included) identical in every run: {same}")


if __name__ == "__main__":
    main()
