"""Does the CSV export stream? Peak memory for 10 000 and 100 000 supporters.

    .venv/bin/python bench/export.py [--rows 10000 100000]

Builds a throwaway instance and SQLite database, inserts the rows, then runs
the same code the admin page streams (``app.export.iter_csv`` with
unsubscribe links, inside a request context) and measures the peak of Python
allocations with tracemalloc while the CSV is consumed and thrown away. If the
export loaded everything, the peak would grow ten-fold with the rows; flat
memory shows as a ratio near 1.
"""

import argparse
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from app import create_app  # noqa: E402
from app.export import export_query, iter_csv  # noqa: E402
from app.extensions import db  # noqa: E402
from app.links import unsubscribe_url  # noqa: E402
from app.models import Signature, utcnow  # noqa: E402


def make_app(folder, campaign_file):
    instance = folder / "instance"
    (instance / "campaigns").mkdir(parents=True)
    shutil.copy(campaign_file, instance / "campaigns")
    app = create_app(
        {"TESTING": True, "SECRET_KEY": "bench", "DELIVERY_WORKER": "external", "BASE_URL": "http://localhost",
         "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'bench.sqlite3'}"},
        instance_path=instance,
    )
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
    return app


def fill(app, slug, rows):
    now = utcnow()
    with app.app_context():
        for start in range(0, rows, 10_000):
            db.session.execute(insert(Signature), [
                {"campaign": slug, "name": f"Supporter Number {i}", "email": f"supporter{i}@example.org",
                 "organisation": "Example Workers' Union", "country": "FR", "language": "fr",
                 "message": "Free Erzhan Elshibayev now. " * 20, "opt_in": i % 3 == 0,
                 "consent_version": "0" * 64 if i % 3 == 0 else None, "consented_at": now if i % 3 == 0 else None,
                 "created_at": now}
                for i in range(start, min(start + 10_000, rows))
            ])
            db.session.commit()


def measure(app, slug):
    """(peak bytes, csv bytes, seconds) for exporting every supporter of ``slug``."""
    with app.test_request_context("/admin/"):
        size = 0
        tracemalloc.start()
        started = time.perf_counter()
        for chunk in iter_csv(export_query(slug), unsubscribe_url):
            size += len(chunk)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        db.session.remove()
    return peak, size, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--campaign", type=Path,
                        default=next((ROOT / "instance" / "campaigns").glob("*.toml"), None))
    args = parser.parse_args()
    slug = args.campaign.stem
    results = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory(prefix="clamor-bench-") as tmp:
            app = make_app(Path(tmp), args.campaign)
            fill(app, slug, rows)
            peak, size, seconds = measure(app, slug)
            with app.app_context():
                db.engine.dispose()
        results.append((rows, peak))
        print(f"{rows:>9} rows: peak {peak / 1e6:7.2f} MB traced, CSV {size / 1e6:8.1f} MB, {seconds:6.1f} s")
    (small_rows, small), (big_rows, big) = results[0], results[-1]
    print(f"peak ratio {big_rows} / {small_rows} rows: {big / small:.2f} (rows ratio {big_rows / small_rows:.0f})")


if __name__ == "__main__":
    main()
