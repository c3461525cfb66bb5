"""Subject variants (``subjects = [...]``): one per signature, chosen at random, kept for all its letters."""

import collections

import pytest
from conftest import EXAMPLE_CAMPAIGNS, SLUG, sign, smtp_backed_app

from app.campaigns import CampaignError, load_campaign
from app.delivery import deliver_due
from app.extensions import db
from app.models import Delivery

FRENCH = ["Libérez Erzhan Elshibayev", "Erzhan Elshibayev doit être libéré", "Un syndicaliste en prison"]


def with_subjects(instance_path, french=FRENCH, keep_subject=False):
    """The example campaign with ``french`` as the French subject variants (and its subject, if kept)."""
    source = (EXAMPLE_CAMPAIGNS / f"{SLUG}.toml").read_text()
    variants = "subjects = [" + ", ".join(f'"{s}"' for s in french) + "]"
    old = 'subject = "Libérez Erzhan Elshibayev"'
    source = source.replace(old, (old + "\n" if keep_subject else "") + variants)
    path = instance_path / "campaigns" / f"{SLUG}.toml"
    path.write_text(source)
    return path


def test_subjects_alone_or_beside_subject_make_one_list_of_variants(instance_path):
    text = load_campaign(with_subjects(instance_path)).text("fr")
    assert text.subjects == FRENCH and text.subject == FRENCH[0]
    both = load_campaign(with_subjects(instance_path, ["Autre sujet"], keep_subject=True)).text("fr")
    assert both.subjects == ["Libérez Erzhan Elshibayev", "Autre sujet"]
    assert [both.subject_for(n) for n in range(4)] == ["Libérez Erzhan Elshibayev", "Autre sujet"] * 2
    # A language with one subject only keeps it for everyone.
    assert load_campaign(with_subjects(instance_path)).text("ru").subject_for(7) == "Освободите Эржана Елшибаева"


@pytest.mark.parametrize("variants, complaint", [(["Bon", ""], "text.fr.subjects: has an empty subject"),
                                                 ([], "text.fr.subject: missing (or give subjects")])
def test_a_campaign_without_a_usable_subject_is_refused_naming_the_key(instance_path, variants, complaint):
    with pytest.raises(CampaignError, match=complaint.replace("(", r"\(")):
        load_campaign(with_subjects(instance_path, variants))


@pytest.mark.slow
def test_each_signature_keeps_one_subject_for_all_its_letters_and_retries(instance_path, make_app, scripted_smtp):
    with_subjects(instance_path)
    controller, inbox = scripted_smtp(data_replies=[451])  # the very first letter is refused once
    app = smtp_backed_app(make_app, controller)
    for n in range(30):
        assert sign(app.test_client(), email=f"s{n}@example.org").status_code == 303
    with app.app_context():
        while deliver_due():
            pass
        db.session.execute(db.update(Delivery).values(next_attempt_at=db.func.datetime("now", "-1 minute")))
        db.session.commit()
        while deliver_due():
            pass
        assert {d.status for d in Delivery.query} == {"sent"}
    by_signer = collections.defaultdict(list)
    for message in inbox.messages:
        by_signer[message["Reply-To"].addresses[0].addr_spec].append(str(message["Subject"]))
    assert len(by_signer) == 30
    first = inbox.messages[0]
    retried = [m for m in inbox.messages if m["Message-ID"] == first["Message-ID"]]
    assert len(retried) == 1  # the 451 stored nothing; its retry arrived once
    for subjects in by_signer.values():
        assert len(subjects) == 5 and len(set(subjects)) == 1 and subjects[0] in FRENCH
    # Chosen at random: 30 signers leaving one variant of three unused is a 1 in 60,000 chance.
    assert {subjects[0] for subjects in by_signer.values()} == set(FRENCH)
