"""A throwaway PostgreSQL cluster on 127.0.0.1, made with Debian's binaries: for the tests and the benchmarks."""

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def postgres_bin():
    """The folder of the newest installed PostgreSQL's programs, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _unused_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A fresh cluster (initdb), not yet started. As root it runs as ``postgres``: initdb refuses root.

    Not under pytest's tmp folder: that one is private to root, and the
    cluster's owner must be able to reach its files.
    """

    def __init__(self, bindir, prefix="clamor-pg-", settings=()):
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix=prefix))
        self.data, self.sockets = self.base / "data", self.base / "sock"
        self.sockets.mkdir()
        self.as_user = []
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
            shutil.chown(self.sockets, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.port = _unused_port()
        self.options = " ".join([f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off",
                                 *(f"-c {setting}" for setting in settings)])
        self._run("initdb", "-D", self.data, "-U", "clamor", "--auth=trust", "-E", "UTF8", "--no-sync")

    def _run(self, program, *args, check=True):
        subprocess.run([*self.as_user, self.bindir / program, *args], check=check, capture_output=True)

    def start(self):
        self._run("pg_ctl", "-D", self.data, "-l", self.base / "log", "-w", "-o", self.options, "start")

    def stop(self):
        """A clean, fast shutdown (what an operator's restart does)."""
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def create_database(self, name):
        """Create database ``name`` and return its SQLAlchemy URI."""
        subprocess.run([self.bindir / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "clamor", name],
                       check=True, capture_output=True)
        return f"postgresql+psycopg://clamor@127.0.0.1:{self.port}/{name}"

    def destroy(self):
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.base, ignore_errors=True)
