"""RFC 2047 encoded-words and the folding of header lines, for :mod:`app.mailbytes`.

A :class:`HeaderField` is one header field being written: atoms and
encoded-words (UTF-8, ``B`` or ``Q``, whichever is shorter, at most 75
characters, split between words) joined by spaces, folded before a token that
would not fit in :data:`LINE_LENGTH`. What may go into it unencoded is for the
caller to say: this module checks nothing and encodes whatever it is told to.
"""

import base64
import re
from collections.abc import Callable

#: Longest header line written, where folding can achieve it.
LINE_LENGTH = 76

#: RFC 2047 §2: an encoded-word is at most 75 characters.
ENCODED_WORD_LENGTH = 75

#: ``=?utf-8?b?`` + ``?=``.
_EW_OVERHEAD = 12

#: Pieces of a text to be encoded: each word with the space after it.
_PIECES = re.compile(r"[^ ]+ ?| ")

#: Bytes a Q encoded-word may carry as they are in a phrase (RFC 2047 §5 (3)).
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")

_Q_BYTES = ["_" if b == 0x20 else chr(b) if b in _Q_SAFE else f"={b:02X}" for b in range(256)]

_Q_AS_IS = bytes(_Q_SAFE) + b" "


def _cost(text):
    """(UTF-8 bytes, characters as Q) of ``text``."""
    data = text.encode("utf-8")
    # Each byte outside the safe set (and the space, written "_") takes three characters.
    return len(data), len(data) + 2 * len(data.translate(None, _Q_AS_IS))


def _ew_length(nbytes, qlength):
    return _EW_OVERHEAD + min(4 * -(-nbytes // 3), qlength)


def _encoded_word(text):
    """``text`` as one UTF-8 encoded-word, B or Q, whichever is shorter."""
    data = text.encode("utf-8")
    nbytes, qlength = _cost(text)
    if 4 * -(-nbytes // 3) < qlength:
        return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?="
    return f"=?utf-8?q?{''.join(map(_Q_BYTES.__getitem__, data))}?="


def _split_word(piece, budget):
    """Split ``piece`` into a head that fits ``budget`` and the rest: after its last hyphen that fits, else anywhere.

    RFC 2047 decoders join the two halves again; some (Python's own
    policy.default, cpython gh-128110; some mail apps) show a space between
    them, so a double surname is better cut at its hyphen than mid-name.
    """
    nbytes = qlength = 0
    for end, char in enumerate(piece):
        char_bytes, char_q = _cost(char)
        if end and _ew_length(nbytes + char_bytes, qlength + char_q) > budget:
            hyphen = piece.rfind("-", 1, end)
            end = hyphen + 1 if hyphen > 0 else end
            return piece[:end], piece[end:]
        nbytes += char_bytes
        qlength += char_q
    return piece, ""


class HeaderField:
    """One header field being written: tokens joined by spaces, folded before a token that would not fit."""

    def __init__(self, name: str | None = None) -> None:
        self.lines: list[str] = []
        #: None: a bare value, for the unfolded forms the public encoders return.
        self.line = "" if name is None else name + ":"
        #: True while the current line holds no token yet (nothing to fold before).
        self.fresh = True

    def fold(self) -> None:
        self.lines.append(self.line)
        self.line = ""
        self.fresh = True

    def add(self, token: str) -> None:
        if not self.fresh and len(self.line) + 1 + len(token) > LINE_LENGTH:
            self.fold()
        # A continuation line starts with its folding space; a bare value starts with its token.
        self.line += token if not self.line and not self.lines else " " + token
        self.fresh = False

    def budget(self) -> int:
        """The longest encoded-word that fits on the current line after a space."""
        return min(ENCODED_WORD_LENGTH, LINE_LENGTH - len(self.line) - 1)

    def add_encoded(self, text: str) -> None:
        """Write ``text`` as encoded-words, split between words where it must be split."""
        chunk, nbytes, qlength = "", 0, 0
        budget = self.budget()
        pieces = _PIECES.findall(text)
        pieces.reverse()
        while pieces:
            piece = pieces.pop()
            piece_bytes, piece_q = _cost(piece)
            if _ew_length(nbytes + piece_bytes, qlength + piece_q) <= budget:
                chunk, nbytes, qlength = chunk + piece, nbytes + piece_bytes, qlength + piece_q
                continue
            if chunk:
                self.add(_encoded_word(chunk))
                chunk, nbytes, qlength = "", 0, 0
                budget = self.budget()
                if _ew_length(piece_bytes, piece_q) <= budget:
                    pieces.append(piece)
                    continue
            if not self.fresh:
                # Not even this word fits after what the line holds: a new line.
                self.fold()
                budget = self.budget()
                pieces.append(piece)
                continue
            # A word longer than one encoded-word on a line of its own.
            head, rest = _split_word(piece, budget)
            self.add(_encoded_word(head))
            budget = self.budget()
            if rest:
                pieces.append(rest)
        if chunk:
            self.add(_encoded_word(chunk))

    def add_words(self, text: str, plain: Callable[[str], bool]) -> None:
        """Write ``text``: words that ``plain`` accepts as they are, runs of the others encoded."""
        words = text.split(" ")
        if not all(words):
            # Leading, trailing or doubled spaces only survive inside encoded-words.
            self.add_encoded(text)
            return
        as_is = [plain(word) and len(word) <= LINE_LENGTH - 12 for word in words]
        # A word that starts or ends with "(", ")" or a backslash next to an
        # encoded-word is encoded with it: decoders that know comments
        # (email.header's make_header) drop the space between them.
        changed = True
        while changed:
            changed = False
            for n, word in enumerate(words):
                if as_is[n] and (n and not as_is[n - 1] and word[0] in "()\\"
                                 or n + 1 < len(words) and not as_is[n + 1] and word[-1] in "()\\"):
                    as_is[n] = False
                    changed = True
        run = []
        for word, plain_word in zip(words, as_is, strict=True):
            if plain_word:
                if run:
                    self.add_encoded(" ".join(run))
                    run = []
                self.add(word)
            else:
                run.append(word)
        if run:
            self.add_encoded(" ".join(run))

    def text(self) -> str:
        """The field as written: folded lines, each ended by CRLF ("Name: " when empty, as email writes it)."""
        return "\r\n".join([*self.lines, self.line + (" " if self.fresh and not self.lines else "")]) + "\r\n"

    def unfolded(self) -> str:
        """The value on one line (folds are only ever before a token's space)."""
        return "".join([*self.lines, self.line])
