"""The dashboard page in headless Chromium (Debian's /usr/bin/chromium), driven
through the DevTools protocol over --remote-debugging-pipe (no pip packages):
it loads with no console errors and shows live figures that follow a workload.
Saves a screenshot to bench/results/dashboard.png."""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from test_observe import TOKEN, fresh_stats

pytestmark = pytest.mark.proxy_only

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT = Path(__file__).resolve().parents[2] / "bench" / "results" / "dashboard.png"


class Browser:
    """Chromium with the DevTools protocol on fds 3 (to it) and 4 (from it):
    JSON messages, each ended by a NUL byte."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="pgv-chromium-")
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()

        def fds():
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--remote-debugging-pipe", "--window-size=1400,1050", "--hide-scrollbars",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--disable-background-networking", "--disable-component-update",
             f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # the pipes must land on fds 3 and 4: subprocess would close them
            # after preexec_fn unless close_fds is off
            preexec_fn=fds, close_fds=False, start_new_session=True)
        os.close(to_child_r)
        os.close(from_child_w)
        self.buf = b""
        self.next_id = 0
        self.events = []
        self.session = None

    def send(self, method, params=None, session=True, timeout=30):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.read(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]
            self.events.append(m)
        raise TimeoutError(method)

    def read(self, deadline):
        while b"\0" not in self.buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no message from chromium")
            chunk = os.read(self.from_child, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def evaluate(self, expr):
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        return r["result"].get("value")

    def problems(self):
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.exceptionThrown":
                out.append(p["exceptionDetails"].get("text", "exception"))
            elif e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(json.dumps(p.get("args")))
            elif e.get("method") == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(p["entry"].get("text", "") + " " + p["entry"].get("url", ""))
        return out

    def close(self):
        try:
            self.send("Browser.close", session=False, timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.to_child)
        os.close(self.from_child)
        shutil.rmtree(self.profile, ignore_errors=True)


def wait_for(browser, expr, check, timeout=20):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = browser.evaluate(expr)
        if check(value):
            return value
        time.sleep(0.2)
    raise AssertionError(f"{expr} stayed {value!r}")


def number(text):
    try:
        return float(str(text).replace("k", "e3").replace("M", "e6"))
    except ValueError:
        return None


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed")
def test_dashboard_page_loads_clean_and_shows_live_figures(proxy, table):
    p = proxy(extra=["--dashboard-token", TOKEN])
    fresh_stats(p)          # no shapes seeded from the shared cluster's pg_stat_statements
    conn = p.connect()
    cur = conn.cursor()
    cur.execute(f"SELECT count(*) FROM {table}")
    browser = Browser()
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"}, session=False)
        browser.session = browser.send("Target.attachToTarget",
                                       {"targetId": target["targetId"], "flatten": True},
                                       session=False)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            browser.send(f"{domain}.enable")
        browser.send("Page.navigate", {"url": f"http://127.0.0.1:{p.port + 1}/"})
        wait_for(browser, "document.getElementById('livetext') && "
                          "document.getElementById('livetext').textContent", lambda v: v == "live")
        before = number(wait_for(browser, "document.getElementById('statements').textContent",
                                 lambda v: number(v) is not None))
        assert before >= 1
        # a workload: the page follows it without a reload
        for i in range(40):
            cur.execute(f"SELECT v FROM {table} WHERE id = {i % 10 + 1}")
            cur.execute("SELECT pg_sleep(0.003)")
        after = number(wait_for(browser, "document.getElementById('statements').textContent",
                                lambda v: (number(v) or 0) >= before + 80))
        assert after >= before + 80
        rows = wait_for(browser, "Array.from(document.querySelectorAll('#shapes td.q'))"
                                 ".map(td => td.title)",
                        lambda v: v and any(f"FROM {table} WHERE id =" in q for q in v))
        assert any("pg_sleep" in q for q in rows)
        assert browser.evaluate("document.getElementById('pool').textContent").endswith("/ 20")
        assert browser.evaluate("document.getElementById('advice').textContent") == "none yet"
        assert browser.evaluate("document.getElementById('audit').textContent") == "none yet"
        assert "%" in browser.evaluate("document.getElementById('hitrate').textContent")
        time.sleep(2.5)      # a refresh or two after the workload: sparklines drawn
        assert browser.evaluate("document.querySelectorAll('#spark-qps polyline').length") == 1
        shot = browser.send("Page.captureScreenshot", {"format": "png"})
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
        assert SCREENSHOT.stat().st_size > 10000
        assert browser.problems() == []
    finally:
        browser.close()
        conn.close()
