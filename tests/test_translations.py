"""The shipped catalogues: complete, not fuzzy, in step with the code, plural forms right."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
#: Every shipped language: a new catalogue is checked as soon as it exists.
LANGUAGES = sorted(p.parent.parent.name for p in (ROOT / "translations").glob("*/LC_MESSAGES/messages.po"))
PYBABEL = Path(sys.executable).parent / "pybabel"
# The same options as the Makefile's EXTRACT: keep them in step.
EXTRACT = [str(PYBABEL), "--quiet", "extract", "-k", "_l", "-k", "lazy_gettext", "-k", "lazy_ngettext",
           "--no-location", "--sort-output", "--project=Clamor"]
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]")


def plugin_domains():
    return sorted(p.stem for p in (ROOT / "plugins" / "translations").glob("*.pot"))


def catalogue_dirs():
    """``(domain, translations folder, source arguments for extraction)`` for every shipped domain."""
    yield "messages", ROOT / "translations", ["-F", "babel.cfg", "."]
    for domain in plugin_domains():
        yield domain, ROOT / "plugins" / "translations", [f"plugins/{domain}.py"]


DOMAINS = list(catalogue_dirs())


def read(path, locale=None):
    with open(path, "rb") as fh:
        return read_po(fh, locale=locale)


def msgids(catalog):
    return {m.id for m in catalog if m.id}


def test_the_four_languages_are_shipped():
    assert {"en", "fr", "ru", "kk"} <= set(LANGUAGES)


def test_the_number_question_ships_its_own_domain():
    assert "number_question" in plugin_domains()
    core = msgids(read(ROOT / "translations" / "messages.pot"))
    assert not any("Stop spam" in str(m) for m in core)


@pytest.mark.slow
@pytest.mark.parametrize("domain, folder, sources", DOMAINS, ids=[d[0] for d in DOMAINS])
def test_pot_is_up_to_date_with_the_code(domain, folder, sources, tmp_path):
    fresh = tmp_path / f"{domain}.pot"
    subprocess.run([*EXTRACT, "-o", str(fresh), *sources], cwd=ROOT, check=True, capture_output=True)
    extracted = msgids(read(fresh))
    assert extracted, "extraction found no strings at all"
    shipped = msgids(read(folder / f"{domain}.pot"))
    assert shipped == extracted, "run `make translations`: the .pot differs from the code"
    for lang in LANGUAGES:
        catalog = read(folder / lang / "LC_MESSAGES" / f"{domain}.po", locale=lang)
        assert msgids(catalog) == extracted, f"{lang}/{domain}.po: missing or obsolete entries"


@pytest.mark.slow
@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("domain, folder, sources", DOMAINS, ids=[d[0] for d in DOMAINS])
def test_catalogue_is_complete_and_not_fuzzy(domain, folder, sources, lang):
    path = folder / lang / "LC_MESSAGES" / f"{domain}.po"
    catalog = read(path, locale=lang)
    # The header's plural rule is CLDR's for the language (French has three
    # forms since CLDR 42: 1, "1 000 000 de …", and the rest).
    expected = get_plural(lang)
    assert catalog.num_plurals == expected.num_plurals, f"{path}: wrong number of plural forms"
    assert catalog.plural_expr.replace(" ", "").strip("()") == expected.plural_expr.replace(" ", "").strip("()")
    problems = []
    for message in catalog:
        if not message.id:
            continue
        label = message.id[0] if isinstance(message.id, tuple) else message.id
        if message.fuzzy:
            problems.append(f"fuzzy: {label!r}")
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        if len(forms) != (catalog.num_plurals if message.pluralizable else 1) or not all(forms):
            problems.append(f"untranslated: {label!r}")
        wanted = set(PLACEHOLDER.findall(label))
        for form in forms:
            if form and set(PLACEHOLDER.findall(form)) != wanted:
                problems.append(f"placeholders differ: {label!r} -> {form!r}")
    assert problems == [], f"{path}:\n" + "\n".join(problems)
