"""The organisers' pages: accounts, login and its rate limit per address, dashboard, moderation, supporters, export."""

import csv
import io
import logging
import re

import pytest
from conftest import ORGANISER, PASSWORD, SLUG, add_organiser, csrf_token, login, sign
from sqlalchemy import func, insert, select, update

from app.export import BATCH
from app.extensions import db, limiter
from app.models import Delivery, Organiser, Signature


def admin_urls(app, signature_id):
    """(method, url) for every admin view but the login page, with real arguments."""
    values = {"slug": SLUG, "signature_id": signature_id, "decision": "approve"}
    urls = []
    with app.test_request_context():
        from flask import url_for

        for rule in app.url_map.iter_rules():
            if not rule.endpoint.startswith("admin.") or rule.endpoint == "admin.login":
                continue
            url = url_for(rule.endpoint, **{k: values[k] for k in rule.arguments})
            urls += [(method, url) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return urls


@pytest.mark.slow
def test_every_admin_url_without_login_redirects_and_leaks_nothing(make_app, hold_filter):
    app = make_app(SPAM_FILTERS=hold_filter)
    client = app.test_client()
    sign(client, name="Secret Supporter", email="secret@example.org", message="hold me")
    with app.app_context():
        held = db.session.scalar(select(Signature))
    urls = admin_urls(app, held.id)
    assert len(urls) >= 8  # index, dashboard, retry, moderation page + decision, supporters, export, logout
    for method, url in urls:
        response = client.open(url, method=method, data={"target": "press@akorda.kz"})
        body = response.get_data(as_text=True)
        assert response.status_code == 302, (method, url, response.status_code)
        assert response.headers["Location"].startswith("/admin/login"), (method, url)
        assert "Secret Supporter" not in body and "secret@example.org" not in body
    with app.app_context():  # the POST to approve did nothing
        assert db.session.get(Signature, held.id).status == "held"
    # A removed organiser's session stops working at once.
    add_organiser(app)
    assert login(client).status_code == 303
    assert client.get(f"/admin/{SLUG}/").status_code == 200
    assert app.test_cli_runner().invoke(args=["admin", "remove", ORGANISER]).exit_code == 0
    assert client.get(f"/admin/{SLUG}/").status_code == 302


@pytest.mark.slow
def test_admin_accounts_from_the_command_line(app):
    runner = app.test_cli_runner()
    mismatch = runner.invoke(args=["admin", "add", "Ana@Union.test"], input=f"{PASSWORD}\nsomething else\n")
    assert mismatch.exit_code != 0
    add_organiser(app, "Ana@Union.test")
    with app.app_context():
        organiser = db.session.scalar(select(Organiser))
        assert organiser.email == "ana@union.test"
        assert organiser.password_hash.startswith("scrypt:")
        assert PASSWORD not in organiser.password_hash
    listed = runner.invoke(args=["admin", "list"])
    assert "ana@union.test" in listed.output and "never" in listed.output
    assert runner.invoke(args=["admin", "remove", "ana@union.test"]).exit_code == 0
    assert "ana@union.test" not in runner.invoke(args=["admin", "list"]).output
    assert runner.invoke(args=["admin", "remove", "ana@union.test"]).exit_code != 0


@pytest.mark.slow
def test_login_logout_and_the_log(app, client, caplog):
    add_organiser(app)
    wrong = login(client, password="not the password")
    assert wrong.status_code == 401
    assert "Wrong email address or password." in wrong.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302
    # Without the CSRF token the form is refused even with the right password.
    assert client.post("/admin/login", data={"email": ORGANISER, "password": PASSWORD}).status_code == 400
    with caplog.at_level(logging.INFO, logger="app.admin"):
        response = login(client, query_string={"next": f"/admin/{SLUG}/"})
    assert response.status_code == 303
    assert f"organiser {ORGANISER} logged in" in caplog.text
    page = client.get("/admin/")
    assert page.status_code == 200 and ORGANISER in page.get_data(as_text=True)
    # An address outside /admin/ is never followed after login.
    assert login(client, query_string={"next": "//evil.example/"}).headers["Location"] == "/admin/"
    assert client.post("/admin/logout", data={"csrf_token": csrf_token(client)}).status_code == 303
    assert client.get("/admin/").status_code == 302


@pytest.mark.slow
def test_wrong_passwords_are_rate_limited(make_app):
    app = make_app(RATELIMIT_ENABLED=True)
    limiter.reset()
    add_organiser(app)
    client = app.test_client()
    for _ in range(5):
        assert login(client, password="guess").status_code == 401
    # The sixth try from this address is refused, even with the right password.
    assert login(client).status_code == 429
    # Per account there is no hard limit (anyone could lock the organiser out
    # with it): a guess from another address is checked, and the account is
    # slowed down instead (tests/test_admin_sessions.py).
    assert login(client, password="guess", environ_base={"REMOTE_ADDR": "10.0.0.99"}).status_code == 401
    # Another account from a fresh address is not affected, and a good login does not count.
    add_organiser(app, "other@union.test")
    for _ in range(7):
        assert login(client, "other@union.test", environ_base={"REMOTE_ADDR": "10.0.1.1"}).status_code == 303
    limiter.reset()


@pytest.mark.slow
def test_dashboard_figures_match_the_database(app, client, runner):
    sign(client, email="a@example.org", country="FR", opt_in="yes")
    sign(client, lang="en", email="b@example.org", country="KZ")
    sign(client, lang="ru", email="c@example.org", country="KZ", opt_in="yes")
    assert runner.invoke(args=["deliver", "--once"]).exit_code == 0
    # d@ sends the page's letter unchanged; the other three wrote their own.
    sign(client, email="d@example.org", country="", message=app.extensions["clamor"].campaigns[SLUG].text("fr").letter)
    with app.app_context():
        db.session.execute(update(Delivery).where(Delivery.target_key == "press@mfa.kz", Delivery.status == "pending")
                           .values(status="failed", last_error="550 mailbox unavailable"))
        db.session.commit()
        expected = {
            "signatures": db.session.scalar(
                select(func.count()).select_from(Signature).where(Signature.status == "accepted")),
            "sent-total": db.session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.status == "sent")),
            "opt-ins": db.session.scalar(select(func.count()).select_from(Signature).where(Signature.opt_in.is_(True))),
        }
    assert expected == {"signatures": 4, "sent-total": 15, "opt-ins": 2}
    add_organiser(app)
    login(client)
    html = client.get(f"/admin/{SLUG}/").get_data(as_text=True)

    def figure(name):
        return int(re.search(rf'id="fig-{name}">(\d+)<', html).group(1))

    for name, value in expected.items():
        assert figure(name) == value, name
    assert figure("sent-today") == 15
    assert 'id="fig-edited">75 % (3)</dd>' in html  # the share of letters in their own words
    assert figure("held") == 0
    # By country and by language, most first.
    assert re.search(r'class="by-country">.*?<td>KZ</td><td class="num">2</td>', html, re.S)
    assert re.search(r'class="by-language">.*?<td>fr</td><td class="num">2</td>', html, re.S)

    # Per target: sent, queued, failed with the last error and a retry button.
    def row(key):
        return re.search(rf'<tr data-target="{re.escape(key)}">(.*?)</tr>', html, re.S).group(1)

    assert (re.search(r'class="num sent">3<', row("press@mfa.kz"))
            and re.search(r'class="num failed">1<', row("press@mfa.kz")))
    assert "550 mailbox unavailable" in row("press@mfa.kz") and "Retry failed" in row("press@mfa.kz")
    assert re.search(r'class="num queued">1', row("press@akorda.kz")) and "Retry failed" not in row("press@akorda.kz")
    # The chart is inline SVG: one bar for today's 4 signatures, no script, no style attribute.
    svg = re.search(r"<svg.*?</svg>", html, re.S).group(0)
    assert re.findall(r"<title>(\d{4}-\d\d-\d\d): (\d+)</title>", svg)[0][1] == "4"
    assert "<script" not in html and "style=" not in html
    assert "Retention in force: 180 days after the campaign closes." in html
    assert '<progress class="goal" max="2000" value="4">' in html

    retried = client.post(f"/admin/{SLUG}/retry", data={"csrf_token": csrf_token(client), "target": "press@mfa.kz"})
    assert retried.status_code == 303
    with app.app_context():
        again = db.session.scalars(select(Delivery).where(Delivery.target_key == "press@mfa.kz")).all()
        assert sorted(d.status for d in again) == ["pending", "sent", "sent", "sent"]
        assert all(d.attempts == 0 for d in again if d.status == "pending")

    # Someone signs again as a@: the public counter moves, the signatures do not,
    # and the dashboard says why (docs/spam.md, duplicate_signer).
    sign(client, email="A@example.org")
    html = client.get(f"/admin/{SLUG}/").get_data(as_text=True)
    assert figure("signatures") == 4 and '<progress class="goal" max="2000" value="5">' in html
    assert 'id="counter-note"' in html


@pytest.mark.slow
def test_moderation_approves_and_rejects(make_app, hold_filter):
    app = make_app(SPAM_FILTERS=hold_filter)
    client = app.test_client()
    sign(client, name="Held One", email="one@example.org", message="please hold me")
    sign(client, name="Held Two", email="two@example.org", message="hold me too")
    sign(client, name="Fine", email="fine@example.org")
    add_organiser(app)
    login(client)
    html = client.get("/admin/moderation").get_data(as_text=True)
    assert "Held One" in html and "Held Two" in html and "Fine" not in html
    assert "the letter says hold me" in html
    with app.app_context():
        one, two = db.session.scalars(select(Signature).where(Signature.status == "held").order_by(Signature.id))
        assert {d.status for d in one.deliveries} == {"held"}
    token = csrf_token(client)
    assert client.post(f"/admin/moderation/{one.id}/approve", data={"csrf_token": token}).status_code == 303
    assert client.post(f"/admin/moderation/{two.id}/reject", data={"csrf_token": token}).status_code == 303
    assert client.post(f"/admin/moderation/{two.id}/approve", data={"csrf_token": token}).status_code == 404
    with app.app_context():
        assert db.session.get(Signature, one.id).status == "accepted"
        assert {d.status for d in db.session.get(Signature, one.id).deliveries} == {"pending"}
        assert db.session.get(Signature, two.id) is None
        assert db.session.scalar(select(func.count()).select_from(Delivery).where(Delivery.signature_id == two.id)) == 0
    assert "2 people have signed so far." in client.get(f"/en/{SLUG}/").get_data(as_text=True)


@pytest.mark.slow
def test_the_moderation_page_shows_the_held_a_page_at_a_time_oldest_first(make_app, hold_filter):
    app = make_app(SPAM_FILTERS=hold_filter, ADMIN_PAGE_SIZE=2)
    client = app.test_client()
    names = ["Held One", "Held Two", "Held Three", "Held Four", "Held Five"]
    for i, name in enumerate(names):
        sign(client, name=name, email=f"held{i}@example.org", message="please hold me")
    sign(client, name="Accepted Anna", email="anna@example.org")
    add_organiser(app)
    login(client)

    def shown(html):
        return re.findall(r"<h2>(Held \w+) <span", html)

    def link(html, rel, word):
        return re.search(rf'<a rel="{rel}" href="([^"]+)">{word}</a>', html).group(1).replace("&amp;", "&")

    for start in ("/admin/moderation", f"/admin/moderation?campaign={SLUG}"):
        first = client.get(start).get_data(as_text=True)
        assert shown(first) == names[:2] and "Older" not in first
        second = client.get(link(first, "next", "Newer")).get_data(as_text=True)
        assert shown(second) == names[2:4]
        last = client.get(link(second, "next", "Newer")).get_data(as_text=True)
        assert shown(last) == names[4:] and "Newer" not in last
        assert shown(client.get(link(last, "prev", "Older")).get_data(as_text=True)) == names[2:4]
        if "campaign=" in start:
            assert f"campaign={SLUG}" in link(second, "next", "Newer")
    # Past the end (all approved meanwhile): back to the first page.
    gone = client.get("/admin/moderation?after=999999")
    assert gone.status_code == 302 and gone.headers["Location"].endswith("/admin/moderation")


@pytest.mark.slow
def test_supporters_are_paged_and_searchable(make_app):
    app = make_app(ADMIN_PAGE_SIZE=2)
    client = app.test_client()
    for name in ("Alice Dupont", "Bruno Martin", "Chloé Petit"):
        sign(client, name=name, email=f"{name.split()[0].lower().replace('é', 'e')}@example.org")
    add_organiser(app)
    login(client)
    first = client.get(f"/admin/{SLUG}/supporters").get_data(as_text=True)
    assert "Chloé Petit" in first and "Bruno Martin" in first and "Alice Dupont" not in first
    assert "3 supporters" in first and "Newer" not in first and "OFFSET" not in first
    older = re.search(r'<a rel="next" href="([^"]+)">Older</a>', first).group(1)
    second = client.get(older.replace("&amp;", "&")).get_data(as_text=True)
    assert "Alice Dupont" in second and "Chloé Petit" not in second and "Older" not in second
    newer = re.search(r'<a rel="prev" href="([^"]+)">Newer</a>', second).group(1)
    back = client.get(newer.replace("&amp;", "&")).get_data(as_text=True)
    assert "Chloé Petit" in back and "Bruno Martin" in back and "Alice Dupont" not in back
    found = client.get(f"/admin/{SLUG}/supporters?q=bruno@").get_data(as_text=True)
    assert "Bruno Martin" in found and "Alice Dupont" not in found and "Chloé Petit" not in found
    found = client.get(f"/admin/{SLUG}/supporters?q=CHLO").get_data(as_text=True)
    assert "Chloé Petit" in found and "Bruno Martin" not in found
    assert "Chloé Petit" in client.get(f"/admin/{SLUG}/supporters?q=example workers").get_data(as_text=True)
    assert "%" not in client.get(f"/admin/{SLUG}/supporters?q=%25").get_data(as_text=True).split("<tbody>")[1]


@pytest.mark.slow
def test_export_streams_the_right_rows(make_app, hold_filter, caplog):
    app = make_app(SPAM_FILTERS=hold_filter)
    client = app.test_client()
    sign(client, name="Anna", email="anna@example.org", opt_in="yes")
    sign(client, lang="en", name="=cmd()", email="bob@example.org", opt_in="no")
    sign(client, name="Held", email="held@example.org", message="hold me", opt_in="yes")
    add_organiser(app)
    login(client)
    with caplog.at_level(logging.INFO, logger="app.admin"):
        response = client.get(f"/admin/{SLUG}/export.csv")
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    assert f"organiser {ORGANISER} exported all supporters of {SLUG}" in caplog.text
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["email"] for r in rows] == ["anna@example.org", "bob@example.org"]
    assert rows[1]["name"] == "'=cmd()" and rows[1]["unsubscribe_url"] == ""
    assert rows[0]["consent_language"] == "fr" and len(rows[0]["consent_version"]) == 64

    opt_ins = list(csv.DictReader(io.StringIO(client.get(f"/admin/{SLUG}/export.csv?opt_in=1").get_data(as_text=True))))
    assert [r["email"] for r in opt_ins] == ["anna@example.org"]
    link = opt_ins[0]["unsubscribe_url"]
    assert link.startswith("http://localhost/fr/unsubscribe/")
    # The link works for the person it was made for, and names nobody else.
    page = app.test_client().get(link.removeprefix("http://localhost"))
    assert page.status_code == 200 and "<form" in page.get_data(as_text=True)


@pytest.mark.slow
def test_export_is_written_batch_by_batch(app, client):
    rows = 2 * BATCH + 7
    with app.app_context():
        db.session.execute(insert(Signature), [
            {"campaign": SLUG, "name": f"Supporter {i}", "email": f"s{i}@example.org", "message": "m",
             "language": "fr", "opt_in": i % 2 == 0} for i in range(rows)
        ])
        db.session.commit()
    add_organiser(app)
    login(client)
    response = client.get(f"/admin/{SLUG}/export.csv")
    # The body arrives in pieces as rows are read, not as one string built first.
    chunks = list(response.response)
    assert len(chunks) == 3
    lines = b"".join(chunks).decode().splitlines()
    assert len(lines) == rows + 1 and lines[-1].startswith(f"Supporter {rows - 1},")
