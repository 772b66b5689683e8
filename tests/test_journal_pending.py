"""The journal keeps pending security writes, their outcome and staff exceptions across a
restart (a new Journal on the same file)."""

from __future__ import annotations

from pathlib import Path

from selfcheck.kiosk.runtime.journal import Journal


def test_pending_writes_survive_a_restart_and_their_end_is_logged(tmp_path: Path) -> None:
    db = tmp_path / "station.db"
    j = Journal(db)
    j.save_pending("E001", "39000001", "Truyện Kiều", "on_loan")
    j.save_pending("E002", "39000002", None, "in_library")
    j.save_pending("E002", "39000002", None, "in_library")  # saved twice: one row
    j.close()

    j = Journal(db)
    assert j.pending_writes() == [("E001", "39000001", "Truyện Kiều", "on_loan"),
                                  ("E002", "39000002", None, "in_library")]
    assert j.clear_pending("E001", "written")
    assert j.clear_pending("E002", "skipped", "staff-0123456789")
    assert not j.clear_pending("E002", "skipped")  # already gone: nothing logged twice
    j.close()

    j = Journal(db)
    assert j.pending_writes() == []
    assert j.security_log() == [("E001", "39000001", "written", None),
                                ("E002", "39000002", "skipped", "staff-0123456789")]
    j.close()


def test_exceptions_stay_until_staff_dismiss_them(tmp_path: Path) -> None:
    db = tmp_path / "station.db"
    j = Journal(db)
    j.keep_exception("m-1", "39000002", "Số đỏ", "patron_blocked")
    j.keep_exception("m-1", "39000002", "Số đỏ", "patron_blocked")  # a repeated ack
    j.keep_exception("m-2", "39000003", None, None)
    j.close()
    j = Journal(db)
    assert [r[0] for r in j.open_exceptions()] == ["m-1", "m-2"]
    j.dismiss_exception("m-1")
    j.close()
    j = Journal(db)
    assert j.open_exceptions() == [("m-2", "39000003", None, None)]
    j.close()
