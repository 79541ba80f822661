"""The headless-Chromium harness (tests/chromium.py) on tiny hand-written pages: scripted clicks
read back through evaluate, every kind of page error it reports, the full page height and a
full-page screenshot, and that the browser and its profile are gone after each page."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import pytest
from chromium import ChromiumError, find_chromium, open_page, require_or_skip


def write_page(folder: Path, body: str, name: str = "page.html") -> Path:
    path = folder / name
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>t</title></head><body>{body}</body></html>")
    return path


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG, from its IHDR chunk: the first one, right after the signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


BUTTONS = """
<button id="fill" onclick="document.getElementById('out').textContent = 'filled ' + (++window.clicks)">fill</button>
<button id="broken" onclick="throw new Error('handler broke')">broken</button>
<div id="out"></div>
<script>window.clicks = 0;</script>
"""


def test_click_fills_div_and_evaluate_reads_it(tmp_path):
    require_or_skip()
    with open_page(write_page(tmp_path, BUTTONS)) as page:
        assert page.evaluate("document.getElementById('out').textContent") == ""
        page.click("#fill")
        page.click("#fill")
        assert page.evaluate("document.getElementById('out').textContent") == "filled 2"
        assert page.evaluate("Promise.resolve({a: [1, null]})") == {"a": [1, None]}
        assert page.evaluate("undefined") is None
        with pytest.raises(ChromiumError, match="oops"):
            page.evaluate("null.oops")
        with pytest.raises(ChromiumError, match="no element matches"):
            page.click("#nothing-here")
        assert 0 <= page.load_ms() < 30_000
        assert page.errors == []
        page.click("#broken")  # the handler's exception reaches the page, not click()
        assert len(page.errors) == 1 and "handler broke" in page.errors[0]
        process, profile = page.process, page.profile
    assert process.poll() is not None, "the browser outlived open_page"
    assert not profile.exists(), "the browser's profile outlived open_page"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("<p>all fine</p><script>console.log('info'); console.warn('only a warning');</script>", None),
        ("<script>console.error('bad', 42)</script>", "console.error: bad 42"),
        ("<script>console.assert(1 === 2, 'maths')</script>", "console.assert: maths"),
        ("<script>throw new TypeError('boom')</script>", "Uncaught TypeError: boom"),
        ("<script>Promise.reject(new Error('late'))</script>", "late"),
        ("<img src='missing.png' alt='gone'>", "ERR_FILE_NOT_FOUND"),
    ],
    ids=["clean", "console-error", "console-assert", "throw", "rejection", "missing-file"],
)
def test_errors_are_collected(tmp_path, body, expected):
    require_or_skip()
    with open_page(write_page(tmp_path, body)) as page:
        errors = page.errors
    if expected is None:
        assert errors == []
    else:
        assert len(errors) == 1 and expected in errors[0], errors


def test_tall_page_height_and_full_screenshot(tmp_path):
    require_or_skip()
    body = "<div style='height: 3000px; background: linear-gradient(#c00, #00c)'>top</div><p id='end'>bottom</p>"
    with open_page(write_page(tmp_path, body), width=1024, height=700) as page:
        assert page.evaluate("[innerWidth, innerHeight, devicePixelRatio]") == [1024, 700, 1]
        height = page.height()
        assert height >= 3000
        shot = page.screenshot(tmp_path / "shots" / "page.png")
    width, pixels = png_size(shot)
    assert width == 1024
    assert pixels >= 3000 and pixels == height


def test_browser_and_profile_are_gone_after_a_failure(tmp_path, monkeypatch):
    require_or_skip()
    profiles = tmp_path / "tmp"
    profiles.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(profiles))  # where open_page makes its profile
    with pytest.raises(RuntimeError, match="in the test"), open_page(write_page(tmp_path, "<p>x</p>")) as page:
        raise RuntimeError("in the test")
    assert page.process.poll() is not None
    with pytest.raises(ChromiumError, match="ERR_FILE_NOT_FOUND"), open_page(tmp_path / "no-such.html"):
        pass
    assert list(profiles.iterdir()) == []


def test_no_chromium_skips_or_fails(monkeypatch):
    """Needs no browser: a missing one skips, or fails where CI says Chromium must be there."""
    monkeypatch.setenv("SPARKS_CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv("SPARKS_REQUIRE_CHROMIUM", raising=False)
    assert find_chromium() is None
    with pytest.raises(pytest.skip.Exception, match="no Chromium installed"):
        require_or_skip()
    monkeypatch.setenv("SPARKS_REQUIRE_CHROMIUM", "1")
    with pytest.raises(pytest.fail.Exception, match="no Chromium installed"):
        require_or_skip()
