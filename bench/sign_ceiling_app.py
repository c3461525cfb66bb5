"""Third baseline for bench/web.py: stock Flask, Flask-WTF and SQLAlchemy doing the least a sign POST must do.

Per request: the session cookie read, the CSRF token checked, the six fields
validated by WTForms, and one transaction with Clamor's own rows in Clamor's
own schema (``BENCH_CEILING_DB`` names a migrated Clamor database, so every
index and totals trigger fires): the signature, a letter to each of the five
targets, the receipt, then 303. No translations, no spam filters, no links,
no receipt drawn, no counter: its ratio to the minimal insert app is the
framework's ceiling for the sign POST, as bench/csrf_app.py's is for the page.
"""

import os
import secrets
from datetime import UTC, datetime

from flask import Flask, redirect
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import FlaskForm
from sqlalchemy import event, text
from wtforms import RadioField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Email, Length, Optional

app = Flask(__name__)
app.secret_key = "bench-secret-bench-secret-bench-secret"
app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.environ["BENCH_CEILING_DB"]
app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"connect_args": {"timeout": 30}}
db = SQLAlchemy(app)
TARGETS = ["press@prokuror.kz", "press@akorda.kz", "press@mfa.kz", "zhumakovasholpan@gmail.com",
           "knprkcampaign@gmail.com"]
#: As many choices as Clamor's country <select> (250 and "none given").
COUNTRIES = [("", "Choose…"), ("FR", "France")] + [(f"{a}{b}", f"Country {a}{b}") for a in "ABCDEGHIJK"
                                                   for b in "ABCDEFGHIJKLMNOPQRSTUVWXY"]

with app.app_context():
    @event.listens_for(db.engine, "connect")
    def _pragmas(connection, record):
        cursor = connection.cursor()
        for pragma in ("busy_timeout = 30000", "journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()


class SignForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    email = StringField("Email", validators=[DataRequired(), Length(max=320), Email(check_deliverability=False)])
    organisation = StringField("Organisation", validators=[Optional(), Length(max=200)])
    country = SelectField("Country", choices=COUNTRIES)
    message = TextAreaField("Message", validators=[DataRequired(), Length(max=5000)])
    opt_in = RadioField("Alerts", choices=[("yes", "Yes"), ("no", "No")], default="no")


SIGNATURE = text(
    "INSERT INTO signature (campaign, name, email, email_key, organisation, country, message, language, opt_in, "
    "edited, subject_choice, status, status_reason, client_hash, created_at) VALUES (:campaign, :name, :email, "
    ":email, :organisation, :country, :message, 'en', :opt_in, 0, 0, 'accepted', '', '', :now) RETURNING id")
DELIVERY = text(
    "INSERT INTO delivery (signature_id, campaign, kind, target_key, channel, backend, status, attempts, "
    "next_attempt_at, last_error, note, provider_id, message_id, created_at, updated_at, subject, body) VALUES "
    "(:signature_id, :campaign, :kind, :target_key, 'email', '', 'pending', 0, :now, '', '', '', :message_id, :now, "
    ":now, :subject, :body)")


@app.route("/", methods=["GET", "POST"])
def sign():
    form = SignForm()
    if not form.validate_on_submit():
        return f"<form method=post>{form.csrf_token}</form>", 200 if not form.errors else 400
    now = datetime.now(UTC).replace(tzinfo=None)
    connection = db.session.connection()
    signature_id = connection.execute(SIGNATURE, {
        "campaign": "bench", "name": form.name.data, "email": form.email.data,
        "organisation": form.organisation.data, "country": form.country.data, "message": form.message.data,
        "opt_in": form.opt_in.data == "yes", "now": now}).scalar_one()
    rows = [{"kind": "letter", "target_key": target, "subject": None, "body": None} for target in TARGETS]
    rows.append({"kind": "receipt", "target_key": form.email.data, "subject": "Your letter", "body": "Thank you."})
    connection.execute(DELIVERY, [{**row, "signature_id": signature_id, "campaign": "bench", "now": now,
                                   "message_id": f"<{secrets.token_hex(16)}@example.org>"} for row in rows])
    db.session.commit()
    return redirect("/thanks", code=303)
