"""The files a deployment keeps (instance/, its config.py, the database, the outbox) are for their owner only.

Checked with the umask most systems default to (022), under which a file made
without care is readable by every local user.
"""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, sign

from app import create_app
from app.delivery import deliver_due
from app.extensions import db


@pytest.fixture
def umask_022():
    """Run the test (and the commands it starts) under umask 022."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def clamor(*args, instance, shell_prefix=""):
    """Run the installed `clamor` command on ``instance``; ``shell_prefix`` runs first in the same shell (ulimit …)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLAMOR_")}
    environment["CLAMOR_INSTANCE_PATH"] = str(instance)
    command = [Path(sys.executable).parent / "clamor", *args]
    if shell_prefix:
        command = ["sh", "-c", f'{shell_prefix}; exec "$0" "$@"', *command]
    return subprocess.run(command, env=environment, cwd=ROOT, capture_output=True, text=True, timeout=120)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_clamor_init_makes_instance_config_and_database_private(tmp_path, umask_022):
    instance = tmp_path / "instance"
    result = clamor("init", instance=instance)
    assert result.returncode == 0, result.stderr
    assert mode(instance) == 0o700
    assert mode(instance / "config.py") == 0o600
    assert mode(instance / "clamor.sqlite3") == 0o600
    for path in instance.glob("clamor.sqlite3-*"):  # -wal, -shm if SQLite left them
        assert mode(path) == 0o600, path


@pytest.mark.slow
def test_an_existing_instance_folder_is_made_private(tmp_path, umask_022):
    # A checkout's instance/ comes from git with the umask's mode.
    instance = tmp_path / "instance"
    (instance / "campaigns").mkdir(parents=True)
    assert mode(instance) == 0o755
    assert clamor("init", instance=instance).returncode == 0
    assert mode(instance) == 0o700


@pytest.mark.slow
def test_config_py_is_never_readable_by_others_even_when_writing_it_fails(tmp_path, umask_022):
    # With no room to write (a file size limit of 0), the key cannot be
    # written: no config.py may be left behind readable by others or empty,
    # and the next `clamor init` writes the key.
    instance = tmp_path / "instance"
    failed = clamor("init", instance=instance, shell_prefix="ulimit -f 0")
    assert failed.returncode != 0
    config = instance / "config.py"
    assert not config.exists() or mode(config) == 0o600
    again = clamor("init", instance=instance)
    assert again.returncode == 0, again.stderr
    assert "SECRET_KEY = " in config.read_text()
    assert mode(config) == 0o600


@pytest.mark.slow
def test_signing_and_delivering_keep_database_journal_and_outbox_private(tmp_path, umask_022):
    instance = tmp_path / "instance"
    assert clamor("init", instance=instance).returncode == 0
    app = create_app({"TESTING": True, "DELIVERY_WORKER": "external", "FILL_TIME_MIN": 0}, instance_path=instance)
    assert app.config["DELIVERY"]["email"] == "outbox_files"
    assert sign(app.test_client()).status_code == 303
    with app.app_context():
        assert deliver_due() == 6  # five letters and the receipt
        # The pool holds a connection open, so SQLite's -wal and -shm exist now.
        journal = sorted(p.name for p in instance.glob("clamor.sqlite3-*"))
        assert journal == ["clamor.sqlite3-shm", "clamor.sqlite3-wal"]
        for name in journal:
            assert mode(instance / name) == 0o600, name
    outbox = instance / "outbox"
    assert mode(outbox) == 0o700
    letters = list(outbox.glob("*.eml"))
    assert len(letters) == 6
    assert {mode(letter) for letter in letters} == {0o600}
    with app.app_context():
        db.engine.dispose()
