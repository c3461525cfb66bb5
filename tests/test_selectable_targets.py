"""Supporters choose targets (issue 15, point 8): with ``targets_selectable = true`` the form has
one checkbox per target, all ticked; letters, the receipt and the letter's page follow the choice."""

import re
from html import unescape

import pytest
from conftest import SLUG, form_fields, sign, smtp_backed_app, status_path
from sqlalchemy import select, text
from test_page_cache import full_render, masked

from app.campaigns import CampaignError, load_campaign
from app.delivery import deliver_due
from app.extensions import db
from app.models import Delivery, Signature

#: The example campaign's five targets, in the file's order.
KEYS = ["press@prokuror.kz", "press@akorda.kz", "press@mfa.kz", "zhumakovasholpan@gmail.com",
        "knprkcampaign@gmail.com"]
CHOSEN = ["press@akorda.kz", "knprkcampaign@gmail.com"]
CHOSEN_NAMES = ["Акорда, пресс-служба Президента Республики Казахстан",
                "Конфедерация независимых профсоюзов Казахстана (копия)"]
NOT_CHOSEN_NAME = "Генеральная прокуратура Республики Казахстан, пресс-служба"
#: "Please choose at least one recipient.", as the page shows it.
NO_TARGET_ERROR = {"en": "Please choose at least one recipient.",
                   "fr": "Veuillez choisir au moins un destinataire.",
                   "kk": "Кемінде бір алушыны таңдаңыз."}
CHECKBOX = re.compile(r'<input[^>]*type="checkbox"[^>]*>')


@pytest.fixture
def selectable(instance_path):
    """The example campaign with ``targets_selectable = true``."""
    path = instance_path / "campaigns" / f"{SLUG}.toml"
    path.write_text(path.read_text().replace("\nsender = ", "\ntargets_selectable = true\nsender = ", 1))
    return path


def checkboxes(html):
    """``[(value, checked)]`` of the page's target checkboxes."""
    return [(unescape(re.search(r'value="([^"]*)"', box).group(1)), " checked" in box)
            for box in CHECKBOX.findall(html) if 'name="targets"' in box]


def letters(app):
    with app.app_context():
        return sorted(db.session.scalars(select(Delivery.target_key).where(Delivery.kind == "letter")))


def nothing_stored(app):
    with app.app_context():
        return db.session.scalar(select(db.func.count(Signature.id))) == 0 and letters(app) == []


@pytest.mark.slow
def test_two_of_five_ticked_send_exactly_two_letters(selectable, make_app, smtp_server):
    app = smtp_backed_app(make_app, smtp_server)
    client = app.test_client()
    page = client.get(f"/en/{SLUG}/").get_data(as_text=True)
    assert checkboxes(page) == [(key, True) for key in KEYS]  # every target, ticked
    assert "<legend>Send my letter to" in page
    assert re.search(r'<label><input [^>]*id="targets-1"[^>]*> Акорда', page)  # each box inside its label
    response = sign(client, lang="en", targets=CHOSEN)
    assert response.status_code == 303
    assert letters(app) == sorted(CHOSEN)
    # The thank-you page is the same for everyone: it names no target, chosen or not.
    thanks = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "sent to the addresses you chose" in thanks and "every address" not in thanks
    assert not [name for name in CHOSEN_NAMES + [NOT_CHOSEN_NAME] if name in thanks]
    with app.app_context():
        assert deliver_due() == 2
    assert sorted(rcpt for e in smtp_server.inbox.envelopes for rcpt in e.rcpt_tos) == sorted(CHOSEN)


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["fr", "kk"])
def test_no_target_ticked_gets_the_translated_error_and_nothing_is_stored(selectable, make_app, lang):
    app = make_app()
    client = app.test_client()
    response = sign(client, lang=lang, name="Anna Typed")  # the browser posts no "targets" at all
    html = unescape(response.get_data(as_text=True))
    assert response.status_code == 200
    assert NO_TARGET_ERROR[lang] in html
    assert 'value="Anna Typed"' in html  # what was typed, shown again
    assert checkboxes(html) == [(key, False) for key in KEYS]
    assert nothing_stored(app)


@pytest.mark.slow
@pytest.mark.parametrize("forged", [["evil@example.org"], ["press@akorda.kz", "evil@example.org"], [""]])
def test_a_target_the_campaign_does_not_have_is_refused_the_same_way(selectable, make_app, forged):
    app = make_app()
    response = sign(app.test_client(), lang="en", targets=forged)
    html = unescape(response.get_data(as_text=True))
    assert response.status_code == 200
    assert NO_TARGET_ERROR["en"] in html
    assert "evil@example.org" not in html  # not repeated back
    assert nothing_stored(app)


@pytest.mark.slow
def test_the_receipt_and_the_letters_page_name_only_the_chosen_targets(selectable, make_app, smtp_server):
    app = smtp_backed_app(make_app, smtp_server, SEND_RECEIPT=True)
    client = app.test_client()
    assert sign(client, targets=CHOSEN).status_code == 303
    with app.app_context():
        assert deliver_due() == 3  # two letters and the receipt
    (receipt,) = [m for m in smtp_server.inbox.messages if m["To"] == "anna@example.org"]
    body = receipt.get_content()
    assert [line[2:] for line in body.splitlines() if line.startswith("- ")] == CHOSEN_NAMES
    page = client.get(status_path(app)).get_data(as_text=True)
    rows = re.findall(r"<tr><td>([^<]*)</td>", page)
    assert [unescape(row) for row in rows] == CHOSEN_NAMES
    assert NOT_CHOSEN_NAME not in unescape(page)
    assert page.count(">envoyé<") == 2


@pytest.mark.slow
def test_without_the_key_there_is_no_checkbox_and_every_target_gets_a_letter(make_app):
    app = make_app()
    client = app.test_client()
    page = client.get(f"/fr/{SLUG}/").get_data(as_text=True)
    assert checkboxes(page) == []
    assert 'id="targets-heading"' in page  # the list of addresses, as before
    assert sign(client, targets=["press@akorda.kz"]).status_code == 303  # a posted choice is ignored
    assert letters(app) == sorted(KEYS)


@pytest.mark.slow
def test_the_cached_page_with_checkboxes_is_a_full_render(selectable, make_app):
    app = make_app()
    client = app.test_client()
    for path, embed in ((f"/fr/{SLUG}/", False), (f"/kk/{SLUG}/embed", True)):
        client.get(path)
        cached = client.get(path).get_data(as_text=True)
        assert checkboxes(cached) == [(key, True) for key in KEYS]
        assert masked(cached) == masked(full_render(app, client, path, embed=embed)), path


@pytest.mark.slow
def test_the_outage_form_keeps_the_choice(selectable, make_app):
    app = make_app()
    client = app.test_client()
    data = form_fields(client.get(f"/fr/{SLUG}/").get_data(as_text=True))
    data.update(name="Anna Example", email="anna@example.org", country="FR", message="Libérez-le.", opt_in="no",
                targets=CHOSEN)
    with app.app_context():
        # A database that answers with an error for what signing needs: the 503 form.
        db.session.execute(text("ALTER TABLE signature RENAME TO signature_away"))
        db.session.commit()
    response = client.post(f"/fr/{SLUG}/", data=data)
    assert response.status_code == 503
    assert checkboxes(response.get_data(as_text=True)) == [(key, key in CHOSEN) for key in KEYS]


def test_campaign_check_refuses_a_targets_selectable_that_is_not_true_or_false(selectable):
    selectable.write_text(selectable.read_text().replace("targets_selectable = true", 'targets_selectable = "yes"'))
    with pytest.raises(CampaignError, match="targets_selectable: must be true or false"):
        load_campaign(selectable)
    selectable.write_text(selectable.read_text().replace('targets_selectable = "yes"', "targets_selectable = true"))
    assert load_campaign(selectable).targets_selectable is True
