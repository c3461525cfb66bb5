"""Writing a letter's bytes: headers Clamor encodes itself, the body encoded once.

The encoded-words and the folding of header lines are :mod:`app.header_folding`.

Every display name and subject in a letter is text someone typed (a
supporter's name and organisation, a campaign's names, a target's name).
Clamor writes each of them into the header itself, from pieces it encoded, and
never hands them to an email library that might decode them: a name such as
``=?utf-8?q?Eve=0D=0ABcc=3A_x?=`` is data, and is written as data (as an
encoded-word whose decoded text is exactly that string), whatever the
interpreter's patch level (CVE-2024-6923 was the email package decoding such
a name into a header while folding it).

What this module writes:

- a display name whose words are all RFC 5322 ``atext`` (``Anna Example``)
  goes as those atoms; every other word, and any word containing ``=?``, goes
  as RFC 2047 encoded-words (UTF-8, ``B`` or ``Q``, whichever is shorter), at
  most 75 characters each, split only between words, with the spaces between
  encoded words inside them (RFC 2047 §6.2: whitespace between two adjacent
  encoded-words is not part of the text). A single word too long for one
  encoded-word is split between characters, never inside a UTF-8 sequence.
  No quoted-strings: an encoded-word hides every special (``,``, ``<``, ``"``)
  from even a naive parser;
- an unstructured value (Subject) in the same way, except that every
  printable ASCII word may go as it is;
- header lines folded at the spaces between tokens, at most 76 characters
  (RFC 2047's limit for lines with encoded-words; RFC 5322 asks for 78)
  except where a single token is longer (a long address);
- CRLF line ends; only ASCII.

A known reader's quirk, not a fault in what is written: CPython's modern
parser (``policy.default``) up to gh-128110 reads the whitespace between two
adjacent encoded-words in an address as a space, so a name long enough to
need two encoded-words shows an extra space at the word gap there (mail
clients, and ``email.header.decode_header``, follow RFC 2047).
"""

import binascii
import functools
import re
import secrets
from datetime import UTC
from email.utils import format_datetime
from typing import TYPE_CHECKING

from .header_folding import ENCODED_WORD_LENGTH, LINE_LENGTH, HeaderField  # noqa: F401 (app.mailbytes' names)

if TYPE_CHECKING:
    from .delivery.contract import Letter

_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\Z")
_PRINTABLE = re.compile(r"[\x21-\x7e]+\Z")
#: What may never be in a header value at all, encoded or not: a decoder
#: that writes the text back out would write a line break.
_FORBIDDEN = re.compile(r"[\r\n\x00]")
#: An addr-spec Clamor writes: a dot-atom local part (no quoted local parts)
#: and a host name or an address literal.
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\Z")
_ADDRESS_LITERAL = re.compile(r"\[[\x21-\x5a\x5e-\x7e]+\]\Z")
_MESSAGE_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>\Z")
_MIME_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\Z")
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*\Z")
_TOKEN_FILENAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+\Z")

#: Base64 bodies and attachments: 57 bytes make one 76-character line.
_BASE64_CHUNK = 57


class HeaderError(ValueError):
    """A value that cannot be written into a letter (a line break in a name, a bad address)."""


# -- words ----------------------------------------------------------------------------------------

def _atom(word):
    return _ATEXT.match(word) is not None and "=?" not in word


def _unstructured_word(word):
    return _PRINTABLE.match(word) is not None and "=?" not in word


def _check_text(value, what):
    if not isinstance(value, str):
        raise HeaderError(f"{what} must be text, not {type(value).__name__}")
    if _FORBIDDEN.search(value):
        raise HeaderError(f"{what} contains a line break or NUL")


# -- the public encoders --------------------------------------------------------------------------

def encode_display_name(name: str) -> str:
    """``name`` as an RFC 5322 phrase on one line (unfolded), or "" for an empty name.

    Promises: the phrase decodes (RFC 2047) to exactly ``name``; it is atoms and
    encoded-words only, so no special character (``,`` ``<`` ``"`` ``;`` …)
    is left for a parser to act on and nothing in ``name`` is decoded;
    each encoded-word is at most 75 characters and holds whole words unless a
    single word is too long for one. Raises :class:`HeaderError` for CR, LF or
    NUL, which no header value can carry safely.
    """
    _check_text(name, "a display name")
    if not name:
        return ""
    field = HeaderField()
    field.add_words(name, _atom)
    return field.unfolded()


def encode_unstructured(text: str) -> str:
    """``text`` as an unstructured header value (Subject) on one line (unfolded).

    Promises: decodes to exactly ``text``; printable ASCII words stay as they
    are, other runs of words become encoded-words of at most 75 characters,
    split between words. Raises :class:`HeaderError` for CR, LF or NUL.
    """
    _check_text(text, "a header value")
    field = HeaderField()
    field.add_words(text, _unstructured_word)
    return field.unfolded()


def addr_spec(address: str) -> str:
    """``address`` checked and in ASCII, ready for a header and the SMTP envelope.

    An internationalised domain is written in IDNA (punycode). Raises
    :class:`HeaderError` for a line break, NUL, space or any other character an
    addr-spec may not have, for a local part that is not ASCII (Clamor does not
    speak SMTPUTF8) and for a quoted local part.
    """
    if not isinstance(address, str) or not address:
        raise HeaderError("an address is missing")
    if _FORBIDDEN.search(address):
        raise HeaderError("an address contains a line break or NUL")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise HeaderError(f"{address!r} is not an email address")
    if not local.isascii():
        raise HeaderError(f"{address!r} has a local part that is not ASCII (SMTPUTF8 is not supported)")
    if not _LOCAL_PART.match(local):
        raise HeaderError(f"{address!r} has a local part Clamor does not write")
    if _ADDRESS_LITERAL.match(domain):
        return address
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise HeaderError(f"{address!r} has a domain that is not a valid host name") from exc
    if not _HOST.match(domain) or len(domain) > 253:
        raise HeaderError(f"{address!r} has a domain that is not a valid host name")
    return f"{local}@{domain}"


def format_address(display_name: str | None, address: str) -> str:
    """``Display Name <addr-spec>`` (unfolded), or the bare addr-spec when the name is empty.

    The name as :func:`encode_display_name` writes it; the address as
    :func:`addr_spec` checks it. Raises :class:`HeaderError`.
    """
    spec = addr_spec(address)
    phrase = encode_display_name(display_name or "")
    return f"{phrase} <{spec}>" if phrase else spec


def _address_field(name, display_name, address):
    spec = addr_spec(address)
    _check_text(display_name or "", "a display name")
    field = HeaderField(name)
    if display_name:
        field.add_words(display_name, _atom)
        field.add(f"<{spec}>")
    else:
        field.add(spec)
    return field.text()


def _unstructured_field(name, text):
    _check_text(text, f"the {name}")
    field = HeaderField(name)
    if text:
        field.add_words(text, _unstructured_word)
    return field.text()


# Campaign data only (a target's name and address, a campaign's subject),
# which every letter to that target repeats; never a supporter's name or
# text, which would then outlive the batch in a long-running worker.
_target_field = functools.lru_cache(maxsize=512)(_address_field)
_subject_field = functools.lru_cache(maxsize=128)(_unstructured_field)


# -- the body -------------------------------------------------------------------------------------

def _base64_lines(data):
    return "".join(binascii.b2a_base64(data[i:i + _BASE64_CHUNK]).decode("ascii")[:-1] + "\r\n"
                   for i in range(0, len(data), _BASE64_CHUNK))


def encode_body(text: str) -> tuple[str, str]:
    """(Content-Transfer-Encoding, encoded body) for ``text`` as UTF-8 with CRLF line ends.

    7bit when the text is ASCII in lines of at most 998 characters; otherwise
    quoted-printable or base64, whichever is shorter. Line ends in ``text``
    (LF, CRLF or CR) become CRLF; the body ends with one.
    """
    lines = text.encode("utf-8").splitlines()
    data = b"\r\n".join(lines) + b"\r\n"
    if data.isascii() and b"\x00" not in data and all(len(line) <= 998 for line in lines):
        return "7bit", data.decode("ascii")
    quoted = binascii.b2a_qp(data, istext=True, header=False)
    if len(quoted) * 3 <= len(data) * 4:
        return "quoted-printable", quoted.decode("ascii")
    return "base64", _base64_lines(data)


def _disposition(filename):
    """The Content-Disposition field of an attachment called ``filename``, folded."""
    _check_text(filename, "an attachment's file name")
    if _TOKEN_FILENAME.match(filename) and len(filename) <= 40:
        return f'Content-Disposition: attachment; filename="{filename}"\r\n'
    # RFC 2231: the name as UTF-8, percent-encoded, in numbered sections of
    # whole characters so that each fits on a line of its own.
    sections, section = [], ""
    for char in filename:
        encoded = "".join(chr(b) if chr(b).isalnum() and b < 128 or chr(b) in "-._~" else f"%{b:02X}"
                          for b in char.encode("utf-8"))
        if len(section) + len(encoded) > 48:
            sections.append(section)
            section = ""
        section += encoded
    sections.append(section)
    sections[0] = "utf-8''" + sections[0]
    parameters = [f"filename*{n}*={text}" for n, text in enumerate(sections)]
    return "Content-Disposition: attachment;\r\n " + ";\r\n ".join(parameters) + "\r\n"


def new_boundary() -> str:
    """A random multipart boundary that cannot occur in base64, quoted-printable or 7bit lines we write."""
    return "=_clamor_" + secrets.token_hex(16)


# -- the letter -----------------------------------------------------------------------------------

def letter_headers(letter: "Letter", to_address: str | None = None) -> str:
    """The top-level header fields of ``letter`` without MIME ones, as one CRLF-ended str."""
    message_id = letter.message_id
    if not isinstance(message_id, str) or not _MESSAGE_ID.match(message_id):
        raise HeaderError(f"Message-ID {message_id!r} is not <token@domain>")
    language = letter.language
    if not isinstance(language, str) or not _LANGUAGE_TAG.match(language):
        raise HeaderError(f"language {language!r} is not a language tag")
    # A letter to a campaign's target (not a supporter's own email) has campaign data in To and Subject.
    to_field, subject_field = (
        (_target_field, _subject_field) if letter.target_key else (_address_field, _unstructured_field)
    )
    return (
        _address_field("From", letter.from_name, letter.from_address)
        + _address_field("Reply-To", letter.reply_to_name, letter.reply_to_address)
        + to_field("To", letter.to_name, to_address or letter.to_address)
        + subject_field("Subject", letter.subject)
        + f"Date: {format_datetime(_utc(letter.date))}\r\n"
        + f"Message-ID: {message_id}\r\n"
        + "MIME-Version: 1.0\r\n"
        + f"Content-Language: {language}\r\n"
    )


def _utc(moment):
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def letter_bytes(letter: "Letter", to_address: str | None = None) -> bytes:
    """The whole of ``letter`` as the bytes of an RFC 5322 message, ready for SMTP DATA or a .eml file.

    ``to_address`` overrides the recipient in ``To`` (a fax gateway's address).
    Headers: From, Reply-To, To, Subject, Date, Message-ID, MIME-Version,
    Content-Language, Content-Type, Content-Transfer-Encoding, and nothing
    else. The body is text/plain; charset=utf-8. With attachments the message
    is multipart/mixed (a random boundary): the text first, then each
    attachment in base64 with its file name. ASCII only, CRLF line ends.
    Raises :class:`HeaderError` (a ``ValueError``) for a letter that cannot
    be written: a line break in a name, an address that is not one.
    """
    head = letter_headers(letter, to_address)
    encoding, body = encode_body(letter.body)
    text_headers = f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {encoding}\r\n"
    if not letter.attachments:
        return (head + text_headers + "\r\n" + body).encode("ascii")
    boundary = new_boundary()
    parts = [head, f'Content-Type: multipart/mixed;\r\n boundary="{boundary}"\r\n\r\n',
             f"--{boundary}\r\n", text_headers, "\r\n", body]
    for filename, mime_type, data in letter.attachments:
        if not isinstance(mime_type, str) or not _MIME_TYPE.match(mime_type):
            raise HeaderError(f"attachment type {mime_type!r} is not a MIME type")
        parts += [
            # The CRLF before a delimiter belongs to the delimiter (RFC 2046 §5.1.1), not to the part.
            f"\r\n--{boundary}\r\n",
            f"Content-Type: {mime_type.lower()}\r\n",
            "Content-Transfer-Encoding: base64\r\n",
            _disposition(filename) + "\r\n",
            _base64_lines(bytes(data)),
        ]
    parts.append(f"\r\n--{boundary}--\r\n")
    return "".join(parts).encode("ascii")
