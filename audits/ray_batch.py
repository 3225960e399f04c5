"""Audit a batch on Ray: worker actors anywhere on a cluster, results stored here.

    with RayRunner(address=None, jobs=2) as runner:      # None: a local Ray, started now, stopped after
        results, failures = audit_batch(files, db, engine=engine, model=model, runner=runner)

Each worker is an actor (AuditWorker) that loads the speech model once, like a worker process of
audits.batch. This process reads each recording and sends its bytes with the task, so the
workers need no shared filesystem, only holdguard and its bundled model installed; each worker
keeps one recording in flight, so only as many recordings as there are workers are in memory.
Results come back as plain Outcomes and audits.batch stores them here, in the order they arrive,
as it does for its own workers. A task that fails in Ray (its worker died, its object was lost)
is audited again, on a new worker if its worker died, up to MAX_ATTEMPTS times; only then is the
recording reported as failed. A recording that cannot be audited (not audio, ...) is an ordinary
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

from audits.batch import (Outcome, Progress, Task, audit_in_worker, cpu_count, one_line_error, start_worker,
                          threads_per_worker, worker_args)

LOCAL = "local"  # Ray's own name for "start a new local instance"
MAX_ATTEMPTS = 3  # a recording whose task failed this often in Ray is reported, not tried again
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
    """A Ray actor: the speech model loaded once, then one recording at a time, sent as bytes."""

    def __init__(self, engine: str, model: str, threads: int, plain_catalog: list):
        start_worker(engine, model, threads, plain_catalog)

    def audit(self, task: Task, data: bytes) -> Outcome:
        """Audit `data` (the file at task.path on the driver) from a private copy; never raises."""
        with tempfile.TemporaryDirectory(prefix="holdguard-ray-") as folder:
            copy = Path(folder) / task.path.name  # the same name: the suffix tells the decoder the format
            copy.write_bytes(data)
            outcome = audit_in_worker(replace(task, path=copy))
        outcome.path = task.path
        if outcome.result is not None:
            outcome.result = replace(outcome.result, recording=str(task.path))
        if outcome.error is not None:
            outcome.error = outcome.error.replace(str(copy), str(task.path))
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

    def __call__(self, tasks: list[Task], *, engine: str, model: str, catalog: list,
                 progress: Progress | None = None):
        """Outcomes of `tasks` as the workers finish them."""
        import ray
        from ray.exceptions import RayActorError, RayError

        from audits.transcribe import prepare_model

        progress = progress or Progress()
        prepare_model(engine, model)  # a local Ray converts the checkpoint once, here
        n_actors = max(1, min(self.jobs or self.cpus, self.cpus, len(tasks)))
        threads = threads_per_worker(n_actors)
        thread_limits = {variable: str(threads) for variable in
                         ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        # Set when the worker process starts, before Ray or numpy load a numeric library.
        worker_class = ray.remote(AuditWorker).options(num_cpus=1, max_restarts=0,
                                                       runtime_env={"env_vars": thread_limits})
        args = worker_args(engine, model, threads, catalog)

        def new_worker():
            return worker_class.remote(*args)

        idle = [new_worker() for _ in range(n_actors)]
        waiting, running, failed_attempts = deque(tasks), {}, {}
        while waiting or running:
            while waiting and idle:
                task = waiting.popleft()
                try:
                    data = task.path.read_bytes()
                except OSError as error:
                    yield Outcome(task.index, task.path, error=one_line_error(task.path, error))
                    continue
                worker = idle.pop()
                running[worker.audit.remote(task, data)] = (task, worker)
            if not running:
                continue
            [done], _ = ray.wait(list(running), num_returns=1)
            task, worker = running.pop(done)
            try:
                outcome = ray.get(done)
            except RayError as error:
                if isinstance(error, RayActorError):  # the worker died with this recording in flight
                    ray.kill(worker)
                    worker, what = new_worker(), "its Ray worker died"
                else:
                    what = f"its Ray task failed ({type(error).__name__})"
                idle.append(worker)
                failed_attempts[task.index] = failed_attempts.get(task.index, 0) + 1
                if failed_attempts[task.index] < MAX_ATTEMPTS:
                    progress.write(f"{task.path}: {what}: auditing it again", file=sys.stderr)
                    waiting.appendleft(task)
                else:
                    yield Outcome(task.index, task.path, error=f"{task.path}: {what}, "
                                                               f"{MAX_ATTEMPTS} times: not audited")
                continue
            idle.append(worker)
            yield outcome
