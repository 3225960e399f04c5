"""Audit many recordings at once, on every core.

    results, failures = audit_batch(files, db, engine="faster-whisper", jobs=2, progress=bar)

With `jobs` == 1 everything runs in this process, one recording after the other (what tests and
one-file audits do): each is audited against the message library (audits.library) as it stands
after the ones before it.

With `jobs` > 1, or a `runner` (Ray, audits.ray_batch), the workers' part comes in two phases, so
that the batch's reports and database rows are those of `jobs` == 1 whichever worker finishes first:
1. every recording is decoded, segmented and its speech fingerprinted (pipeline.survey) in a worker
   process (ProcessPoolExecutor, "spawn": no OpenMP or onnxruntime threads are forked), or a Ray
   actor (audits.ray_batch);
2. this process matches each recording's messages against the library and the recordings before
   it, in the order given (pipeline.plan), and decides which plays are heard, as one process would:
   the first play of a message new to the library in the first recording that has it
   (pipeline.first_hearings), that play again with the flow's script it reads like
   (pipeline.script_hearings), then more plays of messages whose first hearing is unsure
   (pipeline.more_hearings). Only those clips go to Whisper, once each, in the workers: a worker
   decodes its recording again and cuts the clips itself, so no audio is kept here;
3. each recording's audit is finished here (pipeline.analyse needs no audio) and stored in the
   order given, with what it added to the library.
Workers keep one recording in flight each and load the speech model once, in the background while
they survey; their engine has the decoder's fixed thread count (audits.transcribe.DECODER_THREADS,
the same as a single run's): parallelism comes from the workers, one per core. This process
resolves each caller's context beforehand and stores every result itself (SQLite has one writer).
A recording that cannot be audited is reported with a one-line error and the batch goes on; a
worker that dies (a crash in a native library) costs only the recording it was working on: the
recordings in flight with it are worked on again, one worker each.
"""
from __future__ import annotations

import contextlib
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.files import file_sha256
from audits.scripts import distinct_scripts, heard_with

if TYPE_CHECKING:  # the numeric stack loads in workers after their thread limits are set
    from app.core.audit import Context, Span
    from audits.data import Transcript

# What start_worker loaded, once per worker process: a LoadingEngine.
_worker_transcriber = None


@dataclass
class Task:
    """One recording to audit, with the caller context resolved beforehand (the database stays here)."""
    index: int  # position in the batch, to report in the order given
    path: Path
    context: Context
    call_sid: str | None = None


@dataclass
class Outcome:
    """A recording's audit (an AuditResult and the file's hash), a worker's part of it (a Survey and
    the hash, or the Transcripts of the plays asked for), or a one-line error."""
    index: int
    path: Path
    result: object = None
    sha256: str = ""
    error: str | None = None
    library_news: object = None  # audits.library.News: what this recording added to the library


@dataclass
class Survey:
    """Phase one in a worker: decode, segment and fingerprint one recording (pipeline.survey)."""
    index: int
    path: Path

    def run(self, transcriber) -> Outcome:
        from audits import pipeline
        from audits.spool import spool

        with spool(self.path) as recording:
            segments = pipeline.split(recording.audio, recording.levels_db)
            surveyed = pipeline.survey(recording.audio, segments)
        return Outcome(self.index, self.path, result=surveyed, sha256=file_sha256(self.path))


@dataclass
class Hear:
    """Phase two in a worker: the engine's Transcripts of some speech plays of one recording, cut from
    the recording decoded again (pipeline.transcribe_plays, as one process cuts and decodes them)."""
    index: int
    path: Path
    speech: list[Span]
    plays: list[int]
    prompt: str | None
    scripts: list[str] | None = None  # per play: heard with its script as the prompt instead
    firsts: list[Transcript] | None = None  # ... and the first hearings, to tell what the script adds

    def run(self, transcriber) -> Outcome:
        from audits import pipeline
        from audits.spool import spool

        with spool(self.path) as recording:
            if self.scripts is None:
                heard = pipeline.transcribe_plays(recording.audio, self.speech, self.plays, transcriber,
                                                  prompt=self.prompt)
            else:
                heard = pipeline.transcribe_with_scripts(recording.audio, self.speech, self.plays, self.scripts,
                                                         self.firsts, transcriber)
        return Outcome(self.index, self.path, result=heard)


def run_work(work, transcriber) -> Outcome:
    """Run a Survey or Hear; never raises: an error is the Outcome's, in one line naming the file."""
    try:
        return work.run(transcriber)
    except Exception as error:  # one bad file must not sink the batch
        return Outcome(work.index, work.path, error=one_line_error(work.path, error))


class Progress:

    """What the batch reports as it goes: a tqdm bar has these methods; this one only prints errors."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def write(self, text: str, file=None) -> None:
        print(text, file=file or sys.stderr)


def cpu_count() -> int:
    """Cores this process may use (the affinity mask, not the whole machine, where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_jobs(n_files: int) -> int:
    """One worker per file, at most one per core."""
    return max(1, min(n_files, cpu_count()))


def threads_per_worker(jobs: int) -> int:
    """Engine threads for each of `jobs` workers: the decoder's fixed count (audits.transcribe
    DECODER_THREADS), so a worker hears what a single run hears, on any machine."""
    from audits.transcribe import DECODER_THREADS

    return DECODER_THREADS


def thread_limits(threads: int) -> dict[str, str]:
    """The environment that caps a worker's numeric libraries at `threads`; it must be set before any
    of them loads (start_worker does it first; Ray sets it when it starts the worker process)."""
    return {variable: str(threads) for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def one_line_error(path: Path, error: Exception) -> str:
    """An exception as one line naming the file: AudioError and ContextError already are one."""
    from audits.audio import AudioError
    from audits.context import ContextError

    message = " ".join(str(error).split()) or type(error).__name__
    if not isinstance(error, (AudioError, ContextError)):
        message = f"{type(error).__name__}: {message}"
    return message if str(path) in message else f"{path}: {message}"


def audit_batch(files: list[Path], db, *, engine: str, model: str, context_file: Path | None = None,
                jobs: int = 1, progress: Progress | None = None,
                transcriber=None, runner=None, library: bool = True) -> tuple[list, list[tuple[str, str]]]:
    """Audit and store each file. Returns (results in the order of `files`, [(path, error)] failures).

    `transcriber` is used for jobs == 1 (loaded here with `engine`/`model` when not given);
    workers load their own. Contexts (--context file, sidecars, the webhook database) are resolved
    first, here; a bad one fails that file only. `runner(works, engine=, model=, progress=)`, when
    given, runs the workers' Survey and Hear works elsewhere and yields their Outcomes
    (audits.ray_batch.RayRunner); else `jobs` > 1 runs them in a WorkerPool. Either way every result
    is finished and stored here. `library` False: no message library, every recording is heard by
    the engine afresh (as before issue #12).
    """
    # Here, not at the top: sqlite_utils loads numpy, and workers import this module before
    # start_worker limits their threads.
    from audits import context as caller_context
    from audits import library as message_library

    progress = progress or Progress()
    catalog = caller_context.load_catalog(db)
    known = message_library.load(db, engine=engine, model=model) if library else None
    tasks, failures = [], {}
    for index, path in enumerate(files):
        try:
            resolved = caller_context.resolve(path, context_file, db)
        except Exception as error:  # a bad sidecar or database lookup fails this file only
            failures[index] = _report_failure(progress, path, one_line_error(path, error))
            continue
        tasks.append(Task(index, Path(path), resolved.context, resolved.call_sid))
    results = {}
    with contextlib.ExitStack() as stack:
        if not tasks:
            outcomes = iter(())
        elif runner is None and (jobs <= 1 or len(tasks) == 1):
            transcriber = transcriber or LoadingEngine(engine, model)
            outcomes = (_audit_task(task, transcriber, catalog, progress, known) for task in tasks)
        else:
            run = runner or stack.enter_context(WorkerPool(jobs))
            outcomes = _in_phases(tasks, run, known, catalog, engine=engine, model=model, progress=progress)
        _store(db, outcomes, tasks, known, progress, results, failures)
    return [results[i] for i in sorted(results)], [failures[i] for i in sorted(failures)]


def _store(db, outcomes, tasks: list[Task], known, progress: Progress, results: dict, failures: dict) -> None:
    """Store each audited recording and what it added to the library; report each failure."""
    from app.storage import audits as store
    from audits import library as message_library

    call_sids = {task.index: task.call_sid for task in tasks}
    for outcome in outcomes:
        if outcome.error is None:
            try:
                audit_id = store.save(db, outcome.result, sha256=outcome.sha256, call_sid=call_sids[outcome.index])
                if known is not None:
                    message_library.record(db, audit_id, outcome.result, outcome.library_news)
            except Exception as error:  # e.g. the database is locked: this file is not stored
                outcome.error = one_line_error(outcome.path, error)
        if outcome.error is None:
            results[outcome.index] = outcome.result
        else:
            failures[outcome.index] = _report_failure(progress, outcome.path, outcome.error)
        progress.set_postfix_str(f"{len(results)} done, {len(failures)} failed")
        progress.update(1)


class LoadingEngine:
    """A speech engine loading in a background thread while the first recording is decoded and
    segmented (one core reads audio, the other loads the model); `transcribe` waits for it once.
    A model that fails to load fails each recording with its one-line error."""

    def __init__(self, engine: str, model: str, threads: int | None = None):
        import threading
        from concurrent.futures import Future

        self._loaded: Future = Future()
        threading.Thread(target=self._load, args=(engine, model, threads), name="load-engine", daemon=True).start()

    def _load(self, engine: str, model: str, threads: int | None) -> None:
        from audits.transcribe import DECODER_THREADS, shared_engine

        try:
            self._loaded.set_result(shared_engine(engine, model, threads=threads or DECODER_THREADS))
        except BaseException as error:  # handed to whoever transcribes first
            self._loaded.set_exception(error)

    def transcribe(self, samples, start_s: float = 0.0, prompt: str | None = None):
        return self._loaded.result().transcribe(samples, start_s=start_s, prompt=prompt)

    def transcribe_many(self, clips, starts_s=None, prompt: str | None = None):
        return self._loaded.result().transcribe_many(clips, starts_s, prompt=prompt)

    def score(self, samples, texts: list[str]):
        return self._loaded.result().score(samples, texts)


def _report_failure(progress: Progress, path: Path, error: str) -> tuple[str, str]:
    progress.write(f"Error: {error}", file=sys.stderr)
    return str(path), error


def _audit_task(task: Task, transcriber, catalog: list, progress: Progress | None = None,
                library=None) -> Outcome:
    """Audit one recording in this process, with the message library if given; never raises."""
    from audits import pipeline

    name = task.path.name[-32:]
    on_segment = None
    if progress is not None:
        progress.set_postfix_str(name)
        on_segment = lambda done, total: progress.set_postfix_str(f"{name} speech {done}/{total}")  # noqa: E731
    try:
        result = pipeline.audit_file(task.path, task.context, transcriber, catalog, on_segment=on_segment,
                                     library=library)
        return Outcome(task.index, task.path, result=result, sha256=file_sha256(task.path),
                       library_news=library.take_news() if library is not None else None)
    except Exception as error:  # one bad file must not sink the batch; the error names it
        if library is not None:
            library.take_news()  # a failed audit adds nothing
        return Outcome(task.index, task.path, error=one_line_error(task.path, error))


# ---------------------------------------------------------------- the two phases, with workers

def _in_phases(tasks: list[Task], run, known, catalog: list, **options):
    """Outcomes of whole audits, worked on as the module's docstring says: failed surveys as they come,
    then every other recording in the order given. `run(works, **options)` yields the works' Outcomes
    (a WorkerPool or a RayRunner); `known` is the message library (None: each recording alone)."""
    from audits import pipeline
    from audits.library import Library
    from audits.transcribe import vocabulary_prompt

    by_index = {task.index: task for task in tasks}
    surveyed = yield from _surveys(tasks, run, **options)
    prompt = vocabulary_prompt(pipeline.known_product_names(None, catalog))
    scripts = distinct_scripts(catalog)
    plans = {index: pipeline.plan(surveyed[index].result, known if known is not None else Library(),
                                  heard_with(prompt, scripts),
                                  pipeline.known_product_names(by_index[index].context, catalog))
             for index in sorted(surveyed)}
    errors = _hear(plans, {index: task.path for index, task in by_index.items()}, prompt, scripts, run,
                   **options)
    for index, planned in plans.items():
        task = by_index[index]
        if index in errors:
            yield Outcome(index, task.path, error=errors[index])
        else:
            yield _finish(task, planned, surveyed[index].sha256, catalog, known)


def _surveys(tasks: list[Task], run, **options):
    """Phase one: every recording surveyed in the workers; yields the failures as they come and returns
    the other Outcomes by index."""
    surveyed = {}
    works = [Survey(task.index, task.path) for task in tasks]
    for done, outcome in enumerate(run(works, **options), start=1):
        options["progress"].set_postfix_str(f"surveyed {done}/{len(works)}")
        if outcome.error is None:
            surveyed[outcome.index] = outcome
        else:
            yield outcome
    return surveyed


def _hear(plans: dict, paths: dict[int, Path], prompt: str | None, scripts: list[str], run,
          **options) -> dict[int, str]:
    """Phase two: the hearing rounds over the plans in the order given (first hearings, script
    hearings, more hearings), each round's clips heard in the workers and taken in before the next
    round is asked. Returns the errors of the recordings whose clips could not be heard."""
    from audits import pipeline

    errors: dict[int, str] = {}

    def heard(name: str, asked_per_plan: list, take, with_scripts: bool = False) -> None:
        asked = dict(zip(plans, asked_per_plan))
        works = [Hear(index, paths[index], plans[index].survey.speech, [play for play, *_ in mine], prompt,
                      **({"scripts": [script for *_, script in mine], "firsts": pipeline.firsts(mine)}
                         if with_scripts else {}))
                 for index, mine in asked.items() if mine]
        for done, outcome in enumerate(run(works, **options) if works else (), start=1):
            options["progress"].set_postfix_str(f"{name} {done}/{len(works)}")
            if outcome.error is None:
                take(outcome.index, asked[outcome.index], outcome.result)
            else:
                errors.setdefault(outcome.index, outcome.error)

    in_order = list(plans.values())
    heard("first hearings", pipeline.first_hearings(in_order), lambda _, asked, result: pipeline.fill(asked, result))
    heard("script hearings", pipeline.script_hearings(in_order, scripts),
          lambda index, asked, result: pipeline.adopt_scripted(asked, result, plans[index].known_products),
          with_scripts=True)
    heard("more hearings", pipeline.more_hearings(in_order), lambda _, asked, result: pipeline.fill(asked, result))
    return errors


def _finish(task: Task, planned, sha256: str, catalog: list, known) -> Outcome:
    """A recording's audit from its Plan, once its hearings are filled (no audio needed)."""
    from audits import pipeline

    try:
        transcripts = pipeline.plan_transcripts(planned)
    except ValueError as error:  # another recording's engine run, which this one needed, failed
        return Outcome(task.index, task.path, error=f"{task.path}: {error}")
    surveyed = planned.survey
    result = pipeline.analyse(str(task.path), surveyed.duration_s, surveyed.segments, transcripts, task.context,
                              catalog, group_keys=planned.keys)
    if known is not None:
        known.learn(planned)
    return Outcome(task.index, task.path, result=result, sha256=sha256,
                   library_news=known.take_news() if known is not None else None)


class WorkerPool:
    """audit_batch's own runner: `jobs` worker processes kept for the whole batch (each loads the
    speech model once), started at the first call; called as audits.ray_batch.RayRunner is."""

    def __init__(self, jobs: int):
        self.jobs = jobs
        self._pool: ProcessPoolExecutor | None = None
        self._initargs: tuple | None = None

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __call__(self, works: list, *, engine: str, model: str, progress: Progress):
        """Outcomes of `works` as the workers finish them. Works lost to a dead worker run again, each
        in a pool of its own, so only the recording that kills its worker fails."""
        if self._initargs is None:
            from audits.transcribe import prepare_model

            prepare_model(engine, model)  # convert the checkpoint once, here, not in every worker
            self._initargs = (engine, model, threads_per_worker(self.jobs))
        if self._pool is None:
            self._pool = _process_pool(self.jobs, self._initargs)
        lost = yield from _run_on(self._pool, works)
        if not lost:
            return
        self.close()  # broken: the next call starts a new pool
        progress.write(f"an audit worker process died: auditing {len(lost)} recording(s) again, one worker each",
                       file=sys.stderr)
        for work in lost:
            with _process_pool(1, self._initargs) as alone:
                again = yield from _run_on(alone, [work])
            for dead in again:
                yield Outcome(dead.index, dead.path, error=f"{dead.path}: the audit worker process died while "
                                                           "auditing this recording")


def _process_pool(jobs: int, initargs: tuple) -> ProcessPoolExecutor:
    import multiprocessing

    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=start_worker, initargs=initargs)


def _run_on(pool: ProcessPoolExecutor, works: list):
    """Run works in a pool; yields Outcomes, returns the works whose worker died (with them in flight,
    or before they were sent: a pool whose idle worker died takes no more)."""
    futures, lost = {}, []
    for work in works:
        try:
            futures[pool.submit(work_in_worker, work)] = work
        except BrokenProcessPool:
            lost.append(work)
    for future in as_completed(futures):
        try:
            yield future.result()
        except BrokenProcessPool:
            lost.append(futures[future])
    return sorted(lost, key=lambda work: work.index)


def start_worker(engine: str, model: str, threads: int) -> None:
    """Worker initializer: thread limits before any numeric library loads, then the model, loading in
    the background while the worker surveys (a model that fails to load fails each Hear, in one line)."""
    global _worker_transcriber
    os.environ.update(thread_limits(threads))
    _worker_transcriber = LoadingEngine(engine, model, threads)


def work_in_worker(work) -> Outcome:
    """Run a Survey or Hear with what start_worker loaded in this process; never raises."""
    return run_work(work, _worker_transcriber)
