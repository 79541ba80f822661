"""Drive a headless Chromium over the Chrome DevTools Protocol (CDP), for tests of HTML reports.

A test opens a self-contained page from disk (a file:// URL, nothing fetched from the network),
then checks what a reader would see: no console errors or uncaught exceptions, a scripted click
that changes the DOM, the page's full height, and a full-page PNG screenshot.

    with open_page(tmp_path / "report.html") as page:
        page.click("#show-all")
        assert page.evaluate("document.querySelectorAll('tr').length") > 10
        page.screenshot(tmp_path / "report.png")
        assert page.errors == []

Each ``open_page`` starts its own browser with a throwaway profile and talks to the page target
over one websocket (the ``websocket-client`` package), one request at a time. Every wait has a
deadline, and the browser is stopped and its profile removed on the way out, also on failure.

Chromium comes from Debian's ``chromium`` package (``.ci/run`` installs it); ``require_or_skip``
turns a missing browser into a skip, or into a failure when SPARKS_REQUIRE_CHROMIUM=1 (CI).
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import websocket

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
MISSING = "no Chromium installed (apt-get install chromium); CI installs it"
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # Chromium refuses to start as root with its sandbox, and CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers often have a 64 MB /dev/shm, too small for the renderer
    "--remote-debugging-port=0",  # any free port; Chromium writes it to DevToolsActivePort
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
)
ERROR_CONSOLE_TYPES = {"error", "assert"}


class ChromiumError(RuntimeError):
    """The browser failed: it did not start, a CDP call failed, or page JavaScript threw."""


def find_chromium() -> str | None:
    """The browser to run: $SPARKS_CHROMIUM if set (and None if that is not an executable, so a
    wrong setting is not silently replaced), else the first of CANDIDATES on PATH."""
    chosen = os.environ.get("SPARKS_CHROMIUM")
    if chosen:
        return shutil.which(chosen)
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


def require_or_skip() -> str:
    """The browser's path, for a test that needs one; skips the test without a browser, or fails
    it when SPARKS_REQUIRE_CHROMIUM=1 (CI installs Chromium, so there a missing one is a bug)."""
    path = find_chromium()
    if path is None:
        if os.environ.get("SPARKS_REQUIRE_CHROMIUM") == "1":
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    return path


class Page:
    """One page target over CDP. Replies are matched to requests by id; every event that arrives
    meanwhile is kept (for ``wait_event``) and checked for errors (for ``errors``)."""

    def __init__(self, ws: Any, timeout: float, process: subprocess.Popen, profile: Path):
        self.ws = ws
        self.timeout = timeout
        self.process = process
        self.profile = profile
        self.events: list[dict] = []
        self._errors: list[str] = []
        self._next_id = 0

    # -- the protocol -------------------------------------------------------------------------

    def send(self, method: str, params: dict | None = None) -> dict:
        """Call a CDP method and return its result; raise ChromiumError on a protocol error."""
        self._next_id += 1
        request_id = self._next_id
        self.ws.send(json.dumps({"id": request_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._receive(deadline, f"the reply to {method}")
            if message.get("id") == request_id:
                if "error" in message:
                    raise ChromiumError(f"{method} failed: {message['error']}")
                return message.get("result", {})

    def wait_event(self, method: str) -> dict:
        """The params of the first kept event named ``method``, waiting for one if none came yet.
        The event is consumed, so a second call waits for the next one."""
        deadline = time.monotonic() + self.timeout
        while True:
            for i, event in enumerate(self.events):
                if event["method"] == method:
                    return self.events.pop(i).get("params", {})
            self._receive(deadline, f"the event {method}")

    def _receive(self, deadline: float, what: str) -> dict:
        """One message from the browser, within the deadline. Events are kept and checked for
        errors here, so none is missed, whichever reply or event the caller waits for."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"Chromium: no {what} within {self.timeout} s")
        self.ws.settimeout(left)
        try:
            message = json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            raise TimeoutError(f"Chromium: no {what} within {self.timeout} s") from None
        except (websocket.WebSocketException, OSError) as error:
            raise ChromiumError(f"Chromium connection lost waiting for {what}: {error}{_log_tail(self.profile)}") from error
        if "method" in message:
            self.events.append(message)
            if (text := _error_text(message)) is not None:
                self._errors.append(text)
        return message

    # -- what tests use -----------------------------------------------------------------------

    @property
    def errors(self) -> list[str]:
        """Console errors and failed assertions, uncaught exceptions and browser log errors
        (e.g. a file that failed to load), since the page was opened. A round trip first
        collects every event the browser sent before now."""
        self.send("Runtime.evaluate", {"expression": "0"})
        return list(self._errors)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited), as JSON turns
        it into Python; raise ChromiumError with the exception's text if it throws."""
        params = {"expression": expression, "awaitPromise": True, "returnByValue": True}
        reply = self.send("Runtime.evaluate", params)
        if "exceptionDetails" in reply:
            raise ChromiumError(f"JavaScript threw: {_exception_text(reply['exceptionDetails'])}")
        return _python_value(reply["result"])

    def click(self, selector: str) -> None:
        """Click the first element matching a CSS selector, with element.click(): its handlers run
        as for a user's click. Raise ChromiumError if nothing matches."""
        found = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (e) e.click(); return !!e; }})()"
        )
        if not found:
            raise ChromiumError(f"click: no element matches {selector!r}")

    def height(self) -> int:
        """The document's full scroll height in CSS pixels (not just the viewport's)."""
        return self.evaluate("Math.max(document.documentElement.scrollHeight, document.body ? document.body.scrollHeight : 0)")

    def load_ms(self) -> float:
        """Milliseconds from the start of navigation to the page's load event."""
        return self.evaluate(
            "(() => { const [n] = performance.getEntriesByType('navigation');"
            " const t = performance.timing;"
            " return n ? n.loadEventStart : t.loadEventStart - t.navigationStart; })()"
        )

    def screenshot(self, out: Path) -> Path:
        """Write a PNG of the whole page, beyond the viewport, at one pixel per CSS pixel."""
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": math.ceil(size["width"]), "height": math.ceil(size["height"]), "scale": 1}
        params = {"format": "png", "captureBeyondViewport": True, "clip": clip}
        data = self.send("Page.captureScreenshot", params)["data"]
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(data))
        return out


@contextmanager
def open_page(
    path: Path, width: int = 1280, height: int = 900, timeout: float = 30, chromium: str | None = None
) -> Iterator[Page]:
    """Start a headless Chromium with a viewport of width x height CSS pixels, load the HTML file at
    ``path`` and yield its Page once the load event fired. ``timeout`` bounds every single wait
    (start-up, each reply, the load). The browser and its profile are gone on exit, however the
    block ends."""
    binary = chromium or find_chromium()
    if binary is None:
        raise ChromiumError(MISSING)
    profile = Path(tempfile.mkdtemp(prefix="sparks-chromium-"))
    command = [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"]
    process = ws = None
    try:
        with open(profile / "chromium.log", "wb") as log:
            # A session of its own, so that the renderers and other helpers die with the browser.
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        port = _devtools_port(process, profile, timeout)
        ws = _connect(port, _page_socket_url(port, timeout), timeout)
        page = Page(ws, timeout, process, profile)
        for domain in ("Runtime", "Log", "Page"):
            page.send(f"{domain}.enable")
        # The viewport itself: --window-size sets the outer window, and headless Chromium keeps
        # room for a toolbar in it (a 900 px window shows 757 px of page). One pixel per CSS pixel.
        viewport = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        page.send("Emulation.setDeviceMetricsOverride", viewport)
        _load(page, Path(path).resolve().as_uri())
        yield page
    finally:
        if ws is not None:
            with suppress(Exception):  # the browser may be gone already
                ws.close(timeout=1)
        try:
            if process is not None:
                _kill(process)
        finally:
            shutil.rmtree(profile, ignore_errors=True)


def _load(page: Page, url: str) -> None:
    """Navigate to ``url`` and wait for its load event. A load event of the start page
    (about:blank) may still come in on the way, so the event counts once the page's document is
    the file and complete."""
    deadline = time.monotonic() + page.timeout
    page.events.clear()
    navigation = page.send("Page.navigate", {"url": url})
    if navigation.get("errorText"):
        raise ChromiumError(f"cannot open {url}: {navigation['errorText']}")
    while True:
        page.wait_event("Page.loadEventFired")
        if page.evaluate("location.protocol === 'file:' && document.readyState === 'complete'"):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"Chromium: {url} did not load within {page.timeout} s")


def _devtools_port(process: subprocess.Popen, profile: Path, timeout: float) -> int:
    """The debugging port Chromium chose, from the DevToolsActivePort file it writes on start."""
    deadline = time.monotonic() + timeout
    active = profile / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ChromiumError(f"Chromium exited with {process.returncode} on start{_log_tail(profile)}")
        lines = active.read_text().splitlines() if active.exists() else []
        if len(lines) >= 2:  # the port, then the browser's path; both written once complete
            return int(lines[0])
        time.sleep(0.05)
    raise TimeoutError(f"Chromium wrote no DevToolsActivePort within {timeout} s{_log_tail(profile)}")


def _page_socket_url(port: int, timeout: float) -> str:
    """The websocket URL of the browser's page target, from its /json/list endpoint (plain
    http.client, so no proxy setting in the environment gets in the way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            connection.request("GET", "/json/list")
            targets = json.loads(connection.getresponse().read())
        except (OSError, http.client.HTTPException):
            targets = []  # not answering yet; try again until the deadline
        finally:
            connection.close()
        pages = [t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page"]
        if pages:
            return pages[0]
        time.sleep(0.05)
    raise TimeoutError(f"Chromium showed no page target within {timeout} s")


def _connect(port: int, url: str, timeout: float) -> Any:
    """A websocket to ``url``, on a socket opened here: websocket-client would otherwise follow
    an http_proxy setting, and it would send an Origin header, which Chromium rejects."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return websocket.create_connection(url, timeout=timeout, socket=sock, suppress_origin=True)
    except BaseException:
        sock.close()
        raise


def _kill(process: subprocess.Popen) -> None:
    """End the browser: SIGTERM first, so that it reaps its own helpers (killed at once, they
    would linger as zombies where PID 1 does not reap), then SIGKILL to its whole process group
    for whatever is left or if it takes too long."""
    try:
        process.terminate()
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


def _log_tail(profile: Path, lines: int = 20) -> str:
    """The end of Chromium's own output, for error messages (its D-Bus complaints are left out)."""
    try:
        text = (profile / "chromium.log").read_text(errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if "dbus" not in line][-lines:]
    return "\nChromium's output:\n" + "\n".join(kept) if kept else ""


def _error_text(event: dict) -> str | None:
    """The text of an error that a CDP event reports, or None for an event that is no error."""
    method, params = event["method"], event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in ERROR_CONSOLE_TYPES:
        words = " ".join(_remote_text(arg) for arg in params.get("args", []))
        return f"console.{params['type']}: {words}"
    if method == "Runtime.exceptionThrown":
        return _exception_text(params["exceptionDetails"])
    if method == "Log.entryAdded" and params["entry"].get("level") == "error":
        entry = params["entry"]
        where = f" ({entry['url']})" if entry.get("url") else ""
        return f"log {entry.get('source', '')}: {entry.get('text', '')}{where}"
    return None


def _exception_text(details: dict) -> str:
    """An exception as the console shows it: the message, and the stack when there is one, or
    else where it was thrown (a thrown string has no stack)."""
    exception = details.get("exception", {})
    text = f"{details.get('text', 'Uncaught')} {_remote_text(exception) if exception else ''}".strip()
    url = details.get("url")
    return text if not url or url in text else f"{text} ({url}:{details.get('lineNumber', 0) + 1})"


def _remote_text(obj: dict) -> str:
    """A console argument or thrown value (a CDP RemoteObject) as text."""
    if "value" in obj:
        return obj["value"] if isinstance(obj["value"], str) else json.dumps(obj["value"])
    return obj.get("description") or obj.get("unserializableValue") or obj.get("type", "")


def _python_value(obj: dict) -> Any:
    """A Runtime.evaluate result by value: JSON values as they are, undefined as None, NaN,
    +-Infinity and -0 as floats and BigInts as ints."""
    if "value" in obj:
        return obj["value"]
    special = obj.get("unserializableValue")
    if special is None:
        return None
    return int(special[:-1]) if special.endswith("n") else float(special)
