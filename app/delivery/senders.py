"""The connections a batch is sent over: a thread each, or with one connection the batch's own thread."""

import logging
import queue
import threading
import time
from concurrent import futures

from flask import Flask

from .contract import Letter, Receipt
from .queue import _Presence

# One logger for the whole package, named as before it was one.
log = logging.getLogger("app.delivery")


class _Unchecked(Exception):
    """A letter a connection did not send: its row was last read too long ago (it may have been deleted since)."""


def _backend(backends, state, config, name):
    """The batch's instance of backend ``name`` in ``backends``, made on first use."""
    backend = backends.get(name)
    if backend is None:
        backend = backends[name] = state.backends[name](config)
    return backend


def _close_backends(backends):
    for backend in backends.values():
        try:
            backend.close()
        except Exception:
            log.exception("closing delivery backend %s failed", backend.name)


def _send_one(app, backends, outcome, name, letter, checked_at):
    """Send ``letter`` with backend ``name``'s instance in ``backends``; its Receipt or error goes to ``outcome``."""
    try:
        if time.monotonic() - checked_at > _Presence.FRESH:
            # Queued behind a slow letter: its row is read again first.
            raise _Unchecked
        outcome.set_result(_backend(backends, app.extensions["clamor"], app.config, name).send(letter))
    except BaseException as exc:  # handed to the batch's thread, which decides
        outcome.set_exception(exc)


class _Senders:
    """``connections`` threads, each with backends of its own (so an SMTP connection of its own).

    With one connection there is no thread: the batch's thread sends each
    letter itself. A sending thread beside it overlapped nothing worth the
    cost: the two took turns at the interpreter's lock on every reply of the
    server, and into a fast local relay a letter took twice as long.

    ``send(backend name, letter)`` hands a finished letter to whichever thread
    is free and returns a Future of its Receipt. The threads only send: they
    never touch the database, whose session belongs to the batch's thread.
    Each runs in an app context of its own (fax_email looks up its email backend).
    """

    def __init__(self, app: Flask, connections: int) -> None:
        self.app = app
        self.jobs = queue.SimpleQueue()
        #: The backends of the batch's own thread (one connection).
        self.backends = {}
        self.threads = [
            threading.Thread(target=self._run, name=f"clamor-send-{n}", daemon=True)
            for n in range(connections)
        ] if connections > 1 else []
        for thread in self.threads:
            thread.start()

    def _run(self):
        backends = {}
        with self.app.app_context():
            try:
                while (job := self.jobs.get()) is not None:
                    _send_one(self.app, backends, *job)
            finally:
                _close_backends(backends)

    def send(self, name: str, letter: Letter, checked_at: float) -> "futures.Future[Receipt]":
        """Send or queue ``letter`` for backend ``name``; ``checked_at``: its row's last read (time.monotonic)."""
        outcome = futures.Future()
        if self.threads:
            self.jobs.put((outcome, name, letter, checked_at))
        else:
            _send_one(self.app, self.backends, outcome, name, letter, checked_at)
        return outcome

    def close(self) -> None:
        """Let every thread finish what it was given, close every backend, and stop."""
        for _thread in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join()
        _close_backends(self.backends)
