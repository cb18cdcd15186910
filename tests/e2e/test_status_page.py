"""The status page (SPEC §8) in a real browser: Debian's chromium, headless, driven over
the DevTools protocol (--remote-debugging-pipe), loads the page from a running sidecar with
real pymongo clients connected (plaintext and TLS) and the test reads the rendered DOM, the
page's network requests and a screenshot. Asserted: the verdict, the client rows, that an
appname made of markup stays text (no script element, no img, no event handler in the
DOM), that the page requests nothing but itself, and that the screenshot is not blank.
Also: the page is withheld on a non-loopback listener unless metrics.statusPage is set."""

import base64
import html.parser
import json
import os
import re
import shutil
import struct
import subprocess
import time
import urllib.error
import urllib.request
import zlib

import pymongo
import pytest

import harness
from harness import wait_until

WIDTH, HEIGHT = 1000, 1100  # the screenshot's size in CSS pixels
EVIL = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def chromium_binary():
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is not installed (tests/run.sh installs it)")
    return found


class DevTools:
    """One headless chromium, spoken to over --remote-debugging-pipe: requests go to its fd 3,
    answers and events come from its fd 4, NUL-terminated JSON each."""

    def __init__(self, profile):
        to_chromium_r, self._to_chromium = os.pipe()
        self._from_chromium, from_chromium_w = os.pipe()

        def wire():
            os.dup2(to_chromium_r, 3)
            os.dup2(from_chromium_w, 4)

        self.process = subprocess.Popen(
            [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "--window-size=1000,1300", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire, close_fds=False)
        os.close(to_chromium_r)
        os.close(from_chromium_w)
        self._buffer = b""
        self._next_id = 0
        self.events = []

    def close(self):
        self.process.kill()
        self.process.wait(timeout=10)
        os.close(self._to_chromium)
        os.close(self._from_chromium)

    def _read_message(self, deadline):
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise AssertionError("chromium did not answer in time")
            chunk = os.read(self._from_chromium, 1 << 20)
            if not chunk:
                raise AssertionError("chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method, session=None, timeout=30, **params):
        self._next_id += 1
        request = {"id": self._next_id, "method": method, "params": params}
        if session:
            request["sessionId"] = session
        os.write(self._to_chromium, json.dumps(request).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next_id:
                assert "error" not in message, message
                return message["result"]
            self.events.append(message)

    def wait_event(self, method, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    self.events.remove(event)
                    return event
            self.events.append(self._read_message(deadline))


class Dom(html.parser.HTMLParser):
    """Every start tag with its attributes, and the text of each element with an id or a
    class, from the DOM chromium serialised."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tags = []
        self.text = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def load(url, profile):
    """Loads `url` in chromium; returns (outer HTML, every URL the page requested, PNG)."""
    browser = DevTools(profile)
    try:
        targets = browser.call("Target.getTargets")["targetInfos"]
        page = next(t["targetId"] for t in targets if t["type"] == "page")
        session = browser.call("Target.attachToTarget", targetId=page, flatten=True)["sessionId"]
        browser.call("Network.enable", session)
        browser.call("Page.enable", session)
        browser.call("Emulation.setDeviceMetricsOverride", session, width=WIDTH, height=HEIGHT,
                     deviceScaleFactor=1, mobile=False)
        browser.call("Page.navigate", session, url=url)
        browser.wait_event("Page.loadEventFired")
        dom = browser.call("Runtime.evaluate", session,
                           expression="document.documentElement.outerHTML")["result"]["value"]
        png = base64.b64decode(browser.call("Page.captureScreenshot", session,
                                            format="png")["data"])
        requested = [e["params"]["request"]["url"] for e in browser.events
                     if e.get("method") == "Network.requestWillBeSent"]
        return dom, requested, png
    finally:
        browser.close()


def png_pixels_vary(png):
    """(width, height, distinct byte values in the decompressed image data): a blank page
    compresses to a handful of values, a rendered one to many."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:8]
    offset, idat, width, height = 8, b"", 0, 0
    while offset < len(png):
        length, kind = struct.unpack(">I4s", png[offset:offset + 8])
        data = png[offset + 8:offset + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", data[:8])
        elif kind == b"IDAT":
            idat += data
        offset += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def http(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def test_status_page_in_chromium_with_real_clients(procs, pki, tmp_path):
    standin = procs.standin()
    metrics = f"127.0.0.1:{harness.free_port()}"
    sidecar = procs.sidecar("--tlsMode", "preferTLS", "--tlsCertificateKeyFile", pki["server"],
                            "--tlsCAFile", pki["ca"], upstream=standin.address, metrics=metrics)
    plaintext = pymongo.MongoClient("127.0.0.1", sidecar.port, appname=EVIL,
                                    directConnection=True, serverSelectionTimeoutMS=4000)
    plaintext.e2e.page.insert_one({"via": "plaintext"})
    tls = pymongo.MongoClient("127.0.0.1", sidecar.port, appname="orders-tls", tls=True,
                              tlsCAFile=str(pki["ca"]), directConnection=True,
                              serverSelectionTimeoutMS=4000)
    tls.e2e.page.insert_one({"via": "tls"})

    url = f"http://{metrics}/"
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    wait_until(lambda: escaped in http(url)[2] and re.search(r"[1-9]\d* TLS", http(url)[2]),
               timeout=20, what="the clients on the status page")
    status, headers, _ = http(url)
    assert status == 200 and headers["Content-Type"].startswith("text/html"), headers
    assert "default-src 'none'" in headers["Content-Security-Policy"], headers

    dom, requested, png = load(url, tmp_path / "chromium")
    parsed = Dom(dom)
    tags = [tag for tag, _ in parsed.tags]
    assert "script" not in tags and "img" not in tags, tags
    handlers = [(tag, name) for tag, attrs in parsed.tags for name in attrs
                if name.lower().startswith("on")]
    assert handlers == [], handlers
    text = "".join(parsed.text)
    assert EVIL in text, "the appname is shown as text, as it was sent"

    assert 'id="verdict"' in dom and "not ready" in text, dom
    assert "preferTLS" in text and "requireTLS" in text
    # The reason, as `ctl readiness` prints it: what to do, in the command line's words.
    assert "plaintext client connections are open" in text, text
    assert "tls-sidecar ctl drain-plaintext SECONDS" in text, text
    rows = re.findall(r'<tr class="client (\w+)">(.*?)</tr>', dom)
    assert [state for state, _ in rows] == ["connected"], rows
    assert escaped in rows[0][1] and "127.0.0.1" in rows[0][1], rows
    assert "PyMongo" in rows[0][1] or "pymongo" in rows[0][1], rows
    assert "orders-tls" not in dom, "TLS clients are not plaintext clients"
    assert re.search(r"[1-9]\d* TLS", text) and re.search(r"[1-9]\d* plaintext", text), text
    assert "<svg" in dom and "CN=localhost" in text, dom

    # The page is one request: itself. No script, style, font or image from anywhere.
    assert requested == [url], requested

    width, height, distinct = png_pixels_vary(png)
    assert (width, height) == (WIDTH, HEIGHT), (width, height)
    assert distinct > 40, f"the screenshot looks blank ({distinct} distinct values)"
    (tmp_path / "status-page.png").write_bytes(png)
    if os.environ.get("SIDECAR_STATUS_SCREENSHOT"):
        shutil.copyfile(tmp_path / "status-page.png", os.environ["SIDECAR_STATUS_SCREENSHOT"])

    plaintext.close()
    tls.close()


def test_page_is_withheld_on_a_public_listener_unless_asked_for(procs, pki):
    standin = procs.standin()
    port = harness.free_port()
    closed = procs.sidecar(upstream=standin.address, metrics=f"0.0.0.0:{port}", name="closed")
    wait_until(lambda: http(f"http://127.0.0.1:{port}/metrics")[0] == 200, what="/metrics")
    status, _, body = http(f"http://127.0.0.1:{port}/")
    assert status == 403 and "metrics.statusPage" in body, (status, body)
    closed.stop()

    standin2 = procs.standin(name="standin2")
    port2 = harness.free_port()
    procs.sidecar("--metrics-status-page", upstream=standin2.address,
                  metrics=f"0.0.0.0:{port2}", name="open")
    wait_until(lambda: http(f"http://127.0.0.1:{port2}/")[0] == 200, what="the page")


def test_status_page_setting_is_checked_at_start(procs):
    result = procs.run_sidecar("--check-config", "--config",
                               _write(procs, "[metrics]\nstatusPage = \"yes\"\n"))
    assert result.returncode == 2, result
    assert re.search(r"metrics\.statusPage: .*(bool|true or false)", result.stderr), result.stderr
    helped = procs.run_sidecar("--help")
    assert "--metrics-status-page" in helped.stdout, helped.stdout


def _write(procs, text):
    path = procs.workdir / "status-page.toml"
    path.write_text(text)
    return path
