"""`clamor campaign check` on the mistakes organisers really make: what is wrong, where, and how to fix it.

Each case edits the shipped example the way a newcomer did, runs the real
command, and looks for the offending line (number and text) and the hint.
"""

import re

import pytest
from conftest import EXAMPLE_CAMPAIGNS, SLUG
from test_cli import clamor

EXAMPLE = (EXAMPLE_CAMPAIGNS / f"{SLUG}.toml").read_text(encoding="utf-8")


def line_of(text, needle):
    """The number of the line that is ``needle`` (else the first that holds it)."""
    lines = text.splitlines()
    exact = [i for i, line in enumerate(lines, 1) if line.strip() == needle]
    return exact[0] if exact else next(i for i, line in enumerate(lines, 1) if needle in line)


def check(tmp_path, text):
    path = tmp_path / f"{SLUG}.toml"
    path.write_text(text, encoding="utf-8")
    return clamor("campaign", "check", str(path), instance=tmp_path / "no-instance")


def letter_in_plain_quotes(text):
    # The English letter between "…" instead of """…""".
    start = text.index("[text.en]")
    head, tail = text[:start], text[start:]
    tail = tail.replace('letter = """', 'letter = "', 1)
    return head + tail


CASES = {
    "curly quotes": (
        lambda t: t.replace('sender = "LabourStart"', "sender = \u201cLabourStart\u201d"),
        "sender = \u201cLabourStart\u201d", r"curly quotes .*straight quotes",
    ),
    "a quote inside a string": (
        lambda t: t.replace('subject = "Free Erzhan Elshibayev"', 'subject = "Free "Erzhan" Elshibayev"'),
        'subject = "Free "Erzhan" Elshibayev"', r'a " inside a string ends it early: write \\"',
    ),
    "a missing comma in a list": (
        lambda t: t.replace('languages = ["fr", "en",', 'languages = ["fr" "en",'),
        'languages = ["fr" "en",', r"a missing comma in a list",
    ),
    "[targets] instead of [[targets]]": (
        lambda t: t.replace("[[targets]]", "[targets]", 1),
        "[targets]", r"single brackets: .*\[\[targets\]\] with double brackets",
    ),
    "a letter in plain quotes": (
        letter_in_plain_quotes, 'letter = "', r'triple quotes: letter = """',
    ),
    "goal after the last [text] table": (
        lambda t: t.replace("goal = 2000", "") + "\ngoal = 600\n",
        "goal = 600", r"text\.kk\.goal: unknown key.*top-level key.*after the \[text\.kk\] header.*move it above",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("mistake", CASES, ids=list(CASES))
def test_each_toml_mistake_gets_its_line_and_a_hint(tmp_path, mistake):
    change, offending, hint = CASES[mistake]
    text = change(EXAMPLE)
    assert text != EXAMPLE
    result = check(tmp_path, text)
    assert result.returncode == 1, result.stdout
    number = line_of(text, offending) if mistake != "[targets] instead of [[targets]]" else None
    if number is not None:
        assert f"line {number}" in result.stderr, result.stderr
    assert offending in result.stderr
    assert re.search(hint, result.stderr), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_byte_order_mark_is_dropped_and_said(tmp_path):
    result = check(tmp_path, "\ufeff" + EXAMPLE)
    assert result.returncode == 0, result.stderr
    assert "byte-order mark (BOM)" in result.stdout
    assert "ok: " in result.stdout


@pytest.mark.slow
def test_every_validation_error_is_reported_at_once(tmp_path):
    text = (EXAMPLE.replace('default_language = "fr"', 'default_language = "de"')
            .replace('email = "press@mfa.kz"', 'email = "press at mfa"')
            .replace("goal = 2000", "goal = -5"))
    result = check(tmp_path, text)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3, result.stderr
    assert any("default_language: 'de' is not in languages" in e for e in errors)
    assert any("targets[3].email" in e for e in errors)
    assert any("goal: must be a positive whole number" in e for e in errors)


@pytest.mark.slow
def test_contact_must_be_an_email_address(tmp_path):
    result = check(tmp_path, EXAMPLE.replace("goal = 2000", 'goal = 2000\ncontact = "the organisers"'))
    assert result.returncode == 1
    assert "contact: 'the organisers' is not an email address" in result.stderr
    good = check(tmp_path, EXAMPLE.replace("goal = 2000", 'goal = 2000\ncontact = "campaigns@union.example"'))
    assert good.returncode == 0, good.stderr


@pytest.mark.slow
def test_the_slug_must_match_the_file_name(tmp_path):
    path = tmp_path / "another-name.toml"
    path.write_text(EXAMPLE, encoding="utf-8")
    result = clamor("campaign", "check", str(path), instance=tmp_path / "no-instance")
    assert result.returncode == 1
    assert f"slug: is '{SLUG}' but the file is named 'another-name.toml'; they must match" in result.stderr
