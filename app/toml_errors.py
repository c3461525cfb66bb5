"""What a TOML syntax error in a campaign file means, said so that an organiser can fix it.

tomllib names only the first error and says it in parser terms ("Invalid
value"); :func:`describe_toml_error` quotes the offending line and adds the
likely mistake and what to write instead. :func:`misplaced_key` explains the
commonest valid-TOML mistake: a top-level key written below a table header.
"""

import re
from collections.abc import Collection, Sequence

_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)$")
_CURLY_QUOTES = "\u201c\u201d\u201e\u2018\u2019\u00ab\u00bb"


def describe_toml_error(message: str, source: str) -> str:
    """tomllib's ``message`` about ``source``, with the offending line quoted and a likely cause and fix.

    tomllib names only the first error and says it in parser terms ("Invalid
    value"); an organiser needs to know which line, what is probably wrong,
    and what to write instead.
    """
    match = _TOML_POSITION.search(message)
    lines = source.splitlines()
    if not match or not lines:
        return message
    number = int(match.group(1))
    reason = message[: match.start()].strip()
    line = lines[number - 1] if number <= len(lines) else ""
    hint = _toml_hint(reason, line, lines, number)
    quoted = f"line {number}: {line.strip()}"
    return f"{quoted}\n  tomllib says: {reason}" + (f"\n  probably: {hint}" if hint else "")


def _toml_hint(reason, line, lines, number):
    if any(q in line for q in _CURLY_QUOTES):
        return ("curly quotes (“…” or ‘…’): TOML needs straight quotes \"…\"; a word processor or a phone "
                "keyboard may have changed them. Retype the quotes around the value in a plain-text editor")
    if reason.startswith("Illegal character '\\n'") or "Unclosed" in reason and "string" in reason:
        return ('a text of several lines (the letter) in "…": a string in single double quotes must end on '
                'the same line. Put a text of several lines between triple quotes: letter = """ … """')
    if reason.startswith("Expected newline or end of document after a statement") and line.count('"') > 2:
        return ('a " inside a string ends it early: write \\" for a quotation mark inside the text, use '
                "typographic quotes «…», or put the text between single quotes '…'")
    if reason.startswith("Unclosed array"):
        return ("a missing comma in a list: every item of a list [ … ] but the last must be followed by a comma, "
                "e.g. [\"fr\", \"en\"] (on this line or at the end of the one above)")
    if reason.startswith(("Cannot overwrite a value", "Cannot declare")):
        single = next((f"line {i} `{t.strip()}`" for i, t in enumerate(lines, 1) if t.strip() == "[targets]"), None)
        if single:
            return (f"{single} has single brackets: each target is one entry of a list of tables, written "
                    "[[targets]] with double brackets, once per target")
        return "the same key or [table] is written twice: keep one of them (or use [[double brackets]] for a list)"
    if reason.startswith("Invalid statement") and number == 1 and line.startswith("\ufeff"):
        return "the file starts with a byte-order mark; save it as UTF-8 without BOM"
    if reason.startswith("Invalid value"):
        return 'a value must be a "string" in straight quotes, a number, true/false, a date or a [list]'
    return ""


def misplaced_key(key: str, header: str, lines: Sequence[str], top_keys: Collection[str]) -> str:
    """A hint when ``key`` (one of ``top_keys``) was written below ``header`` and so landed in that table."""
    if key not in top_keys:
        return ""
    inside = False
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("["):
            inside = stripped.split("#")[0].strip() == header
        elif inside and re.match(rf"{re.escape(key)}\s*=", stripped):
            return (f": line {number} `{stripped}` is a top-level key, but it comes after the {header} header, "
                    f"so TOML puts it in that table; move it above the first [...] header of the file")
    return f": {key} is a top-level key; move it above the first [...] header of the file"
