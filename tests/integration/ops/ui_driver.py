#!/usr/bin/env python3
"""Drives the acmedge web console in headless Chromium over the DevTools protocol
(--remote-debugging-pipe: no websocket library, nothing downloaded).

usage: ui_driver.py  (configuration in the environment)
  UI_URL       http://127.0.0.1:PORT/ui
  UI_TOKEN     admin bearer token
  UI_OUT       directory for screenshots
  UI_PROFILE   Chromium profile directory (scratch)
  CHROMIUM     browser binary (default /usr/bin/chromium)
  UI_TIMEOUT   seconds for each wait (default 60)
Prints "step: ..." lines; exits 1 with "FAIL: ..." on the first failed check.
"""
import base64
import json
import os
import re
import select
import subprocess
import sys
import time
import urllib.request

URL = os.environ["UI_URL"]
TOKEN = os.environ["UI_TOKEN"]
OUT = os.environ["UI_OUT"]
TIMEOUT = float(os.environ.get("UI_TIMEOUT", "60"))
API = URL.rsplit("/ui", 1)[0]


class Fail(Exception):
    pass


class Browser:
    def __init__(self):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def fds():
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        args = [os.environ.get("CHROMIUM", "/usr/bin/chromium"), "--headless=new", "--no-sandbox",
                "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--remote-debugging-pipe",
                "--user-data-dir=" + os.environ["UI_PROFILE"], "--window-size=1280,900", "about:blank"]
        self.proc = subprocess.Popen(args, pass_fds=(3, 4), preexec_fn=fds, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(OUT, "chromium-stderr.log"), "w"))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buf = b""
        self.next_id = 0
        self.events = []
        self.session = None
        self.allowed_403 = 0
        self.allow_401 = False
        self.fake_body = None

    def _read_msg(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail("no answer from Chromium in time")
            r, _, _ = select.select([self.from_chrome], [], [], left)
            if r:
                chunk = os.read(self.from_chrome, 1 << 20)
                if not chunk:
                    raise Fail("Chromium closed the DevTools pipe")
                self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method, params=None, session=True, timeout=None):
        self.next_id += 1
        mid = self.next_id
        m = {"id": mid, "method": method, "params": params or {}}
        if session and self.session:
            m["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(m).encode() + b"\0")
        deadline = time.monotonic() + (timeout or TIMEOUT)
        while True:
            msg = self._read_msg(deadline)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise Fail("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def drain(self):
        while True:
            r, _, _ = select.select([self.from_chrome], [], [], 0)
            if not r:
                return
            chunk = os.read(self.from_chrome, 1 << 20)
            if not chunk:
                return
            self.buf += chunk
            while b"\0" in self.buf:
                msg, self.buf = self.buf.split(b"\0", 1)
                m = json.loads(msg)
                if "method" in m:
                    self.events.append(m)

    def eval(self, expr, await_promise=False):
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": await_promise})
        if "exceptionDetails" in r:
            raise Fail("evaluate %r: %s" % (expr[:80], r["exceptionDetails"].get("exception", {}).get("description")))
        return r.get("result", {}).get("value")

    def serve_paused(self):
        """Answers requests held by the Fetch domain with self.fake_body (a canned API answer)."""
        self.drain()
        while True:
            ev = next((e for e in self.events if e.get("method") == "Fetch.requestPaused"
                       and not e.get("_done")), None)
            if not ev:
                return
            ev["_done"] = True
            try:
                self.send("Fetch.fulfillRequest", {
                    "requestId": ev["params"]["requestId"], "responseCode": 200,
                    "responseHeaders": [{"name": "Content-Type", "value": "application/json"}],
                    "body": base64.b64encode(self.fake_body.encode()).decode()})
            except Fail:
                pass  # the request was cancelled meanwhile (e.g. by a reload)

    def wait(self, expr, what):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.fake_body is not None:
                self.serve_paused()
            try:
                if self.eval(expr):
                    return
            except Fail:
                pass  # the document may be between two loads
            time.sleep(0.1)
        raise Fail("timed out waiting for " + what)

    def console_errors(self):
        self.drain()
        errs = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                errs.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:400])
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errs.append("console.%s: %s" % (p["type"], json.dumps(p.get("args"))[:400]))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                ent = p["entry"]
                # The one refusal the test provokes on purpose (the denied name) is logged by
                # Chromium as a failed resource load; anything else is an error.
                if ent.get("source") == "network" and "status of 403" in ent.get("text", "") \
                        and ent.get("url", "").endswith("/v1/domains") and self.allowed_403 > 0:
                    self.allowed_403 -= 1
                    continue
                # The sign-in check provokes 401s on purpose (no token, then a wrong one).
                if ent.get("source") == "network" and "status of 401" in ent.get("text", "") and self.allow_401:
                    continue
                # Same for renew/revoke on an acmedge whose API does not offer them (405).
                if ent.get("source") == "network" and "status of 405" in ent.get("text", "") \
                        and re.search(r"/v1/domains/[^/]+/(renew|revoke)$", ent.get("url", "")):
                    continue
                errs.append("log: %s %s" % (p["entry"].get("text"), p["entry"].get("url", "")))
        return errs

    def screenshot(self, name):
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path = os.path.join(OUT, name)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

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


def api_post(path, body):
    req = urllib.request.Request(API + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def step(msg):
    print("step: " + msg, flush=True)


def row_state(name):
    return "(() => { const r = document.querySelector('#domains tbody tr[data-domain=\"%s\"]');" \
           " return r ? r.children[1].textContent : null; })()" % name


def confirm_dialog(b):
    b.wait("document.getElementById('confirm').open", "the confirmation dialog")
    b.eval("document.getElementById('confirm-ok').click()")
    b.wait("!document.getElementById('confirm').open", "the dialog to close")


def run(b):
    b.send("Target.setDiscoverTargets", {"discover": False}, session=False)
    tid = b.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
    b.session = b.send("Target.attachToTarget", {"targetId": tid, "flatten": True}, session=False)["sessionId"]
    for d in ("Runtime.enable", "Page.enable", "Log.enable"):
        b.send(d)
    token_script = b.send("Page.addScriptToEvaluateOnNewDocument",
                          {"source": "try { sessionStorage.setItem('acmedge.token', %s); } catch (e) {}" % json.dumps(TOKEN)})["identifier"]
    # Record every state each row ever showed, so a short "pending" is not missed between polls.
    b.send("Page.addScriptToEvaluateOnNewDocument", {"source": """
      window.__seen = {};
      document.addEventListener('DOMContentLoaded', () => {
        const tb = document.querySelector('#domains tbody');
        const rec = () => tb.querySelectorAll('tr').forEach((r) => {
          const n = r.dataset.domain, s = r.children[1].textContent;
          (window.__seen[n] = window.__seen[n] || []);
          if (window.__seen[n][window.__seen[n].length - 1] !== s) window.__seen[n].push(s);
        });
        new MutationObserver(rec).observe(tb, {childList: true, subtree: true, characterData: true});
      });"""})
    step("load " + URL)
    b.send("Page.navigate", {"url": URL})
    b.wait("document.readyState === 'complete' && !!window.acmedgeConsole", "the page to load")
    b.wait("document.getElementById('conn').textContent === 'live'", "the live event stream")
    b.wait(row_state("first.example.test") + " === 'valid'", "first.example.test valid in the table")
    nav_id = b.eval("performance.getEntriesByType('navigation')[0].startTime + ':' + performance.timeOrigin")

    step("add second.example.test through the form; it must go pending -> valid without a reload")
    b.eval("document.getElementById('add-name').value = 'second.example.test';"
           "document.getElementById('add-form').requestSubmit()")
    confirm_dialog(b)
    b.wait(row_state("second.example.test") + " === 'valid'", "second.example.test valid")
    seen = b.eval("window.__seen['second.example.test']")
    if not seen or seen[0] != "pending" or seen[-1] != "valid":
        raise Fail("second.example.test states seen: %r (want pending ... valid)" % seen)
    if b.eval("performance.getEntriesByType('navigation')[0].startTime + ':' + performance.timeOrigin") != nav_id:
        raise Fail("the page reloaded")
    b.wait("[...document.querySelectorAll('#events li')].some(li => li.textContent.includes('cert_installed')"
           " && li.textContent.includes('second.example.test'))", "cert_installed for second.example.test in the feed")

    step("a denied name: the API refusal is shown and domain_denied reaches the feed")
    b.allowed_403 = 1
    b.eval("document.getElementById('add-name').value = 'nope.other.test';"
           "document.getElementById('add-form').requestSubmit()")
    confirm_dialog(b)
    b.wait("document.getElementById('toast').textContent.includes('nope.other.test')", "the denial message")
    b.wait("[...document.querySelectorAll('#events li')].some(li => li.textContent.includes('domain_denied')"
           " && li.textContent.includes('nope.other.test'))", "domain_denied in the feed")

    step("detail view shows the name's event history")
    b.eval("document.querySelector('#domains tbody tr[data-domain=\"second.example.test\"]').click()")
    b.wait("!document.getElementById('detail').hidden && document.getElementById('detail-name').textContent"
           " === 'second.example.test'", "the detail panel")
    b.wait("[...document.querySelectorAll('#detail-events li')].some(li => li.textContent.includes('cert_installed'))"
           " && [...document.querySelectorAll('#detail-events li')].some(li => li.textContent.includes('issuance_started'))",
           "issuance_started and cert_installed in the detail history")

    step("renew and revoke from the detail view: each succeeds and its event arrives")
    for action, ok_word, event in (("renew", "renewal requested", "issuance_started"), ("revoke", "revoked", "cert_revoked")):
        b.eval("document.getElementById('toast').textContent = ''")
        before = b.eval("window.acmedgeConsole.lastId()")
        b.eval("document.querySelector('#detail button[data-action=%s]').click()" % action)
        confirm_dialog(b)
        b.wait("document.getElementById('toast').textContent.startsWith('second.example.test: ')", action + " result")
        msg = b.eval("document.getElementById('toast').textContent")
        if ok_word not in msg:
            raise Fail("%s did not succeed: %r" % (action, msg))
        b.wait("[...document.querySelectorAll('#events li')].some(li => li.textContent.includes('%s')"
               " && li.textContent.includes('second.example.test') && +li.dataset.id > %d)" % (event, before), event + " after " + action)
        print("  %s -> %s" % (action, msg), flush=True)

    step("filter and sort")
    b.eval("{ const f = document.getElementById('filter'); f.value = 'second'; f.dispatchEvent(new Event('input')); }")
    rows = b.eval("[...document.querySelectorAll('#domains tbody tr')].map(r => r.dataset.domain)")
    if rows != ["second.example.test"]:
        raise Fail("filter 'second' shows %r" % rows)
    b.eval("{ const f = document.getElementById('filter'); f.value = ''; f.dispatchEvent(new Event('input')); }")
    b.eval("document.querySelector('#domains th[data-key=\"domain\"]').click()")
    rows = b.eval("[...document.querySelectorAll('#domains tbody tr')].map(r => r.dataset.domain)")
    if rows != sorted(rows, reverse=True) or len(rows) < 2:
        raise Fail("descending sort shows %r" % rows)
    b.eval("document.querySelector('#domains th[data-key=\"domain\"]').click()")

    step("stream dropped: events emitted meanwhile arrive once, none missed")
    b.eval("window.acmedgeConsole.dropStream()")
    if api_post("/v1/domains", {"domain": "third.example.test"}) != 202:
        raise Fail("POST third.example.test was not accepted")
    b.wait("document.getElementById('conn').textContent === 'live'", "the stream to resume")
    b.wait(row_state("third.example.test") + " !== null", "third.example.test in the table")
    b.wait("[...document.querySelectorAll('#events li')].some(li => li.textContent.includes('domain_requested')"
           " && li.textContent.includes('third.example.test'))", "domain_requested for third.example.test")

    step("delete first.example.test")
    b.eval("document.querySelector('#domains tbody tr[data-domain=\"first.example.test\"] button[data-action=delete]').click()")
    confirm_dialog(b)
    b.wait(row_state("first.example.test") + " === null", "first.example.test to leave the table")
    b.wait("[...document.querySelectorAll('#events li')].some(li => li.textContent.includes('domain_deleted')"
           " && li.textContent.includes('first.example.test'))", "domain_deleted in the feed")

    ids = b.eval("[...document.querySelectorAll('#events li')].map(li => +li.dataset.id)")
    if len(ids) != len(set(ids)):
        raise Fail("duplicate events in the feed: %r" % ids)
    want = list(range(max(ids), min(ids) - 1, -1))
    if ids != want:
        raise Fail("feed ids are not one consecutive run (missed or reordered events): %r" % ids)
    last = b.eval("window.acmedgeConsole.lastId()")
    if last != max(ids):
        raise Fail("lastId %r != newest id shown %r" % (last, max(ids)))

    step("charts drawn")
    bars = b.eval("document.querySelectorAll('#chart-rate rect').length")
    if not bars:
        raise Fail("the issuance chart has no bars")
    if not b.eval("document.querySelectorAll('#chart-expiry rect').length"):
        raise Fail("the expiry chart has no bars")

    print("screenshot: " + b.screenshot("ui-console.png"), flush=True)
    step("phone width")
    b.send("Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    time.sleep(0.3)
    over = b.eval("document.documentElement.scrollWidth - window.innerWidth")
    if over > 1:
        raise Fail("page is %d px wider than a phone screen" % over)
    print("screenshot: " + b.screenshot("ui-console-phone.png"), flush=True)

    errs = b.console_errors()
    if errs:
        raise Fail("console errors:\n  " + "\n  ".join(errs))

    step("without a stored token the console asks for one; a wrong one is refused, the right one works")
    b.send("Emulation.clearDeviceMetricsOverride")
    b.send("Page.removeScriptToEvaluateOnNewDocument", {"identifier": token_script})
    b.eval("sessionStorage.clear()")
    b.events = []
    b.send("Page.reload", {"ignoreCache": True})
    b.wait("document.readyState === 'complete' && !document.getElementById('login').hidden", "the token form")
    b.eval("document.getElementById('token').value = 'wrong-token'; document.getElementById('login-form').requestSubmit()")
    b.wait("!document.getElementById('login').hidden && document.getElementById('conn').textContent === 'token needed'",
           "the wrong token to be refused")
    if b.eval("document.querySelectorAll('#domains tbody tr').length"):
        raise Fail("domains shown with a wrong token")
    b.eval("document.getElementById('token').value = %s; document.getElementById('login-form').requestSubmit()" % json.dumps(TOKEN))
    b.wait("document.getElementById('conn').textContent === 'live'", "the stream with the right token")
    b.wait(row_state("second.example.test") + " !== null", "the domains with the right token")
    b.allow_401 = True
    errs = b.console_errors()
    if errs:
        raise Fail("console errors after signing in:\n  " + "\n  ".join(errs))

    step("paging with 120 names (the list answer is replaced by a canned one through the Fetch domain)")
    fake = [{"domain": "name-%03d.example.test" % i, "state": ["valid", "pending", "failed"][i % 3],
             "not_after": "2099-01-01T00:00:00Z" if i % 3 == 0 else None, "issuer": "CN=test",
             "last_error": "urn:ietf:params:acme:error:dns" if i % 3 == 2 else None, "retry_at": None}
            for i in range(120)]
    b.fake_body = json.dumps(fake)
    b.send("Fetch.enable", {"patterns": [{"urlPattern": "*/v1/domains", "requestStage": "Request"}]})
    b.eval("document.getElementById('filter').value = ''; document.getElementById('state-filter').value = ''")
    b.send("Page.reload", {"ignoreCache": True})
    b.wait("document.getElementById('page-info').textContent === 'page 1 of 3 (120 names)'", "3 pages of 120 names")
    rows = b.eval("[...document.querySelectorAll('#domains tbody tr')].map(r => r.dataset.domain)")
    if len(rows) != 50 or rows[0] != "name-000.example.test" or rows[-1] != "name-049.example.test":
        raise Fail("first page: %d rows %r..%r" % (len(rows), rows[:1], rows[-1:]))
    b.eval("document.getElementById('next').click(); document.getElementById('next').click()")
    rows = b.eval("[...document.querySelectorAll('#domains tbody tr')].map(r => r.dataset.domain)")
    if len(rows) != 20 or rows[-1] != "name-119.example.test" or not b.eval("document.getElementById('next').disabled"):
        raise Fail("last page: %d rows, next enabled: %r" % (len(rows), b.eval("document.getElementById('next').disabled")))
    b.eval("{ const s = document.getElementById('state-filter'); s.value = 'failed'; s.dispatchEvent(new Event('change')); }")
    if b.eval("document.getElementById('page-info').textContent") != "page 1 of 1 (40 names)":
        raise Fail("state filter failed: %r" % b.eval("document.getElementById('page-info').textContent"))
    b.send("Fetch.disable")
    b.fake_body = None


def main():
    b = Browser()
    try:
        run(b)
    except Fail as e:
        try:
            b.screenshot("ui-console-failure.png")
        except Exception:
            pass
        print("FAIL: %s" % e, flush=True)
        b.close()
        return 1
    b.close()
    print("ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
