"""A private Dovecot IMAP server on loopback for the tests: its own config, users, Maildir and TLS certificate.

``start_dovecot(folder)`` writes everything under ``folder``: a test CA and a
server certificate for 127.0.0.1 and localhost (made with ``cryptography``),
a passwd-file with one user, Maildirs, and a config that runs every Dovecot
process as the current user (root in CI, a normal user elsewhere) with no
system authentication. Dovecot itself is Debian's ``dovecot-imapd``
(``make test`` installs it); :func:`dovecot_or_skip` skips without it, but
fails under CI.
"""

import datetime
import grp
import imaplib
import ipaddress
import os
import pwd
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DOVECOT = "/usr/sbin/dovecot"
#: A password that must be percent-encoded in a URL (no colon: passwd-file fields are colon-separated).
USER, PASSWORD = "bounces", "p@ss/w%rd#42?"


def dovecot_or_skip() -> str:
    """The dovecot binary; fails under CI and skips elsewhere when it is not installed."""
    if not os.access(DOVECOT, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail("Dovecot is not installed; `make test` installs dovecot-imapd with apt-get")
        pytest.skip("Dovecot (dovecot-imapd) is not installed; `make test` installs it")
    return DOVECOT


def _name(common):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate it signed for 127.0.0.1 and localhost: (ca.pem, server.pem, server.key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Clamor test CA")).issuer_name(_name("Clamor test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
              .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
              .add_extension(x509.SubjectAlternativeName(names), critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {login_user}
first_valid_uid = 0
first_valid_gid = 0
{mail_settings}
ssl = required
ssl_cert = <{root}/server.pem
ssl_key = <{root}/server.key
auth_mechanisms = plain login
# A wrong password is answered at once, not after Dovecot's default 2 s.
auth_failure_delay = 0
# No growing penalty for repeated failures from this address (anvil skips trusted networks).
login_trusted_networks = 127.0.0.0/8
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={home}
}}
service imap-login {{
  {login_chroot}
  inet_listener imap {{
    port = {plain_port}
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service auth {{
  user = {user}
}}
service auth-worker {{
  user = {user}
}}
service stats {{
  chroot =
}}
"""


@dataclass
class Dovecot:
    """A running private Dovecot: where it listens, its CA, and ``process``."""

    port: int
    #: The port for imap:// (STARTTLS, required before login: ``ssl = required``).
    plain_port: int
    ca: Path
    process: subprocess.Popen
    root: Path

    def url(self, password: str = PASSWORD, folder: str = "INBOX", scheme: str = "imaps") -> str:
        """BOUNCE_IMAP_URL for the test user, user and password percent-encoded."""
        from urllib.parse import quote

        port = self.port if scheme == "imaps" else self.plain_port
        return f"{scheme}://{quote(USER, safe='')}:{quote(password, safe='')}@127.0.0.1:{port}/{folder}"

    def imap(self) -> imaplib.IMAP4_SSL:
        """A logged-in client of the test's own, verifying the server against the test CA."""
        context = ssl.create_default_context(cafile=str(self.ca))
        client = imaplib.IMAP4_SSL("127.0.0.1", self.port, ssl_context=context, timeout=10)
        client.login(USER, PASSWORD)
        return client

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        """Put ``messages`` into ``folder`` by IMAP APPEND."""
        client = self.imap()
        try:
            for message in messages:
                status, detail = client.append(folder, None, None, message)
                assert status == "OK", detail
        finally:
            client.logout()

    def count(self, folder: str) -> int:
        """How many messages ``folder`` holds now (0 when it does not exist)."""
        client = self.imap()
        try:
            status, data = client.select(f'"{folder}"', readonly=True)
            return int(data[0]) if status == "OK" else 0
        finally:
            client.logout()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(root, port):
    """The values :data:`CONFIG` needs, for whoever runs the tests (root or not)."""
    uid, gid = os.getuid(), os.getgid()
    user = pwd.getpwuid(uid).pw_name
    settings = dict(root=root, port=port, user=user, group=grp.getgrgid(gid).gr_name)
    if uid == 0:
        # imap-login refuses to run as root, and Dovecot gives no mailbox to
        # uid 0: both are nobody's, each in a chroot the master enters as
        # root (nobody could not pass tmp_path, which is 0700).
        nobody = pwd.getpwnam("nobody")
        (root / "mail" / USER).mkdir()
        os.chown(root / "mail" / USER, nobody.pw_uid, nobody.pw_gid)
        return settings | dict(login_user="nobody", login_chroot="chroot = login", mail_uid=nobody.pw_uid,
                               mail_gid=nobody.pw_gid, home=f"/{USER}",
                               mail_settings=f"mail_chroot = {root}/mail\nmail_location = maildir:~/Maildir")
    # A normal user cannot chroot: every process is that user's, unchrooted.
    return settings | dict(login_user=user, login_chroot="chroot =", mail_uid=uid, mail_gid=gid,
                           home=f"{root}/mail/{USER}", mail_settings="mail_location = maildir:~/Maildir")


def start_dovecot(root: Path) -> Dovecot:
    """Write a config under ``root`` and start ``dovecot -F`` with it; return once it accepts connections."""
    binary = dovecot_or_skip()
    for sub in ("run", "state", "mail", "home"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ca, _, _ = make_certificates(root)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    port, plain_port = _free_port(), _free_port()
    while plain_port == port:
        plain_port = _free_port()
    config = root / "dovecot.conf"
    config.write_text(CONFIG.format(plain_port=plain_port, **_settings(root, port)))
    with open(root / "dovecot.out", "wb") as output:
        process = subprocess.Popen([binary, "-F", "-c", str(config)], stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
            raise RuntimeError(f"dovecot exited: {(root / 'dovecot.out').read_text(errors='replace')}{log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return Dovecot(port=port, plain_port=plain_port, ca=ca, process=process, root=root)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("dovecot did not listen within 15 seconds")
