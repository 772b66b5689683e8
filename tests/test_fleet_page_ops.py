"""The console page's commands, acknowledgements and audit log in headless Chromium, against
the real fleet service and a real Mosquitto: a whole site is confirmed in a dialog that names
the count, an offline target is named, jobs turn expired, alerts are acknowledged in bulk, a
branch operator is not offered the library system's acknowledgement, and the admin filters
the audit log."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from selfcheck.central.fleet.service import FleetService
from selfcheck.lab.bench.browser import CHROMIUM, Browser
from selfcheck.mqtt import messages, topics
from selfcheck.mqtt.telemetry import BridgeIls
from tests.conftest import ROOT, wait_until
from tests.test_fleet_commands_audit import PASSWORDS, _fleet, recorder, svc
from tests.test_fleet_console import _login as console_login
from tests.test_fleet_integration import Recorder

__all__ = ["recorder", "svc"]  # the fixtures, shared with the HTTP tests
SHOTS = ROOT / "var" / "screenshots"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium missing: scripts/bootstrap "
                                "installs Debian's chromium")


def _login(b: Browser, url: str, name: str) -> None:
    console_login(b, url, name, PASSWORDS[name])


def test_site_commands_expiry_bulk_ack_and_the_audit_log_in_chromium(
        tmp_path: Path, svc: FleetService, recorder: Recorder) -> None:
    _fleet(svc, recorder)
    recorder.publish(topics.bridge_ils("central-bridge-1"), messages.encode(BridgeIls(
        bridge="central-bridge-1", state="down", since=dt.datetime.now(dt.UTC),
        ils="koha")), retain=True)
    wait_until(lambda: svc.state.ils_rows(), 10, "the library system's report")
    b = Browser(tmp_path / "profile", 1366, 860)
    try:
        _login(b, svc.url, "binh")
        # The library system is every branch's: a branch operator sees it, may not ack it.
        b.wait("document.querySelector('#ils [data-ils-scope]')", what="the banner")
        assert b.js("document.querySelectorAll('[data-ack-ils]').length") == 0
        assert "Chỉ người vận hành của mọi chi nhánh" in b.text("#ils")

        # A whole site: a dialog with the count first; "Hủy" sends nothing.
        b.click('#sites [data-site="tv-hn"]')
        b.wait("!document.getElementById('site-actions').hidden")
        b.type('#site-actions [data-cmd="name"]', "out_of_service")
        b.click('#site-actions [data-send="*"]')
        b.wait("document.getElementById('confirm').open", what="the confirmation")
        assert "3 trạm" in b.text("#c-text") and "Thư viện Hà Nội" in b.text("#c-text")
        assert "1 trạm trong số đó đang mất kết nối" in b.text("#c-away")
        b.screenshot(SHOTS / "ops-confirm-1366.png")
        b.click("#c-no")
        b.wait("!document.getElementById('confirm').open")
        assert svc.state.commands == {}
        b.click('#site-actions [data-send="*"]')
        b.wait("document.getElementById('confirm').open")
        # Every toast's words, kept: a toast is gone after four seconds, which a busy machine
        # can spend before the test looks.
        b.js("window.toasts = []; new MutationObserver(ms => ms.forEach(m => m.addedNodes"
             ".forEach(n => n.classList && n.classList.contains('toast') && "
             "window.toasts.push(n.textContent)))).observe(document.body, {childList: true})")
        b.click("#c-yes")
        b.wait("document.querySelectorAll('#site-jobs .job').length === 3", what="three jobs")
        assert len(svc.state.commands) == 3
        # Sent, but the offline station is named, with until when the command holds.
        b.wait("window.toasts.some(t => t.includes('tang-2 (mất kết nối)'))",
               what="the offline warning")
        assert "hết hạn lúc" in b.text("#site-jobs")
        b.screenshot(SHOTS / "ops-sent-offline-1366.png")

        # No station answers (these are recordings, not stations): past the expiry they
        # show expired, pushed by the service.
        svc.expire_commands(time.time() + 400)
        b.wait("document.querySelectorAll('#site-jobs [data-state=expired]').length === 3",
               what="expired jobs")
        assert "hết hạn · lúc" in b.text("#site-jobs") and "trạm không trả lời" in b.text(
            "#site-jobs")
        b.screenshot(SHOTS / "ops-expired-1366.png")
        b.click('#sites [data-site="tv-hn"]')

        # Every paper-out alert in one press: tv-hn's two (tv-hd is not this operator's).
        b.type("#f-alert", "paper_out")
        b.wait("!document.getElementById('ack-bulk').hidden", what="the bulk button")
        assert b.text("#ack-bulk") == "Xác nhận tất cả (2)"
        b.screenshot(SHOTS / "ops-bulk-1366.png")
        b.click("#ack-bulk")
        b.wait("document.getElementById('ack-bulk').hidden", what="nothing left to ack")
        wait_until(lambda: all(a.acked_by == "binh" for (si, _), r in svc.state.stations.items()
                               if si == "tv-hn" for a in r.active.values()
                               if a.kind == "paper_out"), 5, "acked in the service")
        assert svc.state.stations[("tv-hd", "tra-1")].active["paper_out"].acked_by is None
        b.type("#f-alert", "")
        b.click("#logout")
        b.wait("!document.getElementById('login').hidden")

        # The admin: the audit log, filtered to one user, with addresses and arguments.
        _login(b, svc.url, "an")
        b.click('[data-view="audit"]')
        b.wait("document.querySelectorAll('#audit-rows tr').length >= 4", what="the log")
        b.type("#a-user", "binh")
        b.js("document.querySelector('#audit-filter button').click()")
        b.wait("[...document.querySelectorAll('#audit-rows tr')].every(t => "
               "t.children[1].textContent === 'binh')", what="binh's rows only")
        log = b.text("#audit-rows")
        assert "127.0.0.1" in log and "xác nhận hàng loạt" in log and "đăng nhập" in log
        assert "message_vi" in log and "Tạm ngừng phục vụ" in log
        assert "user=binh" in b.js("document.getElementById('a-csv').href")
        assert b.js("document.getElementById('a-more').hidden") is True  # one page
        b.screenshot(SHOTS / "ops-audit-1366.png")
        # English, and a phone.
        b.click("#lang")
        b.wait("document.getElementById('lang').textContent === 'Tiếng Việt'")
        b.wait("document.querySelector('#v-audit th:nth-child(3)').textContent === 'Address'")
        # the rows follow the headings (drawn again from the log's answer in English)
        b.wait("document.getElementById('audit-rows').textContent.includes('bulk acknowledge')",
               what="the log's rows in English")
        b.screenshot(SHOTS / "ops-audit-en-1366.png")
        b.size(390, 844)
        b.wait("window.innerWidth === 390")
        # The stations' filters fold away on a phone; the log's filter stays usable.
        assert b.js("document.getElementById('a-action').offsetWidth > 0") is True
        b.screenshot(SHOTS / "ops-audit-390.png")
    finally:
        b.close()
