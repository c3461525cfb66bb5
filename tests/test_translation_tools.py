"""A translator's tools: `make translation-add`, `clamor translations`, and the no-English walk on a new language.

Everything runs in a temporary copy of the repository, as a contributor's
checkout, with a throwaway language (Esperanto, `eo`).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent.parent
LANG = "eo"


def copy_of_the_repository(tmp_path):
    copy = tmp_path / "clamor"
    common = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".pytest_cache")

    def ignore(folder, names):
        # Not this checkout's deployment: its settings, database and outbox.
        mine = {"config.py", "outbox", "plugins"} | {n for n in names if n.startswith("clamor.sqlite3")}
        return common(folder, names) | (mine & set(names) if Path(folder) == ROOT / "instance" else set())

    shutil.copytree(ROOT, copy, ignore=ignore)
    return copy


def run(copy, *args, **kwargs):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLAMOR_")}
    environment.update(PYTHONPATH=str(copy), CLAMOR_INSTANCE_PATH=str(copy / "instance"))
    return subprocess.run(args, cwd=copy, env=environment, capture_output=True, text=True, timeout=600, **kwargs)


def status_rows(copy):
    """``{(language, domain): (translated, missing, fuzzy, copied)}`` from `clamor translations`."""
    result = run(copy, str(VENV / "bin" / "clamor"), "translations")
    assert result.returncode == 0, result.stderr
    rows = {}
    for line in result.stdout.splitlines():
        match = re.match(r"(\S+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+|-)$", line.strip())
        if match:
            rows[match.group(1), match.group(2)] = tuple(match.group(i) for i in range(3, 7))
    return rows


def catalogues(copy, lang):
    return [copy / "translations" / lang / "LC_MESSAGES" / "messages.po",
            *sorted((copy / "plugins" / "translations" / lang / "LC_MESSAGES").glob("*.po"))]


def fill_with_english(path, lang):
    with open(path, "rb") as fh:
        catalog = read_po(fh, locale=lang)
    for message in catalog:
        if message.id:
            if isinstance(message.id, tuple):
                message.string = tuple(message.id[min(i, 1)] for i in range(catalog.num_plurals))
            else:
                message.string = message.id
    with open(path, "wb") as fh:
        write_po(fh, catalog)


@pytest.mark.slow
def test_a_new_language_from_make_translation_add_to_the_no_english_walk(tmp_path):
    copy = copy_of_the_repository(tmp_path)
    pots = ["messages", *sorted(p.stem for p in (copy / "plugins" / "translations").glob("*.pot"))]

    made = run(copy, "make", f"VENV={VENV}", "translation-add", f"LANG={LANG}")
    assert made.returncode == 0, made.stdout + made.stderr
    assert sorted(p.stem for p in catalogues(copy, LANG)) == sorted(pots)  # every domain, not only one

    rows = status_rows(copy)
    for domain in pots:
        translated, missing, fuzzy, copied = rows[LANG, domain]
        assert translated == "0" and fuzzy == "0" and copied == "0", (domain, rows[LANG, domain])
        assert int(missing) > 0
    assert int(rows["fr", "messages"][0]) > 100  # a shipped language: translated

    for path in catalogues(copy, LANG):
        fill_with_english(path, LANG)
        compiled = run(copy, str(VENV / "bin" / "pybabel"), "compile", "-d", str(path.parent.parent.parent),
                       "-D", path.stem, "-l", LANG)
        assert compiled.returncode == 0, compiled.stderr
    rows = status_rows(copy)
    translated, missing, fuzzy, copied = rows[LANG, "messages"]
    assert missing == "0" and int(copied) > 100  # English copies are counted as such, not as translated
    assert int(translated) < 10  # only strings that are placeholders and punctuation

    # The contributor offers the language, as docs/translating.md says: the walk then visits it, and fails.
    config = copy / "app" / "config.py"
    config.write_text(config.read_text().replace('LANGUAGES = ["en", "fr", "ru", "kk"]',
                                                 f'LANGUAGES = ["en", "fr", "ru", "kk", "{LANG}"]'))
    walk = run(copy, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_i18n.py",
               "-k", f"test_pages_show_no_english and {LANG}")
    assert "1 failed" in walk.stdout, walk.stdout[-3000:]
    assert f"English on the {LANG} campaign page" in walk.stdout
