"""Baseline for bench/web.py: the least a Flask app can do per request."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return "ok"
