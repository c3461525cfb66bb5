"""Second baseline for bench/web.py: stock Flask and Flask-WTF, drawing a CSRF token into a page of the campaign
page's size.

The least any Flask page with a CSRF form does per new visitor: open a
session, make the token, sign it, and set the session cookie. Its ratio to the
bare app is the framework's ceiling for the campaign page.
"""

from flask import Flask
from flask_wtf.csrf import CSRFProtect, generate_csrf

app = Flask(__name__)
app.secret_key = "bench-secret-bench-secret-bench-secret"
CSRFProtect(app)
#: About the campaign page's size in English (16 KB).
FILLER = "x" * 16_000


@app.get("/")
def index():
    return f'<form method="post"><input name="csrf_token" type="hidden" value="{generate_csrf()}"></form>{FILLER}'
