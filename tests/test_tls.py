"""The smtp backend verifies the server's certificate, over STARTTLS and SSL.

A throwaway certificate authority (made with the openssl command) signs the
sink's certificate for 127.0.0.1. Not trusted, the letters wait with the
verification error; trusted (SSL_CERT_FILE, which OpenSSL reads), they arrive.
"""

import ssl
import subprocess

import pytest
from aiosmtpd.controller import Controller
from conftest import Inbox, sign, unused_port

from app.delivery import deliver_due
from app.models import Delivery


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """``(ca.pem, server.pem, server.key)``: a CA and a certificate it signed for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", "ca.key", "-out", "ca.pem",
            "-subj", "/CN=Clamor test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    (folder / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "server.ext", "-out", "server.pem")
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


@pytest.fixture(params=["starttls", "ssl"])
def tls_sink(request, certificates):
    """An aiosmtpd sink speaking ``request.param``; yields (security, controller)."""
    _, cert, key = certificates
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox()
    if request.param == "ssl":
        controller = Controller(inbox, hostname="127.0.0.1", port=unused_port(), ssl_context=context)
    else:
        controller = Controller(inbox, hostname="127.0.0.1", port=unused_port(),
                                tls_context=context, require_starttls=True)
    controller.start()
    controller.inbox = inbox
    yield request.param, controller
    controller.stop()


def deliver_through(make_app, security, controller):
    app = make_app(DELIVERY={"email": "smtp"}, SMTP_HOST="127.0.0.1", SMTP_PORT=controller.port,
                   SMTP_SECURITY=security, SMTP_TIMEOUT=5)
    sign(app.test_client())
    with app.app_context():
        assert deliver_due() == 5
        return sorted((d.status, d.last_error or "") for d in Delivery.query)


@pytest.mark.slow
def test_an_untrusted_certificate_keeps_the_letters_waiting(make_app, tls_sink, monkeypatch):
    security, controller = tls_sink
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    outcomes = deliver_through(make_app, security, controller)
    assert {status for status, _ in outcomes} == {"pending"}
    assert all("CERTIFICATE_VERIFY_FAILED" in error for _, error in outcomes), outcomes
    assert controller.inbox.envelopes == []


@pytest.mark.slow
def test_a_trusted_certificate_lets_the_letters_through(make_app, tls_sink, certificates, monkeypatch):
    security, controller = tls_sink
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates[0]))
    outcomes = deliver_through(make_app, security, controller)
    assert {status for status, _ in outcomes} == {"sent"}
    assert len(controller.inbox.envelopes) == 5
