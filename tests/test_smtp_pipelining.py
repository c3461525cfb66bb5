"""The smtp backend pipelines (RFC 2920) when a server offers it, and means the same as sendmail.

The server here answers MAIL, RCPT and DATA only once all three have
arrived: a client that waits for each reply in turn stalls, and its letter
is never taken. aiosmtpd, which takes commands one at a time either way, is
the other server (tests/test_backends.py runs every refusal both ways).
"""

import re
import socket
import threading
from email import message_from_bytes, policy

import pytest
from conftest import sign

from app.delivery import deliver_due
from app.extensions import db
from app.models import Delivery


class StrictPipeliningServer:
    """An SMTP server on loopback that replies to a MAIL, RCPT, DATA group only when the whole group is in.

    ``rcpt_reply``: what RCPT gets for the first letter (then 250). With
    ``data_despite_refusal`` DATA is answered 354 even after a refused
    RCPT, as some servers do; the client must then end the empty message.
    ``messages``: (MAIL FROM line, message bytes as sent, undotted), ``stalled``: envelopes that came one by one.
    """

    def __init__(self, rcpt_reply="250 ok", data_despite_refusal=False):
        self.rcpt_replies = [rcpt_reply]
        self.data_despite_refusal = data_despite_refusal
        self.messages, self.stalled, self.empty_messages, self.connections = [], 0, 0, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._session, args=(connection,), daemon=True).start()

    def _session(self, connection):
        with connection, connection.makefile("rb") as lines:
            connection.settimeout(2)
            connection.sendall(b"220 strict ESMTP\r\n")
            try:
                while line := lines.readline():
                    verb = line[:4].upper()
                    if verb == b"EHLO":
                        connection.sendall(b"250-strict\r\n250-PIPELINING\r\n250 SIZE 10000000\r\n")
                    elif verb == b"MAIL":
                        self._transaction(connection, lines, line)
                    elif verb == b"QUIT":
                        connection.sendall(b"221 bye\r\n")
                        return
                    else:  # RSET, NOOP
                        connection.sendall(b"250 ok\r\n")
            except TimeoutError:
                self.stalled += 1

    def _transaction(self, connection, lines, mail):
        # Nothing is answered before RCPT and DATA are in: a client waiting for MAIL's reply times out here.
        rcpt, data = lines.readline(), lines.readline()
        assert rcpt.upper().startswith(b"RCPT TO:") and data.upper() == b"DATA\r\n", (rcpt, data)
        rcpt_reply = self.rcpt_replies.pop(0) if self.rcpt_replies else "250 ok"
        accepted = rcpt_reply.startswith("250")
        if not accepted and not self.data_despite_refusal:
            connection.sendall(f"250 ok\r\n{rcpt_reply}\r\n554 no valid recipients\r\n".encode())
            return
        connection.sendall(f"250 ok\r\n{rcpt_reply}\r\n354 go ahead\r\n".encode())
        body = []
        while (line := lines.readline()) != b".\r\n":
            body.append(line[1:] if line.startswith(b".") else line)
        if accepted:
            self.messages.append((mail, b"".join(body)))
            connection.sendall(b"250 queued\r\n")
        else:
            self.empty_messages += not body
            connection.sendall(b"554 no valid recipients\r\n")

    def close(self):
        self.listener.close()


@pytest.fixture
def strict_server():
    servers = []

    def start(**options):
        servers.append(StrictPipeliningServer(**options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def strict_app(make_app, server):
    return make_app(DELIVERY={"email": "smtp"}, SMTP_HOST="127.0.0.1", SMTP_PORT=server.port, SMTP_TIMEOUT=5)


def test_a_pipelining_server_gets_each_letter_whole_in_two_round_trips(make_app, strict_server):
    server = strict_server()
    app = strict_app(make_app, server)
    # A line that is a lone dot would end the message early if it were not doubled.
    letter = "Free Erzhan Elshibayev now.\n.\n..and a line that starts with dots\nEnd."
    sign(app.test_client(), message=letter)
    with app.app_context():
        assert deliver_due() == 5
        deliveries = db.session.scalars(db.select(Delivery).order_by(Delivery.id)).all()
        assert {d.status for d in deliveries} == {"sent"}
        message_ids = [d.message_id for d in deliveries]
    assert server.stalled == 0
    assert server.connections == 1
    assert len(server.messages) == 5
    for (mail, data), message_id in zip(server.messages, message_ids, strict=True):
        # SIZE, as the server offered it, is the size of the message sent.
        assert re.fullmatch(rb"MAIL FROM:<[^<>\s]+> SIZE=(\d+)\r\n", mail).group(1) == str(len(data)).encode()
        message = message_from_bytes(data, policy=policy.SMTP)
        assert message["Message-ID"] == message_id
        assert message.get_content().startswith(letter.replace("\n", "\r\n") + "\r\n")


def test_a_server_that_takes_data_after_refusing_the_recipient_gets_an_empty_message(make_app, strict_server):
    server = strict_server(rcpt_reply="550 5.1.1 no such mailbox", data_despite_refusal=True)
    app = strict_app(make_app, server)
    sign(app.test_client())
    with app.app_context():
        assert deliver_due() == 5
        first = db.session.get(Delivery, 1)
        assert first.status == "failed"
        assert "answered 550 5.1.1 no such mailbox" in first.last_error
        assert {d.status for d in Delivery.query if d.id != 1} == {"sent"}
    # The letter's text never went to the server that refused it, and the connection went on.
    assert server.empty_messages == 1
    assert (len(server.messages), server.connections, server.stalled) == (4, 1, 0)


def test_a_server_without_pipelining_is_sent_one_command_at_a_time(make_app, scripted_smtp):
    controller, inbox = scripted_smtp()
    app = make_app(DELIVERY={"email": "smtp"}, SMTP_HOST="127.0.0.1", SMTP_PORT=controller.port)
    sign(app.test_client(), message="A letter\n.\nwith a lone dot")
    with app.app_context():
        assert deliver_due() == 5
    assert len(inbox.envelopes) == 5
    assert all(b"\r\n.\r\nwith a lone dot" in e.original_content for e in inbox.envelopes)
