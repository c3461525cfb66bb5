"""Baseline for bench/web.py: a minimal Flask-SQLAlchemy app that stores a posted form and answers 303.

``BENCH_INSERT_DB`` names its SQLite file (WAL, synchronous=NORMAL, like Clamor's).
"""

import os

from flask import Flask, redirect, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.environ["BENCH_INSERT_DB"]
app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"connect_args": {"timeout": 30}}
db = SQLAlchemy(app)


class Entry(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(200))
    email = db.Column(db.String(320))
    message = db.Column(db.Text)


with app.app_context():
    @event.listens_for(db.engine, "connect")
    def _pragmas(connection, record):
        cursor = connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    db.create_all()


@app.post("/")
def store():
    db.session.add(Entry(name=request.form["name"], email=request.form["email"], message=request.form["message"]))
    db.session.commit()
    return redirect("/thanks", code=303)
