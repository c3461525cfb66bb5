"""Office hours (issue 15, point 3): letters to a target go only inside its hours, one at a time.

The clock is moved with time-machine, never slept on; letters go to a real
aiosmtpd server on loopback.
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from conftest import EXAMPLE_CAMPAIGNS, SLUG, sign, smtp_backed_app

from app.campaigns import CampaignError, load_campaign
from app.delivery import deliver_due
from app.models import Delivery
from app.office_hours import OfficeHours, parse_days

ALMATY = ZoneInfo("Asia/Almaty")
PARIS = ZoneInfo("Europe/Paris")
#: The example campaign's second target, which gets office hours here.
AKORDA = "press@akorda.kz"


def campaign_text(top="", akorda=""):
    """The example campaign with ``top`` lines at the top level and ``akorda`` lines in its second target."""
    source = (EXAMPLE_CAMPAIGNS / f"{SLUG}.toml").read_text()
    source = source.replace("\n[[targets]]", f"\n{top}\n[[targets]]", 1)
    return source.replace(f'email = "{AKORDA}"\n', f'email = "{AKORDA}"\n{akorda}\n')


def write_campaign(folder, top="", akorda=""):
    path = folder / f"{SLUG}.toml"
    path.write_text(campaign_text(top, akorda))
    return path


def hours_of(campaign):
    return {target.key: target.hours for target in campaign.targets}


def almaty(*args):
    """A moment given in Almaty's wall-clock time, in UTC (as time_machine.travel takes it)."""
    return datetime(*args, tzinfo=ALMATY).astimezone(UTC)


def naive_utc(moment):
    """``moment`` as the database stores it (naive UTC, app.models.utcnow)."""
    return moment.astimezone(UTC).replace(tzinfo=None)


# Parsing and validation


def test_a_target_with_hours_and_the_others_without(tmp_path):
    akorda = 'timezone = "Asia/Almaty"\nhours = "09:00-18:00"\ndays = "mon-fri"'
    hours = hours_of(load_campaign(write_campaign(tmp_path, akorda=akorda)))
    assert hours[AKORDA] == OfficeHours("Asia/Almaty", 9 * 60, 18 * 60, frozenset(range(5)), "09:00-18:00", "mon-fri")
    assert str(hours[AKORDA]) == "Asia/Almaty office hours 09:00-18:00 mon-fri"
    assert [key for key, value in hours.items() if value is None] == [
        "press@prokuror.kz", "press@mfa.kz", "zhumakovasholpan@gmail.com", "knprkcampaign@gmail.com"]


def test_a_targets_keys_win_over_the_campaigns_one_by_one(tmp_path):
    top = 'timezone = "Europe/Paris"\nhours = "10:00-17:30"\ndays = "mon,wed,fri"'
    hours = hours_of(load_campaign(write_campaign(tmp_path, top=top, akorda='timezone = "Asia/Almaty"')))
    assert hours[AKORDA] == OfficeHours("Asia/Almaty", 600, 1050, frozenset({0, 2, 4}), "10:00-17:30", "mon,wed,fri")
    assert hours["press@mfa.kz"].timezone == "Europe/Paris"
    assert hours["press@mfa.kz"].closes == 1050


def test_an_unknown_time_zone_is_refused_naming_the_key(tmp_path):
    path = write_campaign(tmp_path, top='timezone = "Mars/Olympus"',
                          akorda='timezone = "Asia/Almaty2"\nhours = "09:00-18:00"')
    with pytest.raises(CampaignError) as refused:
        load_campaign(path)
    assert f'{path}: targets[2].timezone: "Asia/Almaty2" is not a time zone' in str(refused.value)
    assert f'{path}: timezone: "Mars/Olympus" is not a time zone' in str(refused.value)


@pytest.mark.parametrize(("hours", "says"), [
    ("9-18", "is not a span of hours"),
    ("09:00-25:00", "is not a span of hours"),
    ("22:00-06:00", "crosses midnight, which is not supported"),
    ("09:00-09:00", "is an empty span"),
])
def test_malformed_hours_are_refused(tmp_path, hours, says):
    path = write_campaign(tmp_path, akorda=f'timezone = "Asia/Almaty"\nhours = "{hours}"')
    with pytest.raises(CampaignError, match=f"targets\\[2\\].hours: '{hours}' {says}"):
        load_campaign(path)


def test_malformed_days_and_hours_without_a_time_zone_are_refused(tmp_path):
    path = write_campaign(tmp_path, top='hours = "09:00-18:00"', akorda='days = "mon-fry"')
    with pytest.raises(CampaignError) as refused:
        load_campaign(path)
    errors = refused.value.errors
    assert any(e.startswith(f"{path}: targets[2].days: 'mon-fry': 'mon-fry' is not a day or a range of days")
               for e in errors)
    # Campaign-wide hours without a timezone: one line, not one per target.
    assert [e for e in errors if "hours: needs a timezone" in e] == [
        f'{path}: hours: needs a timezone, e.g. timezone = "Asia/Almaty" (here or at the top of the file)']


def test_a_time_zone_without_hours_is_refused(tmp_path):
    path = write_campaign(tmp_path, akorda='timezone = "Asia/Almaty"')
    with pytest.raises(CampaignError, match=r"targets\[2\].timezone: applies to no hours"):
        load_campaign(path)


def test_days_may_be_listed_or_a_range_that_wraps():
    assert parse_days("mon-fri")[0] == frozenset({0, 1, 2, 3, 4})
    assert parse_days("sat-sun")[0] == frozenset({5, 6})
    assert parse_days("Fri-Mon")[0] == frozenset({4, 5, 6, 0})
    assert parse_days("mon, wed-thu")[0] == frozenset({0, 2, 3})


def test_campaign_check_rejects_an_unknown_time_zone(tmp_path, runner):
    path = write_campaign(tmp_path, akorda='timezone = "Asia/Almaty2"\nhours = "09:00-18:00"')
    result = runner.invoke(args=["campaign", "check", str(path)])
    assert result.exit_code == 1
    assert f'{path}: targets[2].timezone: "Asia/Almaty2" is not a time zone' in result.output


# The clock: a weekend and the end of March, when Paris changes to summer time (Sunday 29 March 2026)


PARIS_WEEKDAYS = OfficeHours("Europe/Paris", 9 * 60, 18 * 60, frozenset(range(5)), "09:00-18:00", "mon-fri")


def test_hours_are_wall_clock_hours_on_both_sides_of_the_change_to_summer_time():
    # Friday 27 March: UTC+1, so 09:00 in Paris is 08:00 UTC.
    assert not PARIS_WEEKDAYS.is_open(datetime(2026, 3, 27, 7, 59))
    assert PARIS_WEEKDAYS.is_open(datetime(2026, 3, 27, 8, 0))
    assert PARIS_WEEKDAYS.is_open(datetime(2026, 3, 27, 16, 59))
    assert not PARIS_WEEKDAYS.is_open(datetime(2026, 3, 27, 17, 0))
    # Monday 30 March: UTC+2, so 09:00 in Paris is 07:00 UTC.
    assert not PARIS_WEEKDAYS.is_open(datetime(2026, 3, 30, 6, 59))
    assert PARIS_WEEKDAYS.is_open(datetime(2026, 3, 30, 7, 0))
    assert not PARIS_WEEKDAYS.is_open(datetime(2026, 3, 30, 16, 0))


def test_the_next_opening_skips_the_weekend_and_follows_the_change_to_summer_time():
    saturday_noon = datetime(2026, 3, 28, 12, 0)
    assert not PARIS_WEEKDAYS.is_open(saturday_noon)
    assert PARIS_WEEKDAYS.next_opening(saturday_noon) == datetime(2026, 3, 30, 7, 0)
    # After Friday's closing: Monday, whatever the hour on Friday.
    assert PARIS_WEEKDAYS.next_opening(datetime(2026, 3, 27, 17, 0)) == datetime(2026, 3, 30, 7, 0)
    # Before Friday's opening: that morning, at UTC+1.
    assert PARIS_WEEKDAYS.next_opening(datetime(2026, 3, 27, 6, 0)) == datetime(2026, 3, 27, 8, 0)
    # Open: the moment itself; an aware moment gets an aware answer.
    assert PARIS_WEEKDAYS.next_opening(datetime(2026, 3, 27, 9, 0)) == datetime(2026, 3, 27, 9, 0)
    aware = PARIS_WEEKDAYS.next_opening(saturday_noon.replace(tzinfo=UTC))
    assert aware == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    # And back to winter time at the end of October (Sunday 25 October 2026).
    assert PARIS_WEEKDAYS.next_opening(datetime(2026, 10, 24, 12, 0)) == datetime(2026, 10, 26, 8, 0)


# The worker


ALMATY_HOURS = 'timezone = "Asia/Almaty"\nhours = "09:00-18:00"\ndays = "mon-fri"'


@pytest.fixture
def hours_app(make_app, smtp_server, instance_path):
    """An app whose second target (press@akorda.kz) takes letters 09:00-18:00 Almaty time on weekdays."""
    write_campaign(instance_path / "campaigns", akorda=ALMATY_HOURS)
    return smtp_backed_app(make_app, smtp_server)


def arrived(smtp_server):
    return sorted(envelope.rcpt_tos[0] for envelope in smtp_server.inbox.envelopes)


@pytest.mark.slow
def test_letters_wait_for_the_targets_hours_while_the_others_go_out(hours_app, smtp_server):
    night = almaty(2026, 12, 1, 3, 0)  # a Tuesday, 03:00 in Almaty
    with time_machine.travel(night, tick=False):
        sign(hours_app.test_client())
        with hours_app.app_context():
            assert deliver_due() == 5
            waiting = Delivery.query.filter_by(target_key=AKORDA).one()
            assert waiting.status == "pending"
            assert waiting.attempts == 0
            assert waiting.note == "waiting: outside Asia/Almaty office hours 09:00-18:00 mon-fri"
            assert waiting.next_attempt_at == naive_utc(almaty(2026, 12, 1, 9, 0))
            assert deliver_due() == 0
    assert AKORDA not in arrived(smtp_server)
    assert len(arrived(smtp_server)) == 4

    with time_machine.travel(almaty(2026, 12, 1, 8, 59), tick=False), hours_app.app_context():
        assert deliver_due() == 0
    with time_machine.travel(almaty(2026, 12, 1, 9, 0), tick=False), hours_app.app_context():
        assert deliver_due() == 1
        assert Delivery.query.filter_by(target_key=AKORDA).one().status == "sent"
    assert arrived(smtp_server).count(AKORDA) == 1


@pytest.mark.slow
def test_a_backlog_leaves_one_letter_at_a_time_from_the_opening(hours_app, smtp_server):
    backlog_from_the_opening(hours_app, smtp_server)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_backlog_leaves_one_letter_at_a_time_on_postgresql(postgres_cluster, make_app, smtp_server, instance_path):
    write_campaign(instance_path / "campaigns", akorda=ALMATY_HOURS)
    app = smtp_backed_app(make_app, smtp_server, SQLALCHEMY_DATABASE_URI=postgres_cluster())
    backlog_from_the_opening(app, smtp_server)


def backlog_from_the_opening(hours_app, smtp_server):
    """Four letters to a closed target are given turns a minute apart from Monday 09:00; a late one queues behind."""
    # TARGET_HOURLY_CAP = 60: one letter a minute to a target with office hours.
    with time_machine.travel(almaty(2026, 12, 5, 14, 0), tick=False):  # a Saturday: closed all day
        for n in range(4):
            sign(hours_app.test_client(), email=f"signer{n}@example.org", name=f"Signer {n}")
            with hours_app.app_context():
                deliver_due()
    with hours_app.app_context():
        turns = sorted(d.next_attempt_at for d in Delivery.query.filter_by(target_key=AKORDA))
    monday = almaty(2026, 12, 7, 9, 0)
    assert turns == [naive_utc(monday + timedelta(minutes=n)) for n in range(4)]

    with time_machine.travel(monday, tick=False), hours_app.app_context():
        assert deliver_due() == 1
    assert arrived(smtp_server).count(AKORDA) == 1
    # A letter signed in between queues behind the backlog, not before it.
    with time_machine.travel(monday + timedelta(seconds=30), tick=False):
        sign(hours_app.test_client(), email="late@example.org", name="Late Signer")
        with hours_app.app_context():
            assert deliver_due() == 5
            late = Delivery.query.filter_by(target_key=AKORDA, status="pending").order_by(Delivery.id.desc()).first()
            assert late.next_attempt_at == naive_utc(monday + timedelta(minutes=4))
            assert late.note == ("waiting: one letter every 60s to press@akorda.kz within "
                                 "Asia/Almaty office hours 09:00-18:00 mon-fri")
    assert arrived(smtp_server).count(AKORDA) == 1
    with time_machine.travel(monday + timedelta(minutes=1), tick=False), hours_app.app_context():
        assert deliver_due() == 1
    assert arrived(smtp_server).count(AKORDA) == 2


@pytest.mark.slow
def test_the_supporters_own_mail_is_never_held(make_app, smtp_server, instance_path):
    write_campaign(instance_path / "campaigns", top=ALMATY_HOURS)  # every target keeps office hours
    app = smtp_backed_app(make_app, smtp_server, SEND_RECEIPT=True)
    with time_machine.travel(almaty(2026, 12, 1, 3, 0), tick=False):
        sign(app.test_client(), email="anna@example.org")
        with app.app_context():
            deliver_due()
            held = {d.target_key for d in Delivery.query.filter_by(status="pending")}
    assert arrived(smtp_server) == ["anna@example.org"]
    assert held == {t.key for t in load_campaign(instance_path / "campaigns" / f"{SLUG}.toml").targets}
