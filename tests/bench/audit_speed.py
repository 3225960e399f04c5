"""Audit speed: naive whole-file Whisper against `holdguard audit`, on a 45- and a 90-minute hold.

    python tests/bench/audit_speed.py [--cache-dir DIR] [--skip-baseline] [--skip-every-play] [--model base]

Generates (or reuses, from the cache dir) hold recordings with sample_audio/generate.py: an outage
notice once, then the Galaxy S7 upgrade promo and the "thank you for your patience" reassurance in
a loop with hold music between (40 s before each), 35 s of dead air halfway; 8 kHz mu-law like a
Twilio recording. The caller (the generated <stem>.context.json) has an open case and owns a
Galaxy S7; the database has the demo hold flow loaded, as in a deployment (its catalog names the
products promos sell). Then, each in its own process (it reports its own peak RSS), with the same
thread settings (torch/CTranslate2 default: every core; OMP_WAIT_POLICY=PASSIVE):

baseline      openai-whisper `model.transcribe()` on the whole 45-minute file: --model (the same
              weights), fp16=False, language="en", every other option at its default; and once
              more with condition_on_previous_text=False (the default run falls into a loop of
              "Thank you for your patience." over the promo). Its segments then go through the same
              stages as holdguard's: each Whisper segment is given to the speech segment
              (audits.segment) it overlaps most, or the nearest one within BASELINE_NEAREST_S
              (Whisper's segment times are seconds off), else dropped (text over music or
              silence); one play per speech segment, the same hallucination guard
              (audits.transcribe.combine), then messages -> classify -> rules (pipeline.analyse).
holdguard     `holdguard audit FILE --engine E --format json` (the CLI, each run on a fresh copy
              of the database: a cold message library), each engine, the 45- and the 90-minute file, 3 times each (median); and
              once more on 45 minutes with the music/silence pre-filter off (audits.prefilter:
              Silero's coarse pass over all sound, as before it), to show what it saves; with
              --int8, once more with faster-whisper's weights loaded as int8.
every play    holdguard's pipeline with acoustic grouping off (every play transcribed,
              faster-whisper), 45 minutes: the findings acoustic grouping must reproduce.

Findings are compared as the sorted list of (rule, category of the finding's message or None,
count), against the truth (what the generator played: expected_outline), against the every-play run
and against the baseline. Prints a Markdown table (wall time from process start to exit, real-time
factor = wall / audio duration, peak RSS, speed-up = baseline wall / wall), each run's messages and
findings, and the machine; exits 1 when a target of issue #5 is missed (on the default engine).
Every run has a time limit, so the bench always ends.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

LOOP = ["music 40", "say galaxy-upgrade", "music 40", "say thanks-patience"]
INTRO = ["music 10", "say outage-northeast", "music 30"]
DEAD_AIR_S = 35
CONTEXT = {"open_issues": [{"id": "CASE-1042", "severity": "high", "summary": "Galaxy S7 reboots during calls"}],
           "owned_products": ["Galaxy S7"], "queue": "support"}
BASELINE_NEAREST_S = 3.0
SPEEDUP_TARGET = 20.0
WALL_TARGET_S = 30.0
HOLDGUARD_REPEATS = 3  # the machine may be shared: holdguard's runs are short, take the median of 3
TIME_LIMITS_S = {"baseline": 3600, "every-play": 1800, "holdguard": 600}


# ---------------------------------------------------------------- recordings

def hold_scenario(minutes: int) -> dict:
    """A loop of promo + reassurance with music, one notice, dead air halfway; exactly `minutes` long."""
    from tests.audio_fixtures import DEMO_MESSAGES, generate

    def spoken_s(message_id: str) -> float:
        defaults = generate.DEFAULTS
        samples = generate.speak(DEMO_MESSAGES[message_id]["text"], defaults["voice"], defaults["speed_wpm"],
                                 defaults["pitch"])
        return len(samples) / generate.WORK_RATE

    loop_s = 80 + spoken_s("galaxy-upgrade") + spoken_s("thanks-patience")
    intro_s = 40 + spoken_s("outage-northeast")
    loops = int((minutes * 60 - intro_s - DEAD_AIR_S) // loop_s)
    rest_s = minutes * 60 - intro_s - DEAD_AIR_S - loops * loop_s
    timeline = [*INTRO, {"repeat": loops // 2, "do": LOOP}, f"silence {DEAD_AIR_S}",
                {"repeat": loops - loops // 2, "do": LOOP}, f"music {rest_s:.3f}"]
    return {"seed": 45, "timeline": timeline, "messages": DEMO_MESSAGES, "context": CONTEXT}


def recording(cache_dir: Path, minutes: int) -> tuple[Path, dict]:
    """The generated hold (reused when the cached one was made from the same scenario) and its truth."""
    from tests.audio_fixtures import generate

    scenario = hold_scenario(minutes)
    path = cache_dir / f"hold-{minutes}min.wav"
    truth_file = generate.truth_path(path)
    if path.exists() and truth_file.exists():
        truth = json.loads(truth_file.read_text())
        if truth.get("scenario_hash") == generate.scenario_hash(scenario):
            return path, truth
    print(f"generating {path} ...", file=sys.stderr)
    return path, generate.generate(scenario, path)


def prepare_db(db_path: Path) -> None:
    """A database as deployed: schema and the demo hold flow (its catalog)."""
    from app.storage.connect import connect
    from app.storage.schema import migrate as init_schema
    from app.core.flows import read_flow_file
    from app.storage.catalog import save_catalog

    db = connect(db_path)
    init_schema(db)
    save_catalog(db, read_flow_file(REPO / "app" / "demo_data" / "flows.toml"))
    db.conn.close()


# ---------------------------------------------------------------- runs (each in its own process)

def run_child(command: list[str], time_limit_s: float, env: dict) -> dict:
    """Run a command; wall seconds, peak RSS (MB) of that process alone, exit code, stdout."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    try:
        stdout, stderr = process.communicate(timeout=time_limit_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return {"timeout": True, "wall_s": time.perf_counter() - started, "peak_mb": float("nan")}
    wall_s = time.perf_counter() - started
    # communicate() reaped the child; its rusage is folded into RUSAGE_CHILDREN only as a maximum,
    # so each child reports its own peak on stderr (see child_main) and we read it from there.
    return {"timeout": False, "wall_s": wall_s, "exit_code": process.returncode, "stdout": stdout.decode(),
            "stderr": stderr.decode()}


def own_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def baseline_child(path: str, db_path: str, condition_on_previous_text: bool = True) -> dict:
    """Whole-file openai-whisper transcribe(), then the same stages as holdguard on its segments."""
    from audits import audio, context, segment, transcribe
    from audits.pipeline import analyse
    from audits.weights import load_openai_whisper

    model = load_openai_whisper(bench_model())
    loaded = audio.load(path)
    started = time.perf_counter()
    whisper_output = model.transcribe(loaded.samples, fp16=False, language="en", verbose=None,
                                      condition_on_previous_text=condition_on_previous_text)
    transcribe_s = time.perf_counter() - started
    segments = segment.split(loaded)
    speech = [s for s in segments if s.kind == "speech"]
    heard: dict[int, list] = {}
    for piece in whisper_output["segments"]:
        index = _speech_segment_of(piece["start"], piece["end"], speech)
        if index is not None:
            heard.setdefault(index, []).append(transcribe.Decoded(
                piece["text"], piece["avg_logprob"], piece["no_speech_prob"], piece["compression_ratio"],
                len(piece["tokens"])))
    transcripts = [transcribe.combine(heard.get(i, []), span.start_s, span.end_s) for i, span in enumerate(speech)]
    db = _open(db_path)
    resolved = context.resolve(path, None, db)
    result = analyse(path, loaded.duration_s, segments, transcripts, resolved.context, context.load_catalog(db))
    return {"report": result.to_json(), "transcribe_s": transcribe_s}


def _speech_segment_of(start_s: float, end_s: float, speech: list) -> int | None:
    """The speech segment a Whisper segment belongs to: most overlap, else nearest within BASELINE_NEAREST_S."""
    def overlap_s(span) -> float:
        return min(end_s, span.end_s) - max(start_s, span.start_s)

    if not speech:
        return None
    best = max(range(len(speech)), key=lambda i: overlap_s(speech[i]))
    if overlap_s(speech[best]) > 0:
        return best
    nearest = max(range(len(speech)), key=lambda i: overlap_s(speech[i]))  # least negative: the closest
    return nearest if -overlap_s(speech[nearest]) <= BASELINE_NEAREST_S else None


def every_play_child(path: str, db_path: str) -> dict:
    """holdguard's pipeline with acoustic grouping off: every play transcribed (faster-whisper)."""
    from audits import context, pipeline
    from audits.transcribe import load_engine

    db = _open(db_path)
    resolved = context.resolve(path, None, db)
    result = pipeline.audit_file(path, resolved.context, load_engine("faster-whisper", bench_model()),
                                 context.load_catalog(db),
                                 acoustic_grouping=False)
    return {"report": result.to_json()}


def bench_model() -> str:
    """The Whisper model every run uses (--model; children read it from the environment)."""
    from audits.transcribe import DEFAULT_MODEL

    return os.environ.get("HOLDGUARD_BENCH_MODEL") or DEFAULT_MODEL


def _open(db_path: str):
    from app.storage.connect import connect

    return connect(db_path)


def child_main(variant: str, path: str, db_path: str) -> None:
    variants = {"baseline": baseline_child, "every-play": every_play_child,
                "baseline-unconditioned": lambda *paths: baseline_child(*paths, condition_on_previous_text=False)}
    output = variants[variant](path, db_path)
    print(json.dumps(output))
    print(f"peak_mb={own_peak_mb():.1f}", file=sys.stderr)


# ---------------------------------------------------------------- comparing and reporting

def findings_outline(report: dict) -> list[tuple]:
    """(rule, category of the finding's message or None, count), sorted: what must match the baseline."""
    categories = {m["id"]: m["category"] for m in report["messages"]}
    return sorted((f["rule"], categories.get(f["message_id"]), f["count"]) for f in report["findings"])


def messages_outline(report: dict) -> list[tuple]:
    return [(m["category"], m["plays"]) for m in report["messages"]]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    mem_kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0)
    return (f"{os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), {cpu}, {mem_kb / 1024 ** 2:.1f} GB RAM, "
            f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}")


def child_env() -> dict:
    env = dict(os.environ)
    env["OMP_WAIT_POLICY"] = env.get("OMP_WAIT_POLICY", "PASSIVE")  # the same for every run (holdguard's default)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def measure(name: str, command: list[str], kind: str, duration_s: float, repeats: int = 1,
            before_each=lambda: None) -> dict:
    """Run a command `repeats` times (each in its own process, after `before_each()`): the median wall
    time, the largest peak."""
    print(f"running {name} ({duration_s / 60:.0f} min) ...", file=sys.stderr, flush=True)
    walls, peaks = [], []
    for _ in range(repeats):
        before_each()
        run = run_child(command, TIME_LIMITS_S[kind], child_env())
        run.update(name=name, duration_s=duration_s)
        if run["timeout"]:
            print(f"  over its {TIME_LIMITS_S[kind]} s limit, stopped", file=sys.stderr)
            return run
        peak = [line for line in run["stderr"].splitlines() if line.startswith("peak_mb=")]
        if run["exit_code"] != 0 or not run["stdout"].strip() or not peak:
            print(f"  failed ({run['exit_code']}): {run['stderr'].strip()[-500:]}", file=sys.stderr)
            run["report"] = None
            return run
        walls.append(run["wall_s"])
        peaks.append(float(peak[-1].split("=")[1]))
    output = json.loads(run["stdout"])
    run.update(wall_s=statistics.median(walls), walls_s=walls, peak_mb=max(peaks),
               report=output["report"] if "report" in output else output, transcribe_s=output.get("transcribe_s"))
    print(f"  {', '.join(f'{wall:.1f}' for wall in walls)} s, {max(peaks):.0f} MB", file=sys.stderr, flush=True)
    return run


def holdguard_command(path: Path, engine: str, db_path: Path, prefilter: bool = True,
                      compute_type: str | None = None) -> list[str]:
    """The CLI in a child that reports its own peak memory after the command finishes. With
    prefilter=False, audits.segment runs the VAD's coarse pass over all sound (as before the
    pre-filter); with compute_type, faster-whisper loads its weights as that ("int8")."""
    patches = ""
    if not prefilter:
        patches += ("import functools, audits.segment as segment; "
                    "segment.split = functools.partial(segment.split, prefilter=False)\n")
    if compute_type:
        patches += ("import audits.transcribe as transcribe\nload_engine = transcribe.load_engine\n"
                    "def with_compute_type(*args, **options):\n"
                    f"    return load_engine(*args, **{{**options, 'compute_type': {compute_type!r}}})\n"
                    "transcribe.load_engine = with_compute_type\n")
    code = ("import resource, sys; from app.cli import main\n" + patches +
            "try:\n    main(sys.argv[1:], prog_name='holdguard')\n"
            "finally:\n    print(f'peak_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}',"
            " file=sys.stderr)")
    return [sys.executable, "-c", code, "audit", str(path), "--engine", engine, "--model", bench_model(),
            "--format", "json", "--db", str(db_path)]


def expected_outline(truth: dict) -> list[tuple]:
    """The findings this scenario must give, from the generator's truth: the promo and the reassurance
    repeat (the caller has an open case and owns the Galaxy S7 the promo sells), 35 s of dead air;
    promos stay under 15 % of the hold, so no promo_share_high."""
    plays = {name: sum(span.get("message") == name for span in truth["timeline"])
             for name in ("galaxy-upgrade", "thanks-patience")}
    return sorted([("repeated_promo", "promo", plays["galaxy-upgrade"]),
                   ("promo_during_open_issue", "promo", plays["galaxy-upgrade"]),
                   ("promo_for_owned_product", "promo", plays["galaxy-upgrade"]),
                   ("repeated_reassurance", "reassurance", plays["thanks-patience"]),
                   ("long_silence", None, 1)])


def findings_note(run: dict, truth: dict, reference: dict | None) -> str:
    """How a run's findings compare: with the truth, and with the reference run (every play transcribed)."""
    outline = findings_outline(run["report"])
    notes = ["= truth" if outline == expected_outline(truth) else "**≠ truth**"]
    if reference and reference.get("report") and run is not reference and run["duration_s"] == reference["duration_s"]:
        notes.append("= every play" if outline == findings_outline(reference["report"]) else "**≠ every play**")
    return ", ".join(notes)


def table(runs: list[dict], baselines: list[dict], reference: dict | None, truths: dict[int, dict]) -> str:
    """The Markdown results table; speed-ups are against each baseline that ran, on the same file."""
    lines = ["| run | audio | wall s | real-time factor | peak RSS MB | speed-up vs baselines | findings |",
             "|---|---|---|---|---|---|---|"]
    for run in runs:
        minutes = round(run["duration_s"] / 60)
        if run["timeout"] or run.get("report") is None:
            lines.append(f"| {run['name']} | {minutes} min | {'timeout' if run['timeout'] else 'failed'} | | | | |")
            continue
        speedups = [f"{baseline['wall_s'] / run['wall_s']:.1f}x" for baseline in baselines
                    if baseline.get("report") and run not in baselines and baseline["duration_s"] == run["duration_s"]]
        lines.append(f"| {run['name']} | {minutes} min | {run['wall_s']:.1f} | {run['wall_s'] / run['duration_s']:.4f} "
                     f"| {run['peak_mb']:.0f} | {' / '.join(speedups) or '—'} "
                     f"| {findings_note(run, truths[minutes], reference)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", type=Path, help="where the generated holds are kept "
                        "(default: $HOLDGUARD_CACHE_DIR/bench or ~/.cache/holdguard/bench)")
    parser.add_argument("--skip-baseline", action="store_true", help="skip the whole-file baselines (minutes)")
    parser.add_argument("--skip-every-play", action="store_true", help="skip the every-play run")
    parser.add_argument("--int8", action="store_true", help="one more run: faster-whisper with int8 weights, 45 min")
    parser.add_argument("--model", help="Whisper model for every run, baselines included (default: holdguard's)")
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "PATH", "DB"), help=argparse.SUPPRESS)
    parser.add_argument("--generate-into", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.model:
        os.environ["HOLDGUARD_BENCH_MODEL"] = args.model
    if args.child:
        child_main(*args.child)
        return 0
    if args.generate_into:
        for minutes in (45, 90):
            recording(args.generate_into, minutes)
        return 0

    from audits.weights import cache_dir

    cache = args.cache_dir or cache_dir() / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    # Generating takes GBs for a moment: do it in a child, so this process stays small. (A child's
    # ru_maxrss starts from its parent's peak on Linux: fork/exec carry the high-water mark over.)
    subprocess.run([sys.executable, __file__, "--generate-into", str(cache)], check=True, env=child_env())
    holds = {minutes: recording(cache, minutes) for minutes in (45, 90)}
    truths = {minutes: truth for minutes, (_, truth) in holds.items()}
    machine_before = machine()
    work = Path(cache / "runs")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    template_db = work / "template.db"
    prepare_db(template_db)

    def fresh_db(name: str) -> Path:
        db_path = work / f"{name}.db"
        shutil.copyfile(template_db, db_path)
        return db_path

    def audit(name: str, command: list[str], minutes: int, db_path: Path) -> dict:
        """Every run on a fresh copy of the database: a cold message library, or the second and
        third runs would reuse what the first one heard (the warm path, measured by fleet_audit.py)."""
        return measure(name, command, "holdguard", truths[minutes]["duration_s"], repeats=HOLDGUARD_REPEATS,
                       before_each=lambda: shutil.copyfile(template_db, db_path))

    def child(variant: str, minutes: int) -> list[str]:
        return [sys.executable, __file__, "--child", variant, str(holds[minutes][0]), str(fresh_db(variant))]

    duration_45_s = truths[45]["duration_s"]
    baselines = [] if args.skip_baseline else [
        measure("baseline: openai-whisper transcribe(), defaults", child("baseline", 45), "baseline", duration_45_s),
        measure("baseline: transcribe(), condition_on_previous_text=False", child("baseline-unconditioned", 45),
                "baseline", duration_45_s)]
    runs = list(baselines)
    for minutes in (45, 90):
        for engine in ("faster-whisper", "openai-whisper"):
            db_path = fresh_db(f"{engine}-{minutes}")
            runs.append(audit(f"holdguard audit --engine {engine}", holdguard_command(holds[minutes][0], engine, db_path),
                              minutes, db_path))
    db_path = fresh_db("no-prefilter-45")
    runs.append(audit("holdguard audit, pre-filter off (VAD coarse pass over all sound)",
                      holdguard_command(holds[45][0], "faster-whisper", db_path, prefilter=False), 45, db_path))
    if args.int8:
        db_path = fresh_db("int8-45")
        runs.append(audit("holdguard audit, int8 weights (faster-whisper)",
                          holdguard_command(holds[45][0], "faster-whisper", db_path, compute_type="int8"), 45, db_path))
    reference = None
    if not args.skip_every_play:
        reference = measure("holdguard pipeline, every play transcribed (faster-whisper)", child("every-play", 45),
                            "every-play", duration_45_s)
        runs.append(reference)

    print(f"\nMachine: {machine_before}; after: load average {os.getloadavg()[0]:.2f}")
    print(f"Whisper model (every run, baselines included): {bench_model()}")
    print(f"45-minute hold: {sum(span['kind'] == 'speech' for span in truths[45]['timeline'])} speech plays of "
          f"3 recordings; 90-minute: {sum(span['kind'] == 'speech' for span in truths[90]['timeline'])} plays\n")
    print(table(runs, baselines, reference, truths))
    print(f"\nTruth (45 min): {expected_outline(truths[45])}")
    for run in runs:
        if run.get("report"):
            extra = f"; transcribe() alone {run['transcribe_s']:.1f} s" if run.get("transcribe_s") else ""
            extra += f"; runs {', '.join(f'{wall:.1f}' for wall in run['walls_s'])} s" if len(run["walls_s"]) > 1 else ""
            print(f"- {run['name']} ({run['duration_s'] / 60:.0f} min): messages {messages_outline(run['report'])}; "
                  f"findings {findings_outline(run['report'])}{extra}")
    return verdict(runs, baselines[0] if baselines else None, reference, truths)


def verdict(runs: list[dict], baseline: dict | None, reference: dict | None, truths: dict[int, dict]) -> int:
    """Check issue #5's targets on the default engine (the other engine is reported, not judged); 0 when all hold."""
    from audits.transcribe import DEFAULT_ENGINE

    default = f"holdguard audit --engine {DEFAULT_ENGINE}"
    by_minutes = {round(run["duration_s"] / 60): run for run in runs if run["name"] == default and run.get("report")}
    problems = []
    short, long = by_minutes.get(45), by_minutes.get(90)
    if short is None or long is None:
        problems.append(f"{default} did not complete on both files")
    else:
        print(f"{default}: the 90-minute hold costs {long['wall_s'] / short['wall_s']:.2f}x the 45-minute one")
        if long["wall_s"] >= 1.5 * short["wall_s"]:
            problems.append("90 minutes is not well under twice 45 minutes (1.5x)")
        if short["wall_s"] >= WALL_TARGET_S:
            problems.append(f"{short['wall_s']:.1f} s on 45 minutes (target < {WALL_TARGET_S:.0f} s)")
        for run, minutes in ((short, 45), (long, 90)):
            if findings_outline(run["report"]) != expected_outline(truths[minutes]):
                problems.append(f"{minutes} minutes: findings differ from the truth")
        if reference and reference.get("report") and findings_outline(short["report"]) != findings_outline(reference["report"]):
            problems.append("findings differ from transcribing every play")
        if baseline and baseline.get("report"):
            if baseline["wall_s"] / short["wall_s"] < SPEEDUP_TARGET:
                problems.append(f"{baseline['wall_s'] / short['wall_s']:.1f}x the baseline (target {SPEEDUP_TARGET:.0f}x)")
            if findings_outline(short["report"]) != findings_outline(baseline["report"]):
                wrong = "" if findings_outline(baseline["report"]) == expected_outline(truths[45]) else \
                    " (the baseline's own findings differ from the truth: see its messages above)"
                problems.append("findings differ from the baseline's" + wrong)
    for problem in problems:
        print(f"TARGET MISSED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
