"""Clamor under load, as ratios against baselines measured in the same run.

    PYTHONPATH=. .venv/bin/python bench/web.py [--seconds 8] [--runs 3] [--rows 1000000]
                                               [--skip-http] [--skip-dashboard] [--skip-postgres]
                                               [--rss-requests 100000]

(``make bench-web`` runs it, installing wrk with apt-get if it is missing.)

Everything runs under gunicorn (-w 2 -k sync) on loopback, driven by wrk
(-t2 -c16), ``--runs`` rounds of ``--seconds`` each, spam filters and
rate limits off, the delivery worker external. In each round a figure and
its baseline run one after the other; a ratio is the median of the rounds'
ratios (rates are medians too):

- page: GET of the campaign page / a bare Flask ``return "ok"`` (bench/bare_app.py);
  beside it, stock Flask and Flask-WTF drawing a CSRF token into a page of
  the same size (bench/csrf_app.py) / the same bare app: the ceiling any
  Flask page with a CSRF form meets;
- sign: POST of a valid form (CSRF token and session cookie fetched
  beforehand, fed to wrk by a Lua script) / a minimal Flask-SQLAlchemy insert
  and 303 (bench/insert_app.py); beside it, stock Flask, Flask-WTF and
  SQLAlchemy checking the CSRF token, validating the same fields and writing
  Clamor's rows (signature, five letters, receipt) into a migrated Clamor
  database in one transaction (bench/sign_ceiling_app.py) / the same insert
  app: the ceiling any Flask sign POST with Clamor's schema meets;
- RSS of each page-serving worker at start, after every 10 s of GETs, and after ``--rss-requests`` GETs;
- the dashboard's figures at ``--rows`` signatures and five letters each,
  next to an empty database, on SQLite and PostgreSQL (a throwaway cluster,
  like tests/conftest.py), with the old full count for comparison; and the
  time of ``clamor purge``, ``clamor forget``, ``clamor export`` and
  ``clamor deliveries --csv --campaign`` there
  (on SQLite, with the longest a writer beside the purge waited for the
  write lock, which a signing request waits for at most 30 s).

Absolute numbers depend on the machine and what else runs on it; the ratios
are what to compare.
"""

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.cookies import SimpleCookie
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from pgcluster import Cluster, postgres_bin  # noqa: E402

BIN = ROOT / ".venv" / "bin"
SLUG = "free-erzhan-elshibayev"
TARGETS = ["press@prokuror.kz", "press@akorda.kz", "press@mfa.kz", "zhumakovasholpan@gmail.com",
           "knprkcampaign@gmail.com"]
COUNTRIES = ["FR", "KZ", "RU", "DE", "GB", "US", "IT", "ES", "BE", "CH", "PL", "SE", "NO", "FI", "BR", "AR", "CA",
             "TR", "UA", "GE"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """``gunicorn -w 2 -k sync APP`` on a free loopback port, with ``env``."""

    def __init__(self, app, env=None, workers=2):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [BIN / "gunicorn", "-w", str(workers), "-k", "sync", "-b", f"127.0.0.1:{self.port}", "--log-level",
             "warning", "--chdir", str(ROOT), app],
            env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}", **(env or {})},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{app} did not start")
        time.sleep(1)  # both workers booted

    def workers(self):
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def rss_mb(self):
        sizes = []
        for pid in self.workers():
            status = Path(f"/proc/{pid}/status").read_text()
            sizes.append(int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024)
        return sizes

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def wrk(url, seconds, script=None):
    """(requests per second, requests, errors) of one wrk run."""
    command = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency"]
    if script:
        command += ["-s", str(script)]
    out = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return rate, total, (int(bad.group(1)) if bad else 0), (errors.group(1) if errors else "")


def checked_rate(url, args, script=None, label=""):
    """Requests per second of one wrk run of ``args.seconds``; every response must be 2xx or 3xx."""
    rate, total, bad, _ = wrk(url, args.seconds, script)
    if bad:
        raise RuntimeError(f"{label}: {bad} of {total} responses were not 2xx/3xx")
    return rate


def paired_rates(runs, args):
    """Median rate of each of ``runs`` ({label: (url, script)}), the first the baseline, and each one's ratio.

    The runs take turns, one round after another, and a ratio is the median
    of each round's own ratio: a slow spell of the machine (another process,
    the CPU's clock) then weighs on both sides of a ratio instead of on one.
    """
    rates = {label: [] for label in runs}
    for _ in range(args.runs):
        for label, (url, script) in runs.items():
            rates[label].append(checked_rate(url, args, script, label))
    baseline = rates[next(iter(runs))]
    return ({label: statistics.median(r) for label, r in rates.items()},
            {label: statistics.median(a / b for a, b in zip(r, baseline, strict=True)) for label, r in rates.items()})


def clamor_env(instance, database_uri):
    return {
        "CLAMOR_INSTANCE_PATH": str(instance),
        "CLAMOR_SECRET_KEY": "bench-secret",
        "CLAMOR_BASE_URL": "http://127.0.0.1",
        "CLAMOR_SQLALCHEMY_DATABASE_URI": database_uri,
        "CLAMOR_DELIVERY_WORKER": "external",
        "CLAMOR_SPAM_FILTERS": "[]",
        "CLAMOR_FILL_TIME_MIN": "0",
        "CLAMOR_RATELIMIT_ENABLED": "false",
        "CLAMOR_LOG_LEVEL": "WARNING",
    }


def make_instance(folder):
    instance = folder / "instance"
    (instance / "campaigns").mkdir(parents=True)
    shutil.copy(ROOT / "instance" / "campaigns" / f"{SLUG}.toml", instance / "campaigns")
    return instance


def migrated_app(instance, database_uri):
    from flask_migrate import upgrade

    from app import create_app

    app = create_app({"SECRET_KEY": "bench-secret", "SQLALCHEMY_DATABASE_URI": database_uri,
                      "DELIVERY_WORKER": "external", "BASE_URL": "http://127.0.0.1", "LOG_LEVEL": "WARNING"},
                     instance_path=instance)
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
    return app


def fetch_forms(url, n):
    """``n`` (cookie, csrf token) pairs, each from its own first visit."""
    forms = []
    for _ in range(n):
        with urllib.request.urlopen(url) as response:
            html = response.read().decode()
            cookie = SimpleCookie()
            for header in response.headers.get_all("Set-Cookie"):
                cookie.load(header)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
        forms.append(("; ".join(f"{k}={v.value}" for k, v in cookie.items()), token))
    return forms


def lua_post(path, forms, folder, name):
    """A wrk script that posts ``forms`` (list of (cookie, body)) in turn to ``path``."""
    def quote(text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    entries = ",\n".join(f"  {{{quote(cookie)}, {quote(body)}}}" for cookie, body in forms)
    script = folder / name
    script.write_text(f"""
local forms = {{
{entries}
}}
local i = 0
request = function()
  i = i % #forms + 1
  local form = forms[i]
  local headers = {{["Content-Type"] = "application/x-www-form-urlencoded"}}
  if form[1] ~= "" then headers["Cookie"] = form[1] end
  return wrk.format("POST", {quote(path)}, headers, form[2])
end
""")
    return script


def http_figures(args, folder):
    results = {}
    bare = Gunicorn("bare_app:app")
    csrf_page = Gunicorn("csrf_app:app")
    insert_db = folder / "insert.sqlite3"
    insert = Gunicorn("insert_app:app", {"BENCH_INSERT_DB": str(insert_db)})
    instance = make_instance(folder)
    uri = f"sqlite:///{folder / 'clamor.sqlite3'}"
    migrated_app(instance, uri)
    ceiling_db = folder / "ceiling.sqlite3"
    migrated_app(instance, f"sqlite:///{ceiling_db}")
    ceiling = Gunicorn("sign_ceiling_app:app", {"BENCH_CEILING_DB": str(ceiling_db)})
    clamor = Gunicorn("wsgi:app", clamor_env(instance, uri))
    page_url = f"{clamor.url}/en/{SLUG}/"
    try:
        with urllib.request.urlopen(page_url) as response:
            assert response.status == 200 and b"<form" in response.read()
        results["rss_start"] = clamor.rss_mb()
        rates, ratios = paired_rates({"bare": (bare.url + "/", None), "csrf_page": (csrf_page.url + "/", None),
                                      "page": (page_url, None)}, args)
        results.update(rates)
        results["ratios"] = ratios

        fields = {"name": "Anna Example", "email": "anna@example.org", "organisation": "Example Workers' Union",
                  "country": "FR", "message": "Free Erzhan Elshibayev now.", "opt_in": "no"}
        forms = [(cookie, urllib.parse.urlencode({"csrf_token": token, **fields}))
                 for cookie, token in fetch_forms(page_url, 64)]
        sign_script = lua_post(f"/en/{SLUG}/", forms, folder, "sign.lua")
        insert_script = lua_post("/", [("", urllib.parse.urlencode(fields))], folder, "insert.lua")
        ceiling_forms = [(cookie, urllib.parse.urlencode({"csrf_token": token, **fields}))
                         for cookie, token in fetch_forms(ceiling.url + "/", 64)]
        ceiling_script = lua_post("/", ceiling_forms, folder, "ceiling.lua")
        rates, ratios = paired_rates({"insert": (insert.url + "/", insert_script),
                                      "sign_ceiling": (ceiling.url + "/", ceiling_script),
                                      "sign": (page_url, sign_script)}, args)
        results.update(rates)
        results["ratios"].update(ratios)

        # Sampled after every 10 s of GETs: a leak climbs all the way, warming caches levels off.
        before = args.runs * int(results["page"] * args.seconds)
        served, results["rss_series"] = 0, []
        while served < args.rss_requests:
            _, total, bad, _ = wrk(page_url, 10)
            served += total
            results["rss_series"].append((before + served, clamor.rss_mb()))
        results["rss_after"] = clamor.rss_mb()
        results["rss_requests"] = served + before
    finally:
        for server in (bare, csrf_page, insert, ceiling, clamor):
            server.stop()
    return results


# -- the dashboard at size ------------------------------------------------------

def fill_sqlite(path, rows):
    import sqlite3

    connection = sqlite3.connect(path)
    connection.executescript(f"""
        PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;
        CREATE TEMP TABLE countries(i INTEGER PRIMARY KEY, code TEXT);
        INSERT INTO countries(i, code) VALUES {", ".join(f"({i}, '{c}')" for i, c in enumerate(COUNTRIES))};
        CREATE TEMP TABLE targets(i INTEGER PRIMARY KEY, key TEXT);
        INSERT INTO targets(i, key) VALUES {", ".join(f"({i}, '{t}')" for i, t in enumerate(TARGETS))};
        WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {rows})
        INSERT INTO signature (id, campaign, name, email, email_key, organisation, country, message, language, opt_in,
                               status, status_reason, client_hash, created_at)
        SELECT x, '{SLUG}', 'Supporter ' || x, 's' || x || '@example.org', 's' || x || '@example.org', 'Union',
               (SELECT code FROM countries WHERE i = x % {len(COUNTRIES)}), 'Free him.',
               CASE x % 4 WHEN 0 THEN 'en' WHEN 1 THEN 'fr' WHEN 2 THEN 'ru' ELSE 'kk' END, x % 5 < 2,
               CASE WHEN x % 100 < 95 THEN 'accepted' WHEN x % 100 < 98 THEN 'held' ELSE 'unconfirmed' END, '', '',
               datetime('2026-10-01', '+' || (x * 60 / {rows}) || ' days', '+' || (x % 86400) || ' seconds')
        FROM n;
        INSERT INTO delivery (signature_id, campaign, kind, target_key, channel, backend, status, attempts,
                              next_attempt_at, last_error, provider_id, message_id, created_at, sent_at)
        SELECT s.id, s.campaign, 'letter', t.key, 'email', 'outbox_files',
               CASE WHEN s.status != 'accepted' THEN 'held' WHEN s.id % 100 < 92 THEN 'sent'
                    WHEN s.id % 100 < 96 THEN 'pending' ELSE 'failed' END,
               1, s.created_at, CASE WHEN s.id % 100 >= 96 THEN '550 no such mailbox' ELSE '' END, '',
               '<' || s.id || '.' || t.i || '@bench>', s.created_at, s.created_at
        FROM signature s CROSS JOIN targets t;
    """)
    connection.commit()
    connection.close()


def fill_postgresql(uri, rows):
    import psycopg

    with psycopg.connect(uri.replace("postgresql+psycopg://", "postgresql://")) as connection:
        connection.execute(f"""
            INSERT INTO signature (id, campaign, name, email, email_key, organisation, country, message, language,
                                   opt_in, status, status_reason, client_hash, created_at)
            SELECT x, '{SLUG}', 'Supporter ' || x, 's' || x || '@example.org', 's' || x || '@example.org', 'Union',
                   (ARRAY[{", ".join(f"'{c}'" for c in COUNTRIES)}])[x % {len(COUNTRIES)} + 1], 'Free him.',
                   (ARRAY['en', 'fr', 'ru', 'kk'])[x % 4 + 1], x % 5 < 2,
                   CASE WHEN x % 100 < 95 THEN 'accepted' WHEN x % 100 < 98 THEN 'held' ELSE 'unconfirmed' END, '', '',
                   timestamp '2026-10-01' + (x * 60 / {rows}) * interval '1 day' + (x % 86400) * interval '1 second'
            FROM generate_series(1, {rows}) x""")
        connection.execute(f"SELECT setval('signature_id_seq', {rows})")
        connection.execute(f"""
            INSERT INTO delivery (signature_id, campaign, kind, target_key, channel, backend, status, attempts,
                                  next_attempt_at, last_error, provider_id, message_id, created_at, sent_at)
            SELECT s.id, s.campaign, 'letter', t.key, 'email', 'outbox_files',
                   CASE WHEN s.status != 'accepted' THEN 'held' WHEN s.id % 100 < 92 THEN 'sent'
                        WHEN s.id % 100 < 96 THEN 'pending' ELSE 'failed' END,
                   1, s.created_at, CASE WHEN s.id % 100 >= 96 THEN '550 no such mailbox' ELSE '' END, '',
                   '<' || s.id || '.' || t.i || '@bench>', s.created_at, s.created_at
            FROM signature s CROSS JOIN (SELECT * FROM unnest(ARRAY[{", ".join(f"'{t}'" for t in TARGETS)}])
                                         WITH ORDINALITY AS u(key, i)) t""")
        connection.execute("ANALYZE")


def timed(function, repeat=1):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def dashboard_figures_at_size(name, uri, fill, rows, folder, with_cli):
    from app import totals
    from app.admin import counted_figures, dashboard_figures
    from app.extensions import db

    instance = make_instance(folder / name)
    app = migrated_app(instance, uri)
    out = {}
    with app.app_context():
        campaign = app.extensions["clamor"].campaigns[SLUG]
        out["empty"] = timed(lambda: dashboard_figures(campaign), 5)
        # Bulk load without the triggers, then count once: what the migration does on an existing database.
        with db.engine.begin() as connection:
            totals.drop_triggers(connection)
        start = time.perf_counter()
        fill(uri, rows)
        out["fill"] = time.perf_counter() - start
        with db.engine.begin() as connection:
            out["backfill"] = timed(lambda: totals.recount(connection))
            totals.install_triggers(connection)
        db.session.remove()
        out["full"] = timed(lambda: dashboard_figures(campaign), 5)
        figures = dashboard_figures(campaign)
        out["signatures"] = figures["signatures"]
        out["letters"] = sum(t["sent"] + t["queued"] + t["held"] + t["failed"] for t in figures["targets"])
        out["old"] = timed(lambda: counted_figures(campaign))
        db.session.remove()
    if with_cli:
        env = {**os.environ, **clamor_env(instance, uri), "PYTHONPATH": str(ROOT)}
        flask = [BIN / "flask", "--app", "wsgi"]

        def run(*command):
            subprocess.run(flask + list(command), env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)

        out["forget"] = timed(lambda: run("forget", f"s{rows // 2}@example.org"))
        waits = LockWaits(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
        with waits or contextlib.nullcontext():
            out["purge"] = timed(lambda: run("purge"))
        if waits:
            out["purge_lock_wait"] = waits.longest
        out["export"] = timed(lambda: run("export"))
        out["letters_csv"] = timed(lambda: run("deliveries", "--csv", "--campaign", SLUG))
    return out


class LockWaits:
    """While in use: takes SQLite's write lock every 20 ms, as a signing request would, and keeps the longest wait."""

    def __init__(self, path):
        self.path, self.longest = path, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        connection = sqlite3.connect(self.path, timeout=600, isolation_level=None)
        try:
            while not self._stop.wait(0.02):
                start = time.perf_counter()
                connection.execute("BEGIN IMMEDIATE")
                self.longest = max(self.longest, time.perf_counter() - start)
                connection.execute("ROLLBACK")
        finally:
            connection.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def start_postgres(folder):
    """A throwaway PostgreSQL (tests/pgcluster.py) with a ``bench`` database: (URI, stop), or (None, None)."""
    bindir = postgres_bin()
    if bindir is None:
        return None, None
    cluster = Cluster(bindir, prefix="clamor-bench-pg-", settings=("synchronous_commit=off",))
    cluster.start()
    return cluster.create_database("bench"), cluster.destroy


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rss-requests", type=int, default=100_000)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-dashboard", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None and not args.skip_http:
        sys.exit("wrk is not installed: `make bench-web` installs it (apt-get install wrk)")
    folder = Path(tempfile.mkdtemp(prefix="clamor-bench-web-"))
    try:
        if not args.skip_http:
            r = http_figures(args, folder)
            print(f"page GET    {r['page']:8.0f} req/s   bare Flask GET {r['bare']:8.0f} req/s   "
                  f"ratio {r['ratios']['page']:.2f}  (target >= 0.6)")
            print(f"  beside it: stock Flask + Flask-WTF, a CSRF token in a 16 KB page {r['csrf_page']:8.0f} req/s   "
                  f"ratio {r['ratios']['csrf_page']:.2f}  (the framework's ceiling for a page with a form)")
            print(f"sign POST   {r['sign']:8.0f} req/s   minimal insert {r['insert']:8.0f} req/s   "
                  f"ratio {r['ratios']['sign']:.2f}  (target >= 0.5)")
            print(f"  beside it: stock Flask + Flask-WTF + SQLAlchemy, the same rows in Clamor's schema "
                  f"{r['sign_ceiling']:8.0f} req/s   ratio {r['ratios']['sign_ceiling']:.2f}  "
                  "(the framework's ceiling for the sign POST)")
            print(f"worker RSS  start {', '.join(f'{m:.1f}' for m in r['rss_start'])} MB;"
                  f" after ~{r['rss_requests']:,} page GETs {', '.join(f'{m:.1f}' for m in r['rss_after'])} MB"
                  "  (target <= 80, no growth)")
            print("  on the way: " + "; ".join(f"{n:,} GETs {'/'.join(f'{m:.1f}' for m in sizes)}"
                                              for n, sizes in r["rss_series"]))
            sys.stdout.flush()
        if not args.skip_dashboard:
            databases = [("sqlite", f"sqlite:///{folder / 'dashboard.sqlite3'}",
                          lambda uri, rows: fill_sqlite(uri.removeprefix("sqlite:///"), rows), None)]
            if not args.skip_postgres:
                uri, stop = start_postgres(folder)
                if uri:
                    databases.append(("postgresql", uri, fill_postgresql, stop))
                else:
                    print("postgresql: not installed, skipped")
            for name, uri, fill, stop in databases:
                try:
                    d = dashboard_figures_at_size(name, uri, fill, args.rows, folder, with_cli=True)
                finally:
                    if stop:
                        stop()
                print(f"dashboard {name:10s} empty {d['empty'] * 1000:7.1f} ms   {d['signatures']:,} signatures,"
                      f" {d['letters']:,} letters: {d['full'] * 1000:7.1f} ms  (target <= 300 ms;"
                      f" counted from the rows: {d['old'] * 1000:,.0f} ms)")
                print(f"          {name:10s} bulk fill {d['fill']:.1f} s, backfill of the totals {d['backfill']:.1f} s;"
                      f" clamor forget {d['forget']:.2f} s, purge {d['purge']:.2f} s, export {d['export']:.1f} s,"
                      f" the campaign's letters as CSV {d['letters_csv']:.1f} s")
                if "purge_lock_wait" in d:
                    print(f"          {name:10s} longest wait for the write lock during the purge, as a signing"
                          f" request: {d['purge_lock_wait']:.2f} s  (signing gives up after 30 s)")
                sys.stdout.flush()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
