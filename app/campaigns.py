"""Campaign files: ``instance/campaigns/<slug>.toml``, loaded and validated.

A campaign is data an organiser edits by hand, so every problem is reported
with the file and the key at fault (all of them at once, not only the first),
TOML syntax errors come with the offending line and a guess at the mistake,
and the app refuses to serve a campaign that does not validate (``clamor
campaign check`` shows the same messages).
"""

import os
import re
import tomllib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from .campaign_settings import load_settings
from .i18n import language_label
from .office_hours import OfficeHours, with_office_hours
from .phone import FaxNumberError, parse_fax_number
from .toml_errors import describe_toml_error, misplaced_key

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
STATUSES = ("open", "closed")
#: Slugs that would clash with the supporters' signed-link pages (/<lang>/confirm/…).
RESERVED_SLUGS = {"confirm", "unsubscribe", "letter"}
TOP_KEYS = {
    "slug", "status", "closed_at", "default_language", "languages", "goal", "sender", "privacy_url", "contact",
    "targets", "targets_selectable", "overflow", "text",
    "timezone", "hours", "days",  # app/office_hours.py
}
TARGET_KEYS = {"name", "email", "fax", "language", "timezone", "hours", "days"}
#: key -> (type, required) for each language's text.
TEXT_KEYS = {
    "title": (str, True),
    "short_name": (str, True),
    "partners": (list, False),
    "body": (list, True),
    #: One subject, or ``subjects``: variants, one chosen per signature
    #: (both: the subject is one of the variants). At least one is needed.
    "subject": (str, False),
    "subjects": (list, False),
    "letter": (str, True),
    #: The privacy statement; paragraphs separated by blank lines.
    "privacy": (str, False),
}


#: A UTF-8 byte-order mark, which Windows Notepad writes at the start of a file.
BOM = "\ufeff"


class CampaignError(ValueError):
    """A campaign file is invalid; the message names the file and the key, one line per problem.

    ``errors`` lists those lines.
    """

    def __init__(self, errors: str | Iterable[str]) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class Target:
    """Someone a letter is sent to. ``key`` identifies it in Delivery rows."""

    name: str
    email: str | None = None
    fax: str | None = None
    #: The language letters to this target are written in; None: the
    #: campaign's default language.
    language: str | None = None
    #: When letters to this target may go (its keys, else the campaign's); None: at any hour.
    hours: OfficeHours | None = None

    @property
    def channel(self) -> str:
        return "fax" if self.fax else "email"

    @property
    def key(self) -> str | None:
        return self.fax or self.email

    @property
    def address(self) -> str | None:
        return self.email or self.fax


@dataclass(frozen=True)
class CampaignText:
    """The campaign's words in one language."""

    title: str
    short_name: str
    body: list[str]
    subject: str
    letter: str
    partners: list[str] = field(default_factory=list)
    privacy: str | None = None
    #: Every subject a letter may have: ``subject`` first, then the other
    #: variants of ``subjects``. Empty: ``subject`` only.
    subjects: list[str] = field(default_factory=list)

    def subject_for(self, choice: int) -> str:
        """The subject of the letters of a signature whose random ``subject_choice`` is ``choice``.

        The same signature always gets the same subject in one language, on
        every letter and every retry.
        """
        return self.subjects[choice % len(self.subjects)] if self.subjects else self.subject

    @property
    def privacy_paragraphs(self) -> list[str]:
        """The privacy statement split at blank lines, or [] when the file has none."""
        return [p.strip() for p in re.split(r"\n\s*\n", self.privacy or "") if p.strip()]


@dataclass(frozen=True)
class Campaign:
    slug: str
    status: str
    default_language: str
    languages: list[str]
    targets: list[Target]
    texts: dict[str, CampaignText]
    goal: int | None = None
    sender: str = ""
    path: Path | None = None
    #: The day the campaign closed; retention (RETENTION_DAYS) counts from it.
    closed_at: date | None = None
    #: An external privacy statement, used instead of the built-in page.
    privacy_url: str | None = None
    #: The organisers' email address, shown on the privacy page and the closed page.
    contact: str | None = None
    #: What the loader fixed by itself (a byte-order mark removed), for ``campaign check``.
    notes: tuple[str, ...] = ()
    #: Supporters tick the targets their letter goes to (app/target_choice.py); False: every target gets one.
    targets_selectable: bool = False
    #: What happens to letters a target's TARGET_HOURLY_CAP holds back: "wait"
    #: for their turn, or "digest": after DIGEST_AFTER seconds, they go in that
    #: target's next daily digest (app/digests.py).
    overflow: str = "wait"

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    def text(self, language: str) -> CampaignText:
        """Return the :class:`CampaignText` in ``language``, else in the default language."""
        return self.texts.get(language) or self.texts[self.default_language]

    def target(self, key: str) -> Target | None:
        """The target whose :attr:`Target.key` is ``key``, or None."""
        return next((target for target in self.targets if target.key == key), None)

    def is_edited(self, message: str, language: str) -> bool:
        """True when ``message`` differs from the letter the page in ``language`` offers.

        Line endings and spaces at the ends of lines do not count: a browser
        sends CRLF, and an editor may leave a trailing space.
        """
        return _normalised(message) != _normalised(self.text(language).letter)


def _normalised(letter):
    return "\n".join(line.rstrip() for line in letter.replace("\r\n", "\n").replace("\r", "\n").strip().split("\n"))


def load_campaign(path: str | os.PathLike[str], known_languages: Collection[str] | None = None) -> Campaign:
    """Parse and validate one campaign file; raise :class:`CampaignError` listing every problem."""
    path = Path(path)
    source, notes = _read_source(path)
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError(f"{path}: not valid TOML: {describe_toml_error(str(exc), source)}") from exc

    errors = []

    def fail(key, message):
        errors.append(f"{path}: {key}: {message}")

    lines = source.splitlines()
    for key in sorted(set(data) - TOP_KEYS):
        fail(key, "unknown key (a typo?)")
    for key in ("slug", "default_language", "languages", "targets", "text"):
        if key not in data:
            fail(key, "missing")
    slug, status = _load_slug_and_status(data, path, fail)
    languages, default_language = _load_languages(data, known_languages, fail)
    settings = load_settings(data, fail)
    targets = _load_targets(data["targets"], languages, fail, lines) if "targets" in data else []
    texts = _load_texts(data["text"], languages, fail, lines) if "text" in data else {}
    targets = with_office_hours(data, targets, fail)
    if errors:
        raise CampaignError(errors)
    return Campaign(slug=slug, status=status, default_language=default_language, languages=list(languages),
                    targets=targets, texts=texts, path=path, notes=tuple(notes), **settings)


def _read_source(path):
    """(the text of the file at ``path``, what was fixed on the way); :class:`CampaignError` if it is no UTF-8 text."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CampaignError(f"{path}: cannot be read: {exc.strerror}") from exc
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CampaignError(f"{path}: line {line}: not UTF-8 text; save the file as UTF-8") from exc
    notes = []
    if source.startswith(BOM):
        # Harmless, invisible, and written by Notepad: TOML forbids it, Clamor drops it.
        source = source[len(BOM):]
        notes.append("removed a UTF-8 byte-order mark (BOM) at the start of the file")
    return source, notes


def _load_slug_and_status(data, path, fail):
    """(slug, status) of the campaign; what is wrong with them goes to ``fail``."""
    slug = data.get("slug", path.stem)
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        fail("slug", "must be lower-case letters, digits and hyphens")
    elif slug in RESERVED_SLUGS:
        fail("slug", f"{slug!r} is reserved for Clamor's own pages; choose another")
    elif path.suffix == ".toml" and path.stem != slug:
        fail("slug", f"is {slug!r} but the file is named {path.name!r}; they must match")
    status = data.get("status", "open")
    if status not in STATUSES:
        fail("status", f"must be one of {', '.join(STATUSES)}, not {status!r}")
    return slug, status


def _load_languages(data, known_languages, fail):
    """(languages, default language) of the campaign, checked against ``known_languages`` (LANGUAGES) if given."""
    languages = data.get("languages", [])
    if not isinstance(languages, list) or not languages or not all(isinstance(x, str) for x in languages):
        if "languages" in data:
            fail("languages", "must be a non-empty list of language codes")
        languages = []
    if known_languages is not None:
        for lang in languages:
            if lang not in known_languages:
                fail("languages", f"{lang!r} is not in LANGUAGES ({', '.join(known_languages)})")
    default_language = data.get("default_language")
    if "default_language" in data and default_language not in languages:
        fail("default_language", f"{default_language!r} is not in languages")
    return languages, default_language


def _load_targets(raw, languages, fail, lines=()):
    if not isinstance(raw, list) or not raw:
        fail("targets", "must list at least one target ([[targets]] tables, with double brackets)")
        return []
    targets, keys = [], set()
    for i, item in enumerate(raw, 1):
        where = f"targets[{i}]"
        if not isinstance(item, dict):
            fail(where, "must be a table with name and email (or fax)")
            continue
        for key in sorted(set(item) - TARGET_KEYS):
            fail(f"{where}.{key}", "unknown key (a typo?)" + misplaced_key(key, "[[targets]]", lines, TOP_KEYS))
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            fail(f"{where}.name", "missing")
            name = ""
        email, fax = item.get("email"), item.get("fax")
        if bool(email) == bool(fax):
            fail(where, "needs exactly one of email or fax")
        if email is not None:
            try:
                email = validate_email(email, check_deliverability=False).normalized
            except (EmailNotValidError, TypeError) as exc:
                fail(f"{where}.email", f"{email!r} is not an email address ({exc})")
        if fax is not None:
            if not isinstance(fax, str):
                fail(f"{where}.fax", f"{fax!r} is not a fax number (write it as a string in quotes)")
            else:
                try:
                    parse_fax_number(fax)
                except FaxNumberError as exc:
                    fail(f"{where}.fax", f"{exc}: write it in international (E.164) form, "
                                         "a + then the country code and number, e.g. \"+7 7172 12 34 56\"")
        language = item.get("language")
        if language is not None and language not in languages:
            fail(f"{where}.language", f"{language!r} is not one of the campaign's languages")
        target = Target(name=name.strip(), email=email, fax=fax, language=language)
        if target.key in keys:
            fail(where, f"{target.key} is listed twice")
        keys.add(target.key)
        targets.append(target)
    return targets


def _load_texts(raw, languages, fail, lines=()):
    if not isinstance(raw, dict):
        fail("text", "must hold one table per language ([text.fr] …)")
        return {}
    texts = {}
    for lang in languages:
        section = raw.get(lang)
        if not isinstance(section, dict):
            fail(
                f"text.{lang}",
                f"missing: the campaign is offered in {language_label(lang)}, so it needs a [text.{lang}] "
                "section with its title, short_name, body, subject and letter in that language",
            )
            continue
        for key in sorted(set(section) - set(TEXT_KEYS)):
            fail(f"text.{lang}.{key}", "unknown key (a typo?)" + misplaced_key(key, f"[text.{lang}]", lines, TOP_KEYS))
        values = {}
        for key, (kind, required) in TEXT_KEYS.items():
            value = section.get(key)
            if value is None:
                if required:
                    fail(f"text.{lang}.{key}", "missing")
                continue
            if not isinstance(value, kind) or (kind is list and not all(isinstance(x, str) for x in value)):
                fail(f"text.{lang}.{key}", "must be " + ("a list of strings" if kind is list else "a string"))
                continue
            if required and not value or (kind is str and not value.strip()):
                fail(f"text.{lang}.{key}", "is empty")
            values[key] = value.strip() if kind is str else [x.strip() for x in value]
        _subjects(values, lang, fail)
        try:
            texts[lang] = CampaignText(**values)
        except TypeError:
            pass  # a required key is missing: reported above
    for lang in sorted(set(raw) - set(languages)):
        fail(f"text.{lang}", "is not in languages")
    return texts


def _subjects(values, lang, fail):
    """Make ``values``' subject and subjects one list of variants, the subject first; report what is missing."""
    variants = values.pop("subjects", [])
    if any(not v for v in variants):
        fail(f"text.{lang}.subjects", "has an empty subject")
    pool = list(dict.fromkeys(([values["subject"]] if values.get("subject") else []) + [v for v in variants if v]))
    if not pool:
        if "subject" not in values:
            fail(f"text.{lang}.subject", "missing (or give subjects = [\"…\", \"…\"])")
        return
    values["subject"] = pool[0]
    if len(pool) > 1:
        values["subjects"] = pool


def load_campaigns(
    folder: str | os.PathLike[str], known_languages: Collection[str] | None = None,
) -> dict[str, Campaign]:
    """Return ``{slug: Campaign}`` for every ``*.toml`` in ``folder`` (sorted by slug)."""
    folder = Path(folder)
    campaigns = {}
    for path in sorted(folder.glob("*.toml")) if folder.is_dir() else ():
        campaign = load_campaign(path, known_languages)
        campaigns[campaign.slug] = campaign
    return campaigns
