"""Audit many recordings at once, on every core.

    results, failures = audit_batch(files, db, engine="faster-whisper", jobs=2, progress=bar)

With `jobs` > 1 each recording is audited in a worker process (ProcessPoolExecutor,
"spawn": no OpenMP or onnxruntime threads are forked). Each worker loads the
speech model once, in its initializer, and audits one recording at a time; its
speech engine has the decoder's fixed thread count (audits.transcribe.DECODER_THREADS,
the same as a single run's): parallelism comes from the workers, one per core.
Workers return plain AuditResults; this process resolves each caller's context
beforehand and stores every result itself (SQLite has one writer), as soon as it arrives. A recording that cannot be
audited is reported with a one-line error and the batch goes on; a worker that
dies (a crash in a native library) costs only the recording it was auditing:
the recordings in flight with it are audited again, one worker each.

With `jobs` == 1 everything runs in this process (what tests and one-file audits do).

The message library (audits.library) is read at the start: speech heard in earlier audits is not
heard again. In this process it learns as it goes; each task also carries the library as this
process knows it when the task is made, so a worker (process or Ray actor) learns what others found
before its task was sent, and what it finds itself. Each recording's news comes back with its
result and is stored with it here; a message two workers found at once becomes one entry.
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.files import file_sha256
from audits.classify import CatalogMessage

if TYPE_CHECKING:  # the numeric stack loads in workers after their thread limits are set
    from app.core.audit import AuditResult, Context

# What start_worker loaded, once per worker process.
_worker_transcriber = None
_worker_library = None
_worker_catalog: list = []
_worker_error: str | None = None


@dataclass
class Task:
    """One recording to audit, with the caller context resolved beforehand (the database stays here)."""
    index: int  # position in the batch, to report in the order given
    path: Path
    context: Context
    call_sid: str | None = None
    library: tuple | None = None  # audits.library.Entry: the batch's library when the task was made (workers)


@dataclass
class Outcome:
    """What a worker sends back: a result and the file's hash, or a one-line error."""
    index: int
    path: Path
    result: AuditResult | None = None
    sha256: str = ""
    error: str | None = None
    library_news: object = None  # audits.library.News: what this recording added to the library


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
    first, here; a bad one fails that file only. `runner(tasks, engine=, model=, catalog=, progress=)`,
    when given, audits the tasks elsewhere and yields their Outcomes (audits.ray_batch.RayRunner):
    every result is still stored here. `library` False: no message library, every message is heard
    by the engine again (as before issue #12).
    """
    # Here, not at the top: sqlite_utils loads numpy, and workers import this module before
    # start_worker limits their threads.
    from app.storage import audits as store
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
    in_process = runner is None and (jobs <= 1 or len(tasks) == 1)
    _share(tasks, known, in_process)
    if not tasks:
        outcomes = iter(())
    elif runner is not None:
        outcomes = runner(tasks, engine=engine, model=model, catalog=catalog, progress=progress)
    elif in_process:
        transcriber = transcriber or LoadingEngine(engine, model)
        outcomes = (_audit_task(task, transcriber, catalog, progress, known) for task in tasks)
    else:
        outcomes = _in_workers(tasks, jobs, engine, model, catalog, progress)
    call_sids = {task.index: task.call_sid for task in tasks}
    results = {}
    for outcome in outcomes:
        if outcome.error is None:
            try:
                audit_id = store.save(db, outcome.result, sha256=outcome.sha256, call_sid=call_sids[outcome.index])
                if known is not None and outcome.library_news is not None:
                    message_library.record(db, audit_id, outcome.result, known.absorb(outcome.library_news))
                    _share(tasks, known, in_process)
            except Exception as error:  # e.g. the database is locked: this file is not stored
                outcome.error = one_line_error(outcome.path, error)
        if outcome.error is None:
            results[outcome.index] = outcome.result
        else:
            failures[outcome.index] = _report_failure(progress, outcome.path, outcome.error)
        progress.set_postfix_str(f"{len(results)} done, {len(failures)} failed")
        progress.update(1)
    return [results[i] for i in sorted(results)], [failures[i] for i in sorted(failures)]


def _share(tasks: list[Task], known, in_process: bool) -> None:
    """Give the tasks not yet sent to a worker the library as it is now (one tuple for all; a task
    already sent keeps what it had). In this process the audits use the library itself."""
    if known is not None and not in_process:
        entries = tuple(known.entries)
        for task in tasks:
            task.library = entries


class LoadingEngine:
    """A speech engine loading in a background thread while the first recording is decoded and
    segmented (one core reads audio, the other loads the model); `transcribe` waits for it once.
    A model that fails to load fails each recording with its one-line error."""

    def __init__(self, engine: str, model: str):
        import threading
        from concurrent.futures import Future

        self._loaded: Future = Future()
        threading.Thread(target=self._load, args=(engine, model), name="load-engine", daemon=True).start()

    def _load(self, engine: str, model: str) -> None:
        from audits.transcribe import shared_engine

        try:
            self._loaded.set_result(shared_engine(engine, model))
        except BaseException as error:  # handed to whoever transcribes first
            self._loaded.set_exception(error)

    def transcribe(self, samples, start_s: float = 0.0, prompt: str | None = None):
        return self._loaded.result().transcribe(samples, start_s=start_s, prompt=prompt)

    def transcribe_many(self, clips, starts_s=None, prompt: str | None = None):
        return self._loaded.result().transcribe_many(clips, starts_s, prompt=prompt)


def _report_failure(progress: Progress, path: Path, error: str) -> tuple[str, str]:
    progress.write(f"Error: {error}", file=sys.stderr)
    return str(path), error


def _audit_task(task: Task, transcriber, catalog: list, progress: Progress | None = None,
                library=None) -> Outcome:
    """Audit one recording (in this process or a worker) with the message library if given; never raises."""
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


# ---------------------------------------------------------------- worker processes

def _in_workers(tasks: list[Task], jobs: int, engine: str, model: str, catalog: list, progress: Progress):
    """Outcomes as workers finish them. Tasks lost to a dead worker run again, each in a pool of its own,
    so only the recording that kills its worker fails."""
    from audits.transcribe import prepare_model

    prepare_model(engine, model)  # convert the checkpoint once, here, not in every worker
    initargs = worker_args(engine, model, threads_per_worker(jobs), catalog)
    lost = yield from _run_pool(tasks, jobs, initargs)
    if lost:
        progress.write(f"an audit worker process died: auditing {len(lost)} recording(s) again, one worker each",
                       file=sys.stderr)
    for task in lost:
        again = yield from _run_pool([task], 1, initargs)
        for dead in again:
            yield Outcome(dead.index, dead.path, error=f"{dead.path}: the audit worker process died while "
                                                       "auditing this recording")


def _run_pool(tasks: list[Task], jobs: int, initargs: tuple):
    """Run tasks in a fresh pool; yields Outcomes, returns the tasks whose worker died."""
    import multiprocessing

    lost = []
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=start_worker, initargs=initargs) as pool:
        futures = {pool.submit(audit_in_worker, task): task for task in tasks}
        for future in as_completed(futures):
            try:
                yield future.result()
            except BrokenProcessPool:
                lost.append(futures[future])
    return sorted(lost, key=lambda task: task.index)


def worker_args(engine: str, model: str, threads: int, catalog: list) -> tuple:
    """start_worker's arguments, plain data (the catalog as tuples) to send to another process."""
    return engine, model, threads, [(entry.text, tuple(entry.products)) for entry in catalog]


def start_worker(engine: str, model: str, threads: int, plain_catalog: list) -> None:
    """Worker initializer: thread limits before any numeric library loads, then the model, once.
    A model that fails to load is reported for each recording (an initializer that raises would
    only say that the pool broke)."""
    global _worker_transcriber, _worker_catalog, _worker_error, _worker_library
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)
    from audits.library import Library
    from audits.transcribe import load_engine

    _worker_library = Library(engine=engine, model=model)
    _worker_catalog = [CatalogMessage(text, products) for text, products in plain_catalog]
    try:
        _worker_transcriber = load_engine(engine, model, threads=threads)
    except Exception as error:
        _worker_error = " ".join(str(error).split()) or type(error).__name__


def audit_in_worker(task: Task) -> Outcome:
    """Audit one recording with what start_worker loaded in this process; never raises."""
    if _worker_error is not None:
        return Outcome(task.index, task.path, error=f"{task.path}: the speech engine did not load: {_worker_error}")
    library = None
    if task.library is not None:
        _worker_library.add(task.library)
        library = _worker_library
    return _audit_task(task, _worker_transcriber, _worker_catalog, library=library)
