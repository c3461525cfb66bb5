"""How fast does ``clamor deliver`` send? Letters per second against a raw smtplib loop.

    .venv/bin/python bench/delivery.py [--letters 1000] [--repeats 2]

Builds a throwaway instance (SQLite, the example campaign or another with
email targets only, an ``instance/config.py`` sending email with ``smtp``
and otherwise the defaults), queues N letters
with ``queue_deliveries`` as signing does (not timed), and starts an aiosmtpd
sink on 127.0.0.1 that only counts what it accepts. Then, in the same run and
into the same sink, best of a few repeats each:

- raw smtplib: one ``smtplib.SMTP`` connection; for each letter, an
  ``EmailMessage`` built with the standard library from the letter's strings
  (the very letters Clamor sends, so the same headers, body and size), then
  ``send_message``. Two figures from the same loop: *build + send*, what a
  script sending N personal letters must do, and *send only*, the transport
  alone with message building left out.
- Clamor: ``clamor deliver --once`` as a subprocess, timed from start to
  exit: Python start-up, imports, ``create_app``, claiming, building each
  letter and its email, SMTP, committing each outcome, closing. The same
  command with nothing due is timed too, so the start-up share is visible.

The sink runs in a process of its own: in the benchmark's process it would
share the GIL with the raw loop but not with Clamor, flattering Clamor. After
each phase the sink must have received exactly N messages and every letter
must be marked sent, or the benchmark stops with an error. Timings are
printed, never asserted.

The start-up (about two seconds here) is paid once by the long-running
``clamor deliver`` service and once per run by ``--once``, so the ratio from
start to exit grows with N; both ratios are printed. The default 1000 letters
take about two minutes; ``--letters 2000 --repeats 3`` about four.
"""

import argparse
import logging
import multiprocessing
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import func, select, update  # noqa: E402

from app import create_app  # noqa: E402
from app.delivery import build_letter, queue_deliveries  # noqa: E402
from app.extensions import db  # noqa: E402
from app.models import Delivery, Signature, utcnow  # noqa: E402

CLAMOR = ROOT / ".venv" / "bin" / "clamor"
TARGET_RATIO = 0.7


# -- the sink -------------------------------------------------------------------------------------

class CountingHandler:
    """aiosmtpd handler that keeps nothing: how many messages, how many bytes."""

    def __init__(self, count, size):
        self.count = count
        self.size = size

    async def handle_DATA(self, server, session, envelope):
        with self.count.get_lock():
            self.count.value += 1
            self.size.value += len(envelope.original_content)
        return "250 OK queued"


def run_sink(port, count, size, ready, stop):
    from aiosmtpd.controller import Controller

    controller = Controller(CountingHandler(count, size), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


class Sink:
    """An aiosmtpd Controller in a child process; ``take()`` reads and resets its counters."""

    def __init__(self):
        # Forked before the benchmark starts any thread (call it first).
        context = multiprocessing.get_context("fork")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.count = context.Value("q", 0)
        self.size = context.Value("q", 0)
        self._stop = context.Event()
        ready = context.Event()
        self.process = context.Process(
            target=run_sink, args=(self.port, self.count, self.size, ready, self._stop), daemon=True
        )
        self.process.start()
        if not ready.wait(60):
            raise SystemExit("the aiosmtpd sink did not start")

    def take(self):
        """(messages, bytes) received since the last call."""
        with self.count.get_lock():
            taken = self.count.value, self.size.value
            self.count.value = self.size.value = 0
        return taken

    def close(self):
        self._stop.set()
        self.process.join(10)


# -- the instance ---------------------------------------------------------------------------------

def make_instance(folder, campaign_file, port, letters):
    """An instance folder as `clamor init` leaves it, set to send through the sink."""
    instance = folder / "instance"
    (instance / "campaigns").mkdir(parents=True)
    shutil.copy(campaign_file, instance / "campaigns")
    # Defaults everywhere else (batch size, logging at INFO). The hourly cap
    # stays on, so its counting runs, but above N, so no letter waits.
    (instance / "config.py").write_text(
        "SECRET_KEY = 'bench'\n"
        f"SQLALCHEMY_DATABASE_URI = {'sqlite:///' + str(folder / 'bench.sqlite3')!r}\n"
        "DELIVERY_WORKER = 'external'\n"
        "DELIVERY = {'email': 'smtp', 'fax': 'fax_email'}\n"
        "SENDER_ADDRESS = 'campaigns@clamor.test'\n"
        f"SMTP_HOST = '127.0.0.1'\nSMTP_PORT = {port}\n"
        f"TARGET_HOURLY_CAP = {letters + 1}\n"
    )
    app = create_app(instance_path=instance)
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
    return instance, app


def queue_letters(app, letters):
    """Queue ``letters`` letters as signing does: a Signature with one Delivery per target."""
    with app.app_context():
        campaign = app.extensions["clamor"].default_campaign()
        targets = len(campaign.targets)
        text = campaign.text(campaign.default_language)
        for i in range(-(-letters // targets)):
            signature = Signature(
                campaign=campaign.slug, name=f"Supporter Number {i}", email=f"supporter{i}@example.org",
                organisation="Example Workers' Union", country="FR", language=campaign.default_language,
                message=text.letter.strip(), status="accepted",
            )
            queue_deliveries(signature, campaign, app.config)
            db.session.add(signature)
        db.session.flush()
        # The last supporter's letters beyond N are dropped.
        for delivery in db.session.scalars(select(Delivery).order_by(Delivery.id.desc()).limit(-letters % targets)):
            db.session.delete(delivery)
        db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(Delivery)) == letters


def requeue(app):
    """Make every letter pending and due again, as if never tried."""
    with app.app_context():
        db.session.execute(update(Delivery).values(
            status="pending", attempts=0, next_attempt_at=utcnow(), lease_until=None,
            sent_at=None, provider_id="", last_error="", backend=""))
        db.session.commit()


def queued_letters(app):
    """Every queued letter, as Clamor builds it (plain strings)."""
    with app.app_context():
        campaign = app.extensions["clamor"].default_campaign()
        deliveries = db.session.scalars(select(Delivery).order_by(Delivery.id)).all()
        letters = [build_letter(delivery, campaign, app.config) for delivery in deliveries]
        db.session.remove()
    return letters


# -- the phases -----------------------------------------------------------------------------------

def raw_email(letter):
    """The email a hand-written smtplib script would build from the letter's strings."""
    msg = EmailMessage()
    msg["From"] = Address(display_name=letter.from_name, addr_spec=letter.from_address)
    msg["Reply-To"] = Address(display_name=letter.reply_to_name, addr_spec=letter.reply_to_address)
    msg["To"] = Address(display_name=letter.to_name, addr_spec=letter.to_address)
    msg["Subject"] = letter.subject
    msg["Date"] = format_datetime(letter.date.replace(tzinfo=UTC))
    msg["Message-ID"] = letter.message_id
    msg.set_content(letter.body)
    msg["Content-Language"] = letter.language
    return msg


def raw_smtplib(port, letters):
    """(seconds for build + send, seconds for send only) over one smtplib connection."""
    building = 0.0
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as connection:
        for letter in letters:
            before = time.perf_counter()
            message = raw_email(letter)
            building += time.perf_counter() - before
            connection.send_message(message, from_addr=letter.from_address, to_addrs=[letter.to_address])
    total = time.perf_counter() - started
    return total, total - building


def clamor_deliver(instance):
    """Seconds for `clamor deliver --once`, start to exit, and what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAMOR_")}
    env["CLAMOR_INSTANCE_PATH"] = str(instance)
    started = time.perf_counter()
    done = subprocess.run([str(CLAMOR), "deliver", "--once"], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"clamor deliver failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return seconds, done.stdout.strip()


def check_sink(sink, expected, phase):
    """Average message size; stops the benchmark unless exactly ``expected`` arrived."""
    received, size = sink.take()
    if received != expected:
        raise SystemExit(f"{phase}: the sink received {received} messages, expected exactly {expected}")
    return size / max(received, 1)


def check_sent(app, n, output):
    with app.app_context():
        sent = db.session.scalar(select(func.count()).where(Delivery.status == "sent"))
        db.session.remove()
    if sent != n or output != f"{n} deliveries attempted":
        raise SystemExit(f"clamor deliver: {sent} of {n} letters marked sent; it printed {output!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2, choices=range(1, 100), metavar="R",
                        help="best of this many runs of each phase")
    parser.add_argument("--campaign", type=Path,
                        default=next((ROOT / "instance" / "campaigns").glob("*.toml"), None))
    args = parser.parse_args()
    if not CLAMOR.exists():
        raise SystemExit(f"{CLAMOR} is missing: run `make install` first")
    logging.basicConfig(level=logging.WARNING)
    n = args.letters
    raw_times, send_times, clamor_times, idle_times = [], [], [], []
    sink = Sink()
    try:
        with tempfile.TemporaryDirectory(prefix="clamor-bench-") as tmp:
            instance, app = make_instance(Path(tmp), args.campaign, sink.port, n)
            queue_letters(app, n)
            letters = queued_letters(app)
            # The raw loop's emails are byte for byte the ones Clamor sends.
            if raw_email(letters[0]).as_bytes() != letters[0].as_email().as_bytes():
                raise SystemExit("the raw loop's email differs from Clamor's")
            for _ in range(args.repeats):
                total, send_only = raw_smtplib(sink.port, letters)
                raw_times.append(total)
                send_times.append(send_only)
                raw_size = check_sink(sink, n, "raw smtplib")
                seconds, output = clamor_deliver(instance)
                clamor_times.append(seconds)
                clamor_size = check_sink(sink, n, "clamor deliver")
                check_sent(app, n, output)
                requeue(app)
            # The same command with nothing due: start-up, create_app, one empty claim.
            with app.app_context():
                db.session.execute(update(Delivery).values(status="sent"))
                db.session.commit()
                db.session.remove()
            for _ in range(args.repeats):
                seconds, output = clamor_deliver(instance)
                idle_times.append(seconds)
                check_sink(sink, 0, "clamor deliver with nothing due")
            with app.app_context():
                db.engine.dispose()
    finally:
        sink.close()

    raw, send, clamor, idle = min(raw_times), min(send_times), min(clamor_times), min(idle_times)
    work = clamor - idle

    def row(label, seconds):
        print(f"  {label:<48} {seconds:7.2f} s {n / seconds:7.0f} letters/s")

    print(f"{n} letters ({args.campaign.stem}), aiosmtpd on 127.0.0.1 in its own process, best of {args.repeats}; "
          f"{raw_size:.0f} bytes a message (raw) / {clamor_size:.0f} (clamor)")
    row("raw smtplib, one connection, build + send", raw)
    row("raw smtplib, one connection, send only", send)
    row("clamor deliver --once, process start to exit", clamor)
    print(f"  {'  of which start-up (same command, nothing due)':<48} {idle:7.2f} s")
    row("  clamor deliver without that start-up", work)
    print(f"clamor / raw build + send: {raw / clamor:.2f} start to exit, {raw / work:.2f} without start-up "
          f"(target {TARGET_RATIO})")
    print(f"clamor / raw send only:    {send / clamor:.2f} start to exit, {send / work:.2f} without start-up")
    pairs = " ".join(f"{r / c:.2f}" for r, c in zip(raw_times, clamor_times))
    print(f"each repeat, clamor / raw build + send, start to exit: {pairs}")


if __name__ == "__main__":
    main()
