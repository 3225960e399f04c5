"""A private PostgreSQL server for the test run: initdb in a temporary folder, a free loopback port,
stopped at exit. Debian's `postgresql` package provides the binaries (`.ci/run` installs it).

PostgreSQL refuses to run as root: as root the server runs as the `postgres` user the package
creates. Durability is switched off (fsync, synchronous_commit): a test database need not survive
a power cut, and tests run several times faster.
"""
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

USER = "holdguard"


def find_binary(name: str) -> str | None:
    """Debian keeps the server binaries in /usr/lib/postgresql/<version>/bin, off the PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else shutil.which(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="holdguard-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.process = None
        # As root, run as the package's `postgres` user (Popen switches user before exec).
        self.as_user = {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}

    def start(self) -> "PostgresServer":
        initdb = find_binary("initdb")
        if not (initdb and find_binary("postgres")):
            raise RuntimeError("PostgreSQL server binaries not found: install Debian's postgresql package")
        if self.as_user:
            shutil.chown(self.folder, "postgres", "postgres")
        subprocess.run([initdb, "-D", str(self.data), "-U", USER, "-A", "trust", "-E", "UTF8", "--locale=C",
                        "--no-sync"], check=True, capture_output=True, **self.as_user)
        self._launch()
        return self

    def _launch(self) -> None:
        self.log = open(self.folder / "server.log", "ab")
        self.process = subprocess.Popen(
            [find_binary("postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.folder),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=300"],
            stdout=self.log, stderr=subprocess.STDOUT, **self.as_user)
        self.wait_ready()

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=1):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or (self.process and self.process.poll() is not None):
                    raise RuntimeError(f"PostgreSQL did not start: {(self.folder / 'server.log').read_text()}")
                time.sleep(0.1)

    def url(self, dbname: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def admin(self, sql: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str, template: str | None = None) -> str:
        self.admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop_server(self) -> None:
        """Stop the server (fast shutdown: SIGINT), keeping its data: `start_again()` brings it back."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=30)
        self.log.close()

    def start_again(self) -> None:
        self._launch()

    def stop(self) -> None:
        self.stop_server()
        shutil.rmtree(self.folder, ignore_errors=True)
