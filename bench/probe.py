"""Does a repeat signature answer as fast as a new one? Response times of both paths, as a ratio.

    .venv/bin/python bench/probe.py [--rounds 300]

A prober who types an address they suspect, and watches how long the form
takes to answer, must learn nothing (docs/spam.md, duplicate_signer). This
signs a throwaway instance of the example campaign in alternation as a new
supporter and as a repeat of one who signed already, through the whole stack
(test client, CSRF, the number question, every default spam filter, the
receipt), and prints the median POST time of each path and their ratio. The
two paths do the same database work (app/signing.py), so the ratio should be
1 within the machine's noise; the old stand-in design (a repeat skipped its
inserts) measured 0.83 here.
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import form_fields  # noqa: E402
from flask_migrate import upgrade  # noqa: E402

from app import create_app  # noqa: E402

SLUG = "free-erzhan-elshibayev"


def timed_post(client, email):
    page = client.get(f"/fr/{SLUG}/").get_data(as_text=True)
    data = form_fields(page)
    data.update(name="Anna Example", email=email, organisation="Union", country="FR",
                message="Free Erzhan Elshibayev now.", opt_in="no")
    start = time.perf_counter()
    response = client.post(f"/fr/{SLUG}/", data=data)
    elapsed = time.perf_counter() - start
    assert response.status_code == 303, response.status_code
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="clamor-probe-"))
    try:
        instance = folder / "instance"
        (instance / "campaigns").mkdir(parents=True)
        shutil.copy(ROOT / "instance" / "campaigns" / f"{SLUG}.toml", instance / "campaigns")
        app = create_app({"TESTING": True, "SECRET_KEY": "bench", "DELIVERY_WORKER": "external",
                          "BASE_URL": "http://localhost", "RATELIMIT_ENABLED": False, "FILL_TIME_MIN": 0,
                          "LOG_LEVEL": "WARNING",
                          "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'probe.sqlite3'}"},
                         instance_path=instance)
        with app.app_context():
            upgrade(directory=app.extensions["migrate"].directory)
        client = app.test_client()
        timed_post(client, "known@example.org")
        new, repeat = [], []
        for i in range(args.rounds):
            new.append(timed_post(client, f"new{i}@example.org"))
            repeat.append(timed_post(client, "known@example.org"))
        new_ms, repeat_ms = statistics.median(new) * 1000, statistics.median(repeat) * 1000
        print(f"new signer: median {new_ms:.2f} ms over {args.rounds} POSTs")
        print(f"repeat:     median {repeat_ms:.2f} ms over {args.rounds} POSTs")
        print(f"repeat / new: {repeat_ms / new_ms:.2f} (1.00 tells a prober nothing)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
