"""Fleet audit: the message library cold and warm against today's per-recording audit, on one flow's recordings.

    python tests/bench/fleet_audit.py [--recordings 8] [--minutes 4 11] [--jobs 2] [--skip-ray] [--runs pool,ray]
                                      [--cache-dir DIR]
    python tests/bench/fleet_audit.py --issue-size     # issue #12's fleet: 100 recordings of 5-45 minutes

Generates (or reuses, from the cache dir) holds of the demo flow with sample_audio/generate.py, 8 kHz
mu-law like Twilio recordings: lengths spread over --minutes, the Galaxy S7 promo and the reassurance
in a loop with 40 s of music between, an outage notice or a billing tip at the start, 35 s of dead
air in every other one, the promo re-recorded in another voice in every third; the caller differs
(open case and owns the phone / owns it / neither). Plus two warm-up holds of the same flow (other
seeds). Generating runs in a child process (the generator takes GBs for a moment on a long hold).

Then each run in its own process (it reports its own peak memory), on a fresh database with the
demo flow loaded, one after another:

per-recording  --jobs 1, the library off: every recording hears each of its messages (before issue #12)
cold           --jobs 1, the library on and empty at the start: it learns as the batch goes
warm           --jobs 1, the library on, after the two warm-up holds were audited into it (before the clock)
pool           --jobs J worker processes (audits.batch, the local path for a batch), cold library
ray            --jobs J Ray worker actors on a local Ray started and stopped inside the clock (audits.ray_batch,
               what `holdguard audit --ray` does), cold library

For the --jobs 1 runs the model is loaded before the clock; the pool's and Ray's workers load theirs
inside it, as a batch does. Reports per run: wall time, recordings a minute, audio hours per CPU hour
(user + system time of the run's process and of every process it started: worker processes, Ray's
own), Whisper clips decoded (the engine wrapped to count them; in worker processes and actors they
are not counted), peak memory (the run's process; the largest worker process), and findings: the
(rule, category, count) of each recording against the truth the generator wrote and against the
per-recording run. Prints a Markdown table and the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
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
ISSUE_SIZE = {"recordings": 100, "minutes": (5, 45)}  # issue #12's benchmark
RUNS = ("per-recording", "cold", "warm", "pool", "ray")
RUN_LIMIT_S = 3 * 3600
LOOP_S = 93  # about one loop: 2 x 40 s of music, the promo and the reassurance


def fleet_scenarios(count: int, first_seed: int, minutes_range: tuple[int, int] = (4, 11)) -> list[dict]:
    """`count` holds of the demo flow, each a little different (length, extras, caller)."""
    from tests.audio_fixtures import DEMO_MESSAGES

    shortest, longest = minutes_range
    scenarios = []
    for n in range(count):
        minutes = shortest + (n * 3) % (longest - shortest + 1)  # spread over the range, not in order
        loop = ["music 40", "say galaxy-upgrade", "music 40", "say thanks-patience"]
        loops = max(2, round(minutes * 60 / LOOP_S))
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

    holds = [make_hold(folder, scenario["timeline"], name=f"{prefix}-{n:03d}", messages=scenario["messages"],
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


def fresh_db(path: Path):
    from app.core.flows import read_flow_file
    from app.storage.catalog import save_catalog
    from app.storage.schema import open_database

    db = open_database(path)
    save_catalog(db, read_flow_file(REPO / "app" / "demo_data" / "flows.toml"))
    return db


# ---------------------------------------------------------------- what a run's processes used

def _descendants(pid: int) -> list[int]:
    """Processes started by `pid`, directly or not, still running (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _proc_peak_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:")), 0.0)


class Usage:
    """CPU seconds and peak memory of this process and every process it started, ended or running."""

    def __init__(self):
        self.alive_cpu_s, self.alive_peak_mb = 0.0, 0.0

    def sample_alive(self) -> None:
        """Read the descendants still running (Ray's workers and daemons) before they are stopped."""
        pids = _descendants(os.getpid())
        self.alive_cpu_s = sum(_proc_cpu_s(pid) for pid in pids)
        self.alive_peak_mb = max((_proc_peak_mb(pid) for pid in pids), default=0.0)

    @staticmethod
    def cpu_s() -> float:
        own, ended = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + ended.ru_utime + ended.ru_stime

    def report(self, cpu_at_start_s: float) -> dict:
        ended_peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        return {"cpu_s": self.cpu_s() - cpu_at_start_s + self.alive_cpu_s,
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "worker_peak_mb": max(ended_peak_mb, self.alive_peak_mb) or None}


# ---------------------------------------------------------------- one run, in its own process

def child_main(run_name: str, files: list[Path], warmup: list[Path], db_path: Path, jobs: int) -> dict:
    from audits.batch import audit_batch
    from audits.transcribe import shared_engine
    from tests.test_fingerprint import CountingEngine

    db = fresh_db(db_path)
    options = {"engine": ENGINE, "model": MODEL, "library": run_name != "per-recording"}
    counting = None
    if run_name in ("per-recording", "cold", "warm"):
        counting = CountingEngine(shared_engine(ENGINE, MODEL))  # loaded before the clock
        options["transcriber"] = counting
        if run_name == "warm":
            _, failures = audit_batch(warmup, db, **options)
            assert not failures, failures
            counting.calls = 0
    usage = Usage()
    cpu_at_start_s, started = usage.cpu_s(), time.perf_counter()
    if run_name == "ray":
        from audits.ray_batch import RayRunner

        with RayRunner(None, jobs) as runner:
            results, failures = audit_batch(files, db, runner=runner, **options)
            usage.sample_alive()  # Ray's processes, before they are stopped
    elif run_name == "pool":
        results, failures = audit_batch(files, db, jobs=jobs, **options)
    else:
        results, failures = audit_batch(files, db, jobs=1, **options)
    wall_s = time.perf_counter() - started
    return {"wall_s": wall_s, **usage.report(cpu_at_start_s), "clips": counting.calls if counting else None,
            "failures": [list(failure) for failure in failures],
            "outlines": {str(result.recording): outline(result) for result in results}}


def run_child(run_name: str, list_file: Path, db_path: Path, jobs: int) -> dict:
    """One run in a child process; its JSON report (or why it has none)."""
    print(f"running {run_name} ...", file=sys.stderr, flush=True)
    command = [sys.executable, __file__, "--child", run_name, str(list_file), str(db_path), "--jobs", str(jobs)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    try:
        process = subprocess.run(command, capture_output=True, text=True, timeout=RUN_LIMIT_S, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"name": run_name, "error": f"over its {RUN_LIMIT_S} s limit"}
    lines = process.stdout.strip().splitlines()
    if process.returncode != 0 or not lines:
        return {"name": run_name, "error": f"exit {process.returncode}: {process.stderr.strip()[-800:]}"}
    report = json.loads(lines[-1])
    print(f"  {report['wall_s']:.1f} s", file=sys.stderr, flush=True)
    return {"name": run_name, **report}


# ---------------------------------------------------------------- the table

def table(runs: list[dict], fleet: list[tuple[Path, dict]], specs: list[dict], audio_h: float) -> list[str]:
    truths = {str(path): expected_outline(truth, spec["context"]) for (path, truth), spec in zip(fleet, specs)}
    reference = next((run["outlines"] for run in runs if run["name"] == "per-recording" and "outlines" in run), {})
    lines = ["| run | wall s | recordings/min | audio h per CPU h | Whisper clips | peak MB (process / largest worker) "
             "| findings = truth | = per-recording |",
             "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        if "error" in run:
            lines.append(f"| {run['name']} | failed: {run['error'][:120]} | | | | | | |")
            continue
        outlines = {path: [tuple(item) for item in found] for path, found in run["outlines"].items()}
        same_truth = sum(outlines.get(path) == truth for path, truth in truths.items())
        same_reference = sum(outlines.get(path) == [tuple(item) for item in reference.get(path, [])]
                             for path in truths) if reference else 0
        worker = f" / {run['worker_peak_mb']:.0f}" if run.get("worker_peak_mb") else ""
        lines.append(f"| {run['name']} | {run['wall_s']:.1f} | {len(fleet) / run['wall_s'] * 60:.1f} | "
                     f"{audio_h / (run['cpu_s'] / 3600):.0f} | {run['clips'] if run['clips'] is not None else '—'} | "
                     f"{run['peak_mb']:.0f}{worker} | {same_truth}/{len(fleet)} | "
                     f"{same_reference if reference else '—'}/{len(fleet)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=8)
    parser.add_argument("--minutes", type=int, nargs=2, default=(4, 11), metavar=("SHORTEST", "LONGEST"),
                        help="the holds' lengths are spread over this range (default 4 11)")
    parser.add_argument("--issue-size", action="store_true",
                        help=f"issue #12's fleet: {ISSUE_SIZE['recordings']} recordings of "
                             f"{ISSUE_SIZE['minutes'][0]}-{ISSUE_SIZE['minutes'][1]} minutes")
    parser.add_argument("--jobs", type=int, default=2, help="workers of the pool and Ray runs (default 2)")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"which runs, of {','.join(RUNS)} (default all)")
    parser.add_argument("--generate-only", action="store_true", help="make the recordings, audit nothing")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "holdguard-bench-fleet")
    parser.add_argument("--child", nargs=3, metavar=("RUN", "LIST", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_name, list_file, db_path = args.child
        lists = json.loads(Path(list_file).read_text())
        report = child_main(run_name, [Path(p) for p in lists["fleet"]], [Path(p) for p in lists["warmup"]],
                            Path(db_path), args.jobs)
        print(json.dumps(report))
        return 0
    if args.issue_size:
        args.recordings, args.minutes = ISSUE_SIZE["recordings"], ISSUE_SIZE["minutes"]
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    specs = fleet_scenarios(args.recordings, first_seed=100, minutes_range=tuple(args.minutes))
    if args.generate_only:
        recordings(args.cache_dir, specs, "fleet")
        recordings(args.cache_dir, fleet_scenarios(2, first_seed=900), "warmup")
        return 0
    # in a child: this process stays small, so the runs' own peaks are not its leftovers
    subprocess.run([sys.executable, __file__, "--generate-only", "--recordings", str(args.recordings),
                    "--minutes", *map(str, args.minutes), "--cache-dir", str(args.cache_dir)], check=True)
    fleet = recordings(args.cache_dir, specs, "fleet")
    warmup = recordings(args.cache_dir, fleet_scenarios(2, first_seed=900), "warmup")
    audio_h = sum(truth["duration_s"] for _, truth in fleet) / 3600
    machine_before = f"load average {os.getloadavg()[0]:.2f}"

    runs = []
    with tempfile.TemporaryDirectory() as folder:
        list_file = Path(folder) / "recordings.json"
        list_file.write_text(json.dumps({"fleet": [str(p) for p, _ in fleet], "warmup": [str(p) for p, _ in warmup]}))
        for run_name in args.runs.split(","):
            if run_name == "ray" and args.skip_ray:
                continue
            runs.append(run_child(run_name, list_file, Path(folder) / f"{run_name}.db", args.jobs))

    minutes = [truth["duration_s"] / 60 for _, truth in fleet]
    print(f"{len(fleet)} recordings of {min(minutes):.1f}-{max(minutes):.1f} min, {audio_h:.1f} h of audio; "
          f"faster-whisper {MODEL}; pool and Ray: {args.jobs} workers\n")
    print("\n".join(table(runs, fleet, specs, audio_h)))
    by_name = {run["name"]: run for run in runs if "error" not in run}
    if {"per-recording", "warm", "cold"} <= by_name.keys():
        print(f"\nthroughput against per-recording: warm {by_name['per-recording']['wall_s'] / by_name['warm']['wall_s']:.2f}x,"
              f" cold {by_name['per-recording']['wall_s'] / by_name['cold']['wall_s']:.2f}x (issue #12: warm >= 3x)")
    if {"pool", "ray"} <= by_name.keys():
        print(f"ray / pool wall time: {by_name['ray']['wall_s'] / by_name['pool']['wall_s']:.2f} (issue #12: within 1.2)")
    print(f"\nmachine: {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), Python {platform.python_version()}, "
          f"{machine_before} before, {os.getloadavg()[0]:.2f} after, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC")
    return 0


if __name__ == "__main__":
    sys.exit(main())
