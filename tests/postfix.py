"""A private Postfix on loopback for the tests: the union's relay, and the mail server of its bounce domain.

``start_postfix(...)`` writes a whole Postfix configuration under a folder
of its own (main.cf, master.cf, its queue) and starts Debian's Postfix
with it (``postfix -c FOLDER start``), beside any system Postfix and
without touching /etc/postfix:

- it listens on a free loopback port and accepts mail from 127.0.0.1, as a
  union's relay does;
- it relays everything for other domains to ``relay_port`` (the targets'
  mail server, an aiosmtpd of the test's), no DNS asked;
- ``recipient_access`` maps addresses to what its own SMTP server answers
  at ``RCPT TO`` (``REJECT``, ``450 4.7.1 …``);
- mail to its own domain goes through the ``transport`` lines and the extra
  ``master.cf`` lines the test gives (the bounce pipe of docs/delivery.md),
  where ``{capture}`` stands for a command that runs as any user and keeps
  what Postfix passed it: its argv and the message (:meth:`Postfix.piped`).

Postfix's master runs as root and its daemons as the ``postfix`` user, so
this needs root (CI runs as root): :func:`postfix_or_skip` skips without it,
and fails under CI when Postfix is not installed.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

POSTFIX = "/usr/sbin/postfix"
POSTMAP = "/usr/sbin/postmap"
#: The domain Postfix delivers itself (mydestination): the bounce address's.
DOMAIN = "clamor.test"


def postfix_or_skip() -> str:
    """The postfix command; skips without root, fails under CI (and skips elsewhere) without Postfix."""
    if not os.access(POSTFIX, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail("Postfix is not installed; `make test` installs Debian's postfix with apt-get")
        pytest.skip("Postfix is not installed; `make test` installs it")
    if os.geteuid() != 0:
        pytest.skip("a private Postfix needs root (its master starts as root); CI runs as root")
    return POSTFIX


MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
myhostname = relay.{domain}
mydomain = {domain}
myorigin = {domain}
mydestination = {domain}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{relay_port}
smtp_dns_support_level = disabled
smtp_host_lookup = native
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtpd_recipient_restrictions = check_recipient_access texthash:{root}/conf/recipient_access, permit_mynetworks, reject
transport_maps = hash:{root}/conf/transport
{main_lines}
"""

#: Every service Postfix needs to accept, queue, relay, bounce and pipe; none chrooted.
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
{master_lines}
"""

#: Stands in for a pipe's command: keeps what Postfix passed (its argv, and the message on stdin) in ``spool/``.
CAPTURE = """\
#!/bin/sh
f={root}/spool/$(date +%s%N)
cat > "$f.part"
printf '%s\\n' "$@" > "$f.argv"
mv "$f.part" "$f.eml"
"""


@dataclass
class Postfix:
    """A running private Postfix: the port its SMTP server listens on, and its folder."""

    port: int
    root: Path

    def log(self) -> str:
        return (self.root / "maillog").read_text(errors="replace") if (self.root / "maillog").exists() else ""

    def piped(self, count: int, timeout: float = 20) -> list[tuple[list[str], bytes]]:
        """Wait until ``count`` messages went through a pipe to ``{capture}``; each (argv, message bytes)."""
        deadline = time.monotonic() + timeout
        while True:
            found = sorted((self.root / "spool").glob("*.eml"))
            if len(found) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(found) == count, f"{len(found)} of {count} messages piped; Postfix's log:\n{self.log()}"
        return [(path.with_suffix(".argv").read_text().splitlines(), path.read_bytes()) for path in found]

    def stop(self) -> None:
        subprocess.run([POSTFIX, "-c", str(self.root / "conf"), "abort"], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postfix(port: int, relay_port: int, recipient_access: dict[str, str] | None = None,
                  main_lines: str = "", master_lines: str = "", transport: str = "") -> Postfix:
    """Write a private configuration and start Postfix with it; see the module's docstring."""
    postfix_or_skip()
    # Not under pytest's tmp folder, which is private to root: Postfix's
    # daemons and the pipe's user must reach their files.
    root = Path(tempfile.mkdtemp(prefix="clamor-postfix-"))
    root.chmod(0o755)
    conf, spool, data = root / "conf", root / "spool", root / "data"
    for folder in (conf, spool, data, root / "queue"):
        folder.mkdir()
    shutil.chown(spool, "nobody")
    shutil.chown(data, "postfix")
    values = dict(root=root, domain=DOMAIN, port=port, relay_port=relay_port)
    (conf / "main.cf").write_text(MAIN_CF.format(main_lines=main_lines, **values))
    master_lines = master_lines.replace("{capture}", str(root / "capture"))
    (conf / "master.cf").write_text(MASTER_CF.format(master_lines=master_lines, **values))
    (conf / "recipient_access").write_text("".join(f"{k} {v}\n" for k, v in (recipient_access or {}).items()))
    (conf / "transport").write_text(transport)
    (root / "capture").write_text(CAPTURE.format(root=root))
    (root / "capture").chmod(0o755)
    postfix = Postfix(port, root)
    try:
        subprocess.run([POSTMAP, "-c", str(conf), str(conf / "transport")], check=True, capture_output=True)
        started = subprocess.run([POSTFIX, "-c", str(conf), "start"], capture_output=True, text=True)
        assert started.returncode == 0, f"postfix start: {started.stderr}\n{postfix.log()}"
        _wait_for(port, postfix)
    except BaseException:
        postfix.stop()
        raise
    return postfix


def _wait_for(port, postfix):
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"Postfix does not listen on {port}:\n{postfix.log()}") from None
            time.sleep(0.05)
