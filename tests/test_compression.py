"""The gzip lines docs/deploying.md gives for nginx, run in Debian's nginx in front of Clamor:
pages and CSS compressed with Vary: Accept-Encoding; never a POST answer (BREACH), nor the
admin pages, nor small answers, nor for a client that does not ask."""

import gzip
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import SLUG, LiveServer, form_fields, unused_port

DEPLOYING = Path(__file__).resolve().parent.parent / "docs" / "deploying.md"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def documented_gzip_block():
    """The nginx lines of the "Compression" section, as the docs give them."""
    section = DEPLOYING.read_text().split("## Compression", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```nginx\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def nginx(app):
    if not os.access(NGINX, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed (apt-get install nginx-light)")
        pytest.skip("Debian's nginx is not installed (apt-get install nginx-light)")
    with LiveServer(app) as server:
        port = unused_port()
        folder = Path(tempfile.mkdtemp(prefix="clamor-nginx-"))
        upstream = server.url.removeprefix("http://")
        block = documented_gzip_block().replace("http://127.0.0.1:8000", f"http://{upstream}")
        block = block.replace("# … the proxy lines above …", "proxy_set_header Host $host:$server_port;")
        (folder / "nginx.conf").write_text(f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body; proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi; uwsgi_temp_path {folder}/uwsgi; scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
{block}
    }}
}}
""")
        process = subprocess.Popen([NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", "daemon off;"],
                                   stderr=subprocess.PIPE)
        url = f"http://localhost:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/robots.txt", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            process.kill()
            pytest.fail(f"nginx did not start: {process.stderr.read().decode()}")
        try:
            yield url
        finally:
            process.terminate()
            process.wait(10)
            process.stderr.close()
            shutil.rmtree(folder, ignore_errors=True)


def fetch(url, data=None, gzip_ok=True, headers=None):
    request = urllib.request.Request(url, data=data, headers={**({"Accept-Encoding": "gzip"} if gzip_ok else {}),
                                                              **(headers or {})})
    try:
        response = urllib.request.urlopen(request)
    except urllib.error.HTTPError as error:
        response = error
    with response:
        body = response.read()
    return response, (gzip.decompress(body) if response.headers.get("Content-Encoding") == "gzip" else body)


@pytest.mark.slow
def test_nginx_compresses_pages_but_never_what_reflects_input_beside_a_token(nginx):
    page, html = fetch(f"{nginx}/en/{SLUG}/")
    assert page.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in page.headers["Vary"]
    assert b"<form" in html and len(html) > 10_000
    css, _ = fetch(f"{nginx}/static/clamor.css")
    assert css.headers.get("Content-Encoding") == "gzip"
    # Not for a client that does not ask, nor for answers under 1 KB.
    plain, _ = fetch(f"{nginx}/en/{SLUG}/", gzip_ok=False)
    assert plain.headers.get("Content-Encoding") is None
    robots, _ = fetch(f"{nginx}/robots.txt")
    assert robots.headers.get("Content-Encoding") is None
    # A form posted with a mistake shows the typed text beside the CSRF token: not compressed.
    cookie = "; ".join(c.split(";")[0] for c in page.headers.get_all("Set-Cookie"))
    fields = form_fields(html.decode())
    fields.update(name="Anna", email="not an address", message="SECRET-GUESS")
    body = "&".join(f"{k}={urllib.parse.quote(v)}" for k, v in fields.items()).encode()
    error, reflected = fetch(f"{nginx}/en/{SLUG}/", data=body, headers={"Cookie": cookie})
    assert error.status == 200 and b"SECRET-GUESS" in reflected and b'name="csrf_token"' in reflected
    assert error.headers.get("Content-Encoding") is None
    # The admin pages (the search reflects its query beside a token) are never compressed.
    login, _ = fetch(f"{nginx}/admin/login?q=" + "x" * 2000)
    assert login.headers.get("Content-Encoding") is None

