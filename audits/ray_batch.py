"""Audit a batch on Ray: worker actors anywhere on a cluster, results stored here.

    with RayRunner(address=None, jobs=2) as runner:      # None: a local Ray, started now, stopped after
        results, failures = audit_batch(files, db, engine=engine, model=model, runner=runner)

Each worker is an actor (AuditWorker) that loads the speech model once, like a worker process of
audits.batch, and is kept for the whole batch. It does the workers' part of audits.batch's two
phases: it surveys recordings (decode, segment, fingerprint), then hears the clips this process
chose, from the recording decoded again. This process reads the recording and sends its bytes with
each work, so the workers need no shared filesystem, only holdguard and its bundled model installed;
each worker has at most IN_FLIGHT_PER_WORKER recordings in flight, so only that many per worker are in
memory. Results come back as plain Outcomes; audits.batch matches recordings against the message
library, finishes their audits and stores them here, in the order given, as for its own workers, so
the reports and rows are those of one process. A work that fails in Ray (its worker died, its object
was lost) is done again, on a new worker if its worker died, up to MAX_ATTEMPTS times; only then is
the recording reported as failed. A recording that cannot be audited (not audio, ...) is an ordinary
Outcome with its error, not retried.

A local Ray runs with no dashboard and no usage report: nothing is fetched or sent at run time.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import tempfile
from collections import deque
from dataclasses import replace
from pathlib import Path

from audits.batch import (Outcome, Progress, cpu_count, one_line_error, start_worker, thread_limits,
                          threads_per_worker, work_in_worker)

LOCAL = "local"  # Ray's own name for "start a new local instance"
MAX_ATTEMPTS = 3  # a recording whose task failed this often in Ray is reported, not tried again
# Works sent to a worker before it finishes the one in hand: the next recording's bytes travel while it
# works, so it never waits for this process. With one, the 100-recording fleet bench left a fifth of
# the CPU idle and took 1.35x the process pool's time.
IN_FLIGHT_PER_WORKER = 2
CONNECT_TIMEOUT_S = 5.0


class RayUnavailable(Exception):
    """Ray could not be started or reached (one line, for the CLI to show)."""


def _check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast on a cluster address that does not answer: ray.init retries one for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        return  # "auto", or a form Ray checks itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise RayUnavailable(f"Ray at {address}: cannot connect ({error.strerror or error})") from None


class AuditWorker:
    """A Ray actor: the speech model loaded once, then one recording's work at a time, sent as bytes."""

    def __init__(self, engine: str, model: str, threads: int):
        start_worker(engine, model, threads)

    def audit(self, work, data: bytes) -> Outcome:
        """Do `work` (an audits.batch Survey or Hear of the file at work.path on the driver) on a private
        copy of `data`; never raises."""
        with tempfile.TemporaryDirectory(prefix="holdguard-ray-") as folder:
            copy = Path(folder) / work.path.name  # the same name: the suffix tells the decoder the format
            copy.write_bytes(data)
            outcome = work_in_worker(replace(work, path=copy))
        outcome.path = work.path
        if outcome.error is not None:
            outcome.error = outcome.error.replace(str(copy), str(work.path))
        return outcome


class RayRunner:
    """Ray for one batch: a local instance started on entry and stopped on exit, or a cluster joined
    at `address` ("host:port", "ray://host:port", "auto") and left running. Call it as
    audits.batch.audit_batch's `runner`. `jobs` is the number of worker actors (default: one per
    CPU of the cluster, never more than it has)."""

    def __init__(self, address: str | None = None, jobs: int | None = None):
        self.address = address or LOCAL
        self.jobs = jobs
        self.cpus = 0
        self._started = False
        self._idle: list = []  # the batch's worker actors, between calls
        self._new_worker = None

    def __enter__(self) -> "RayRunner":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> "RayRunner":
        """Start the local Ray or join the cluster; raises RayUnavailable with a one-line reason."""
        try:
            import ray
        except ImportError:
            raise RayUnavailable("Ray is not installed: pip install -e '.[ray]' (holdguard's ray extra)") from None

        if self.address == LOCAL:
            # A local instance needs as many CPUs as actors, or the extra actors wait for ever.
            os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # Ray would report usage over the network
            options = dict(num_cpus=max(cpu_count(), self.jobs or 1), include_dashboard=False)
        else:
            options = {}
            _check_reachable(self.address)
        # Ray prints what its raylets report ("A worker died...") on stdout, from a thread, while it runs;
        # stdout is the report's (JSON into a pipe), so it goes to stderr until Ray is stopped.
        self._stdout = contextlib.redirect_stdout(sys.stderr)
        self._stdout.__enter__()
        try:
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR, **options)
        except Exception as error:  # ConnectionError, a bad address, a port in use: say it in one line
            self._stdout.__exit__(None, None, None)
            raise RayUnavailable(f"Ray at {self.address}: {' '.join(str(error).split())}") from None
        self._started = True
        self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        return self

    def stop(self) -> None:
        import ray

        if self._started:  # stops a local instance; only disconnects from a cluster
            try:
                ray.shutdown()
            finally:
                self._stdout.__exit__(None, None, None)
                self._started = False
                self._idle, self._new_worker = [], None

    def __call__(self, works: list, *, engine: str, model: str, progress: Progress | None = None):
        """Outcomes of `works` (audits.batch Survey or Hear) as the workers finish them."""
        import ray
        from ray.exceptions import RayActorError, RayError

        progress = progress or Progress()
        load = {worker: 0 for worker in self._workers(engine, model, len(works))}  # works in flight each
        waiting, running, failed_attempts = deque(works), {}, {}
        try:
            while waiting or running:
                for worker in list(load):
                    while waiting and load[worker] < IN_FLIGHT_PER_WORKER:
                        work = waiting.popleft()
                        try:
                            data = work.path.read_bytes()
                        except OSError as error:
                            yield Outcome(work.index, work.path, error=one_line_error(work.path, error))
                            continue
                        running[worker.audit.remote(work, data)] = (work, worker)
                        load[worker] += 1
                if not running:
                    continue
                [done], _ = ray.wait(list(running), num_returns=1)
                work, worker = running.pop(done)
                try:
                    outcome = ray.get(done)
                except RayError as error:
                    if isinstance(error, RayActorError):  # the worker died with this recording in flight
                        self._replace(load, worker)
                        what = "its Ray worker died"
                    else:
                        load[worker] -= 1
                        what = f"its Ray task failed ({type(error).__name__})"
                    failed_attempts[work.index] = failed_attempts.get(work.index, 0) + 1
                    if failed_attempts[work.index] < MAX_ATTEMPTS:
                        progress.write(f"{work.path}: {what}: auditing it again", file=sys.stderr)
                        waiting.appendleft(work)
                    else:
                        yield Outcome(work.index, work.path, error=f"{work.path}: {what}, "
                                                                   f"{MAX_ATTEMPTS} times: not audited")
                    continue
                load[worker] -= 1
                yield outcome
        finally:
            self._idle = list(load)  # kept for the batch's next call (its hearings)

    def _replace(self, load: dict, dead) -> None:
        """A new worker in place of a dead one (once: its other works in flight fail too)."""
        import ray

        if dead in load:
            ray.kill(dead)
            del load[dead]
            load[self._new_worker()] = 0

    def _workers(self, engine: str, model: str, n_works: int) -> list:
        """The batch's idle worker actors, started at the first call: one per work, at most `jobs` and
        the cluster's CPUs. They are kept for the batch's next call (its hearings)."""
        import ray

        from audits.transcribe import prepare_model

        if self._new_worker is None:
            prepare_model(engine, model)  # a local Ray converts the checkpoint once, here
            n_actors = max(1, min(self.jobs or self.cpus, self.cpus, n_works))
            threads = threads_per_worker(n_actors)
            # Set when the worker process starts, before Ray or numpy load a numeric library.
            worker_class = ray.remote(AuditWorker).options(num_cpus=1, max_restarts=0,
                                                           runtime_env={"env_vars": thread_limits(threads)})
            self._new_worker = lambda: worker_class.remote(engine, model, threads)
            self._idle = [self._new_worker() for _ in range(n_actors)]
        return self._idle
