"""How fast does ``clamor deliver`` send? Letters per second, as ratios against raw smtplib.

    .venv/bin/python bench/delivery.py [--sink smtp-sink|aiosmtpd] [--letters 1000] [--repeats 2]
                                       [--reply-delay MS]

(``make bench`` installs Debian's postfix for ``smtp-sink`` when it is
missing, and runs this with the defaults.)

Builds a throwaway instance (SQLite, the example campaign, an
``instance/config.py`` sending email with ``smtp`` and otherwise the
defaults), queues N letters with ``queue_deliveries`` (the rows signing writes; not
timed), and starts a sink on 127.0.0.1 that only counts what it accepts:

- ``smtp-sink`` (the default): Postfix's test server, ``smtp-sink -u nobody
  -c 127.0.0.1:PORT 1000``, written in C; its ``-c`` counters (sessions and
  messages) are read from its output;
- ``aiosmtpd``: a Python server in a process of its own, counting the same;
  with ``--reply-delay MS`` it waits that long before answering each
  message's DATA, as a distant or busy mail server does (without blocking
  its other connections): where several connections pay off.

Then, into the same sink, best of a few repeats each, for the same letters:

1. raw send-only: one ``smtplib.SMTP`` connection sending messages built
   before the clock starts (``EmailMessage``, from the letters' strings): the
   transport alone, the yardstick every other figure is divided by;
   (beside it, for information, the same messages through the smtp
   plugin's ``send_mail``, which pipelines MAIL, RCPT and DATA when the
   sink offers PIPELINING, as smtp-sink does and Clamor now sends: the
   ratios stay against the plain smtplib loop the issue names);
2. raw build + send: the same loop building each ``EmailMessage`` as it goes,
   what a hand-written script sending N personal letters does;
   (beside it, for information, two bounds of any design on this machine:
   Clamor's bytes built beforehand and sent pipelined over 4 threads of one
   process, the most four connections can send before anything is built or
   recorded; and each letter's bytes built, sent pipelined and recorded
   with one raw UPDATE and commit by a thread of its own, nothing else,
   over 1 and over 4 connections: the least a worker that records every
   letter does);
3. ``clamor deliver --once`` with ``DELIVERY_CONNECTIONS = 1``, as a
   subprocess: start-up, claiming, building each letter's bytes, SMTP,
   committing each outcome;
4. the same with ``DELIVERY_CONNECTIONS = 4``;
   (3 and 4 again with ``DELIVERY_COMMIT_SECONDS = 0.5``: outcomes
   committed together, at most every half second);
5. fax: ``clamor deliver --once`` for fax letters (a campaign whose targets
   are fax numbers): each letter is rendered as a PDF and emailed to a
   gateway address through ``smtp``; letters per second only.

Each target line gives the ratio of the best times, and the median of each
repeat's own ratio (its Clamor time against its own raw loop, run moments
apart). Each Clamor figure is given from process start to exit and without
the start-up (the same command with nothing due, timed too, the quickest of
at least :data:`IDLE_RUNS` runs, so that a slow start-up never flatters a
figure): a long-running ``clamor deliver`` pays start-up once. After every
phase the sink must have received exactly as many messages as letters were
sent, and every letter must be marked sent, or the benchmark stops with a
non-zero exit. Timings are printed, never asserted.
"""

import argparse
import asyncio
import logging
import multiprocessing
import os
import queue
import re
import shutil
import smtplib
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC
from email import policy
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
SMTP_SINK = Path("/usr/sbin/smtp-sink")
#: Runs of the command with nothing due; its quickest is the start-up taken off each Clamor figure.
IDLE_RUNS = 5
#: The issue's targets, as letters/s against raw send-only, without start-up.
TARGETS = {1: 0.5, 4: 1.5}

FAX_CAMPAIGN = """\
slug = "bench-fax"
status = "open"
default_language = "kk"
languages = ["kk"]
sender = "LabourStart"
{targets}
[text.kk]
title = "Ержан Елшібаевты босатыңыз"
short_name = "Ержан Елшібаевқа бостандық"
body = ["p"]
subject = "Ержан Елшібаевты босатыңыз"
letter = "Құрметті Президент!"
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the sinks ------------------------------------------------------------------------------------

class SmtpSink:
    """Postfix's ``smtp-sink`` in the foreground; ``take()`` reads its ``-c`` counters since the last call."""

    COUNTERS = re.compile(rb"sess=(\d+) quit=\d+ mesg=(\d+)")

    def __init__(self):
        if not SMTP_SINK.exists():
            raise SystemExit(f"{SMTP_SINK} is missing: `make bench` installs Debian's postfix, "
                             "or use --sink aiosmtpd")
        self.port = free_port()
        self.process = subprocess.Popen(
            [str(SMTP_SINK), "-u", "nobody", "-c", f"127.0.0.1:{self.port}", "1000"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.sessions = self.messages = 0
        self.taken = (0, 0)
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"smtp-sink did not start: {self.process.stderr.read().decode()}") from None
                time.sleep(0.05)
        # The probe connection above is one session.
        self._settle()
        self.taken = (self.sessions, self.messages)

    def _read(self):
        buffer = b""
        while chunk := self.process.stdout.read1(4096):
            buffer += chunk
            *done, buffer = re.split(rb"[\r\n]", buffer)
            for line in done:
                match = self.COUNTERS.search(line)
                if match:
                    with self._lock:
                        self.sessions, self.messages = int(match[1]), int(match[2])

    def _settle(self, expected=None, timeout=5.0):
        """Wait until the counters reach ``expected`` messages (or stop moving for 0.3 s)."""
        deadline = time.monotonic() + timeout
        last, still_since = None, time.monotonic()
        while time.monotonic() < deadline:
            with self._lock:
                now = (self.sessions, self.messages)
            if expected is not None and now[1] - self.taken[1] >= expected:
                time.sleep(0.1)  # anything beyond expected would show now
                break
            if now != last:
                last, still_since = now, time.monotonic()
            elif time.monotonic() - still_since > 0.3:
                break
            time.sleep(0.02)

    def take(self, expected=None):
        """(messages, sessions) received since the last call."""
        self._settle(expected)
        with self._lock:
            now = (self.sessions, self.messages)
        sessions, messages = now[0] - self.taken[0], now[1] - self.taken[1]
        self.taken = now
        return messages, sessions

    def close(self):
        self.process.terminate()
        self.process.wait(10)


class CountingHandler:
    """aiosmtpd handler that keeps nothing: how many sessions, how many messages."""

    def __init__(self, messages, sessions, reply_delay=0.0):
        self.messages = messages
        self.sessions = sessions
        self.reply_delay = reply_delay

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.sessions.get_lock():
            self.sessions.value += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):
        if self.reply_delay:
            await asyncio.sleep(self.reply_delay)
        with self.messages.get_lock():
            self.messages.value += 1
        return "250 OK queued"


def run_aiosmtpd(port, messages, sessions, ready, stop, reply_delay):
    from aiosmtpd.controller import Controller

    controller = Controller(CountingHandler(messages, sessions, reply_delay), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


class AiosmtpdSink:
    """An aiosmtpd Controller in a child process (in ours it would share the GIL with the raw loop only)."""

    def __init__(self, reply_delay=0.0):
        # Forked before the benchmark starts any thread (make it first).
        context = multiprocessing.get_context("fork")
        self.port = free_port()
        self.messages = context.Value("q", 0)
        self.sessions = context.Value("q", 0)
        self._stop = context.Event()
        ready = context.Event()
        self.process = context.Process(
            target=run_aiosmtpd, args=(self.port, self.messages, self.sessions, ready, self._stop, reply_delay),
            daemon=True,
        )
        self.process.start()
        if not ready.wait(60):
            raise SystemExit("the aiosmtpd sink did not start")

    def take(self, expected=None):
        """(messages, sessions) received since the last call."""
        deadline = time.monotonic() + 5
        while expected is not None and self.messages.value < expected and time.monotonic() < deadline:
            time.sleep(0.02)
        with self.messages.get_lock(), self.sessions.get_lock():
            taken = self.messages.value, self.sessions.value
            self.messages.value = self.sessions.value = 0
        return taken

    def close(self):
        self._stop.set()
        self.process.join(10)


SINKS = {"smtp-sink": SmtpSink, "aiosmtpd": AiosmtpdSink}


# -- the instance ---------------------------------------------------------------------------------

def make_instance(folder, campaign_file, port, letters, fax_letters):
    """An instance folder as `clamor init` leaves it, set to send through the sink."""
    instance = folder / "instance"
    (instance / "campaigns").mkdir(parents=True)
    shutil.copy(campaign_file, instance / "campaigns")
    targets = "".join(f'[[targets]]\nname = "Ақорда баспасөз қызметі {n}"\nfax = "+7 7172 74-56-3{n}"\n'
                      for n in range(5))
    (instance / "campaigns" / "bench-fax.toml").write_text(FAX_CAMPAIGN.format(targets=targets))
    # Defaults everywhere else (batch size, logging at INFO). The hourly cap
    # stays on, so its counting runs, but above N, so no letter waits.
    (instance / "config.py").write_text(
        "SECRET_KEY = 'bench'\nBASE_URL = 'https://clamor.test'\n"
        f"SQLALCHEMY_DATABASE_URI = {'sqlite:///' + str(folder / 'bench.sqlite3')!r}\n"
        "DELIVERY_WORKER = 'external'\n"
        "DELIVERY = {'email': 'smtp', 'fax': 'fax_email'}\n"
        "SENDER_ADDRESS = 'campaigns@clamor.test'\n"
        f"SMTP_HOST = '127.0.0.1'\nSMTP_PORT = {port}\n"
        f"TARGET_HOURLY_CAP = {max(letters, fax_letters) + 1}\n"
        "FAX_ADDRESS_TEMPLATE = '{e164}@fax.clamor.test'\n"
    )
    app = create_app(instance_path=instance)
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
    return instance, app


def queue_letters(app, slug, letters):
    """Queue ``letters`` letters of campaign ``slug`` as signing does: a Signature with one Delivery per target."""
    with app.app_context():
        campaign = app.extensions["clamor"].campaigns[slug]
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
        extra = select(Delivery).where(Delivery.campaign == slug).order_by(Delivery.id.desc()).limit(-letters % targets)
        for delivery in db.session.scalars(extra):
            db.session.delete(delivery)
        db.session.commit()


def set_status(app, slug, status, others="sent"):
    """Make every letter of ``slug`` ``status`` (pending: due now, as if never tried), every other ``others``."""
    with app.app_context():
        db.session.execute(update(Delivery).where(Delivery.campaign != slug).values(status=others))
        db.session.execute(update(Delivery).where(Delivery.campaign == slug).values(
            status=status, attempts=0, next_attempt_at=utcnow(), lease_until=None,
            sent_at=None, provider_id="", last_error="", backend=""))
        db.session.commit()
        db.session.remove()


def queued_letters(app, slug):
    """Every queued letter of ``slug``, as Clamor builds it (plain strings)."""
    with app.app_context():
        campaign = app.extensions["clamor"].campaigns[slug]
        query = select(Delivery).where(Delivery.campaign == slug).order_by(Delivery.id)
        letters = [build_letter(delivery, campaign, app.config) for delivery in db.session.scalars(query)]
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


def raw_send_only(port, letters, pipelined=False):
    """Seconds to send messages built beforehand, over one smtplib connection.

    ``pipelined``: with the smtp plugin's ``send_mail`` (PIPELINING when the
    sink offers it) instead of ``sendmail``.
    """
    from plugins.smtp import send_mail

    messages = [(letter.from_address, letter.to_address, raw_email(letter).as_bytes(policy=policy.SMTP))
                for letter in letters]
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as connection:
        for from_address, to_address, data in messages:
            if pipelined:
                send_mail(connection, from_address, to_address, data)
            else:
                connection.sendmail(from_address, [to_address], data)
    return time.perf_counter() - started


def raw_build_and_send(port, letters):
    """Seconds to build each EmailMessage and send it, over one smtplib connection."""
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as connection:
        for letter in letters:
            connection.send_message(raw_email(letter), from_addr=letter.from_address, to_addrs=[letter.to_address])
    return time.perf_counter() - started


def in_threads(run, items, connections):
    """Seconds for ``connections`` threads to finish ``run(part)``, each part every ``connections``-th of ``items``."""
    threads = [threading.Thread(target=run, args=(items[i::connections],)) for i in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def prebuilt_over_connections(port, letters, connections):
    """Seconds to send Clamor's bytes, built beforehand, pipelined, over ``connections`` threads of one process.

    The most several connections of one Python process can send into the
    sink before any letter is built or recorded: what 4 connections could
    reach at best.
    """
    from plugins.smtp import send_mail

    messages = [(letter.from_address, letter.to_address, letter.as_bytes()) for letter in letters]

    def run(part):
        with smtplib.SMTP("127.0.0.1", port) as connection:
            for from_address, to_address, data in part:
                send_mail(connection, from_address, to_address, data)

    return in_threads(run, messages, connections)


def bytes_send_and_record(port, letters, database, connections=1):
    """Seconds to build each letter's bytes, send it pipelined and record it, with nothing else of Clamor's.

    The floor of any worker that records each letter as sent: Letter.as_bytes
    and the smtp plugin's send_mail over ``connections`` connections (a
    thread each, every letter given to one), and for each letter one UPDATE
    of its row and a commit, on an sqlite3 connection of a thread of its own
    (as Clamor's outcomes' writer does, the table's triggers firing); each
    connection sends on while at most one of its letters waits for its
    commit. No ORM, no claim, no loading, no checks: what Clamor does
    besides is the distance between this line and Clamor's.
    """
    from plugins.smtp import send_mail

    jobs = queue.SimpleQueue()

    def write():
        connection = sqlite3.connect(database, isolation_level=None)
        connection.execute("PRAGMA synchronous = NORMAL")
        while (job := jobs.get()) is not None:
            *row, written = job
            connection.execute("BEGIN")
            connection.execute("UPDATE delivery SET status = 'sent', sent_at = ?, provider_id = ?, backend = 'smtp', "
                               "updated_at = ? WHERE id = ?", row)
            connection.execute("COMMIT")
            written.release()
        connection.close()

    def send(part):
        written, waiting = threading.Semaphore(0), 0
        with smtplib.SMTP("127.0.0.1", port) as connection:
            for letter in part:
                send_mail(connection, letter.return_path or letter.from_address, letter.to_address,
                          letter.as_bytes())
                now = str(utcnow())
                jobs.put((now, letter.message_id, now, letter.delivery_id, written))
                waiting += 1
                if waiting > 1:
                    written.acquire()
                    waiting -= 1
        for _ in range(waiting):
            written.acquire()

    writer = threading.Thread(target=write)
    writer.start()
    seconds = in_threads(send, letters, connections)
    jobs.put(None)
    writer.join()
    return seconds


#: DELIVERY_COMMIT_SECONDS of the grouped-commit phases.
GROUPED = 0.5
#: (times key, DELIVERY_CONNECTIONS, DELIVERY_COMMIT_SECONDS) of each Clamor phase.
CLAMOR_PHASES = (("clamor1", 1, 0), ("clamor4", 4, 0), ("grouped1", 1, GROUPED), ("grouped4", 4, GROUPED))


def clamor_deliver(instance, connections, commit_seconds=0):
    """Seconds for `clamor deliver --once`, start to exit, and what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAMOR_")}
    env["CLAMOR_INSTANCE_PATH"] = str(instance)
    env["CLAMOR_DELIVERY_CONNECTIONS"] = str(connections)
    env["CLAMOR_DELIVERY_COMMIT_SECONDS"] = str(commit_seconds)
    # This checkout's code, whatever the venv's editable install points at.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    started = time.perf_counter()
    done = subprocess.run([str(CLAMOR), "deliver", "--once"], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"clamor deliver failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return seconds, done.stdout.strip()


def check_sink(sink, expected, phase, connections=None):
    """Stops the benchmark unless exactly ``expected`` messages arrived (over ``connections`` sessions, if given)."""
    received, sessions = sink.take(expected)
    if received != expected:
        raise SystemExit(f"{phase}: the sink received {received} messages, expected exactly {expected}")
    if connections and expected and connections > 1 and sessions < 2:
        raise SystemExit(f"{phase}: the sink saw {sessions} connection(s), expected more than one")
    return sessions


def check_sent(app, slug, n, output=None):
    """Stops the benchmark unless all ``n`` letters of ``slug`` are sent (and ``output`` says so, if given)."""
    with app.app_context():
        sent = db.session.scalar(select(func.count()).where(Delivery.campaign == slug, Delivery.status == "sent"))
        db.session.remove()
    if sent != n or output not in (None, f"{n} deliveries attempted"):
        raise SystemExit(f"{sent} of {n} letters of {slug} marked sent; clamor deliver printed {output!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sink", choices=sorted(SINKS), default="smtp-sink")
    parser.add_argument("--letters", type=int, default=1000)
    parser.add_argument("--fax-letters", type=int, default=100, help="letters for the fax phase (each a PDF)")
    parser.add_argument("--repeats", type=int, default=2, choices=range(1, 100), metavar="R",
                        help="best of this many runs of each phase")
    parser.add_argument("--campaign", type=Path,
                        default=next((ROOT / "instance" / "campaigns").glob("*.toml"), None))
    parser.add_argument("--reply-delay", type=float, default=0, metavar="MS",
                        help="aiosmtpd only: milliseconds it waits before answering each DATA")
    args = parser.parse_args()
    if args.reply_delay and args.sink != "aiosmtpd":
        parser.error("--reply-delay needs --sink aiosmtpd (smtp-sink's -w counts whole seconds)")
    if not CLAMOR.exists():
        raise SystemExit(f"{CLAMOR} is missing: run `make install` first")
    logging.basicConfig(level=logging.WARNING)
    n, fax_n = args.letters, args.fax_letters
    phases = ("send", "piped", "build", "prebuilt4", "floor1", "floor4",
              *(phase[0] for phase in CLAMOR_PHASES), "fax", "idle")
    times = {key: [] for key in phases}
    sessions = {}
    sink = AiosmtpdSink(args.reply_delay / 1000) if args.sink == "aiosmtpd" else SmtpSink()
    try:
        with tempfile.TemporaryDirectory(prefix="clamor-bench-") as tmp:
            instance, app = make_instance(Path(tmp), args.campaign, sink.port, n, fax_n)
            slug = args.campaign.stem  # a campaign file is named after its slug
            queue_letters(app, slug, n)
            queue_letters(app, "bench-fax", fax_n)
            letters = queued_letters(app, slug)
            raw_size = sum(len(raw_email(letter).as_bytes(policy=policy.SMTP)) for letter in letters) / n
            clamor_size = sum(len(letter.as_bytes()) for letter in letters) / n
            for _ in range(args.repeats):
                times["send"].append(raw_send_only(sink.port, letters))
                check_sink(sink, n, "raw send-only")
                times["piped"].append(raw_send_only(sink.port, letters, pipelined=True))
                check_sink(sink, n, "pipelined send-only")
                times["build"].append(raw_build_and_send(sink.port, letters))
                check_sink(sink, n, "raw build + send")
                times["prebuilt4"].append(prebuilt_over_connections(sink.port, letters, 4))
                check_sink(sink, n, "pre-built, pipelined, 4 connections", 4)
                for key, connections in (("floor1", 1), ("floor4", 4)):
                    set_status(app, slug, "sending")
                    times[key].append(bytes_send_and_record(sink.port, letters, Path(tmp) / "bench.sqlite3",
                                                            connections))
                    check_sink(sink, n, f"bytes + send + record, {connections} connection(s)", connections)
                    check_sent(app, slug, n)
                for key, connections, commit_seconds in CLAMOR_PHASES:
                    set_status(app, slug, "pending")
                    seconds, output = clamor_deliver(instance, connections, commit_seconds)
                    times[key].append(seconds)
                    sessions[key] = check_sink(sink, n, f"clamor deliver, {connections} connection(s), "
                                               f"DELIVERY_COMMIT_SECONDS = {commit_seconds}", connections)
                    check_sent(app, slug, n, output)
                set_status(app, "bench-fax", "pending")
                seconds, output = clamor_deliver(instance, 1)
                times["fax"].append(seconds)
                check_sink(sink, fax_n, "clamor deliver, fax")
                check_sent(app, "bench-fax", fax_n, output)
            # The same command with nothing due: start-up, create_app, one empty claim.
            set_status(app, slug, "sent")
            for _ in range(max(IDLE_RUNS, args.repeats)):
                seconds, output = clamor_deliver(instance, 1)
                times["idle"].append(seconds)
                check_sink(sink, 0, "clamor deliver with nothing due")
            with app.app_context():
                db.engine.dispose()
    finally:
        sink.close()

    best = {key: min(values) for key, values in times.items()}
    idle = best["idle"]
    send_rate = n / best["send"]

    def row(label, seconds, count=n, without=None):
        rate = count / seconds
        line = f"  {label:<44} {seconds:7.2f} s {rate:7.0f} letters/s"
        if count == n:
            line += f"  {rate / send_rate:5.2f} x send-only"
        if without is not None:
            work = seconds - idle
            line += f"   without start-up: {work:6.2f} s {count / work:7.0f} letters/s"
            if count == n:
                line += f" {count / work / send_rate:5.2f} x"
        print(line)

    delay = f" answering each DATA after {args.reply_delay:g} ms" if args.reply_delay else ""
    print(f"{n} letters ({args.campaign.stem}) into {args.sink}{delay} on 127.0.0.1, best of {args.repeats}; "
          f"{raw_size:.0f} bytes a message (EmailMessage) / {clamor_size:.0f} (Clamor)")
    row("raw smtplib send-only, pre-built, 1 connection", best["send"])
    row("  pipelined send-only (send_mail), 1 conn.", best["piped"])
    row("raw smtplib build + send (EmailMessage), 1 conn.", best["build"])
    row("  Clamor's bytes pre-built, pipelined, 4 threads", best["prebuilt4"])
    row("  Clamor's bytes + send + UPDATE/commit, 1 conn.", best["floor1"])
    row("  Clamor's bytes + send + UPDATE/commit, 4 conn.", best["floor4"])
    row("clamor deliver --once, 1 connection", best["clamor1"], without=True)
    row(f"clamor deliver --once, 4 connections ({sessions['clamor4']} sessions)", best["clamor4"], without=True)
    row(f"  the same, DELIVERY_COMMIT_SECONDS = {GROUPED}, 1 conn.", best["grouped1"], without=True)
    row(f"  the same, DELIVERY_COMMIT_SECONDS = {GROUPED}, 4 conn.", best["grouped4"], without=True)
    row(f"fax_email, PDF each, 1 connection ({fax_n} letters)", best["fax"], count=fax_n, without=True)
    print(f"  {'start-up (clamor deliver --once, nothing due)':<44} {idle:7.2f} s")
    if args.reply_delay:
        return  # the targets are for a sink that answers at once
    for prefix, label in (("clamor", ""), ("grouped", f", DELIVERY_COMMIT_SECONDS = {GROUPED}")):
        for connections, target in TARGETS.items():
            ratio = n / (best[f"{prefix}{connections}"] - idle) / send_rate
            # Each repeat's own ratio too: a slow spell of the machine then
            # weighs on both sides of it, not on one figure's best.
            rounds = [send / (clamor - idle)
                      for send, clamor in zip(times["send"], times[f"{prefix}{connections}"], strict=True)]
            print(f"target: {connections} connection(s){label} >= {target} x send-only without start-up: "
                  f"{ratio:.2f} ({'met' if ratio >= target else 'NOT met'}); "
                  f"median of each repeat's own ratio {statistics.median(rounds):.2f}")


if __name__ == "__main__":
    main()
