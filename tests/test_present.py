"""What the screens show, without Kivy (kiosk/present.py): the waiting-books banner names
only this reader's own books, and says "this book" for one; the renewable loans left."""

from __future__ import annotations

import dataclasses

from selfcheck.drivers.seen import TagUid
from selfcheck.kiosk import core, present
from selfcheck.kiosk.core_model import Account, AccountLoan


def view(mode: core.Mode = core.Mode.BORROW, name: str | None = "An", lang: str = "en",
         **kw: object) -> core.View:
    base = core.View(mode=mode, lang=lang, online=True, patron_name=name, lines=(),
                     countdown=None, message=None)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def line(n: int, kind: str = "loan") -> core.Line:
    return core.Line(uid=TagUid(f"E0040150{n:08X}"), kind=kind,  # type: ignore[arg-type]
                     status=core.Status.DONE, item_id=f"3900{n:04d}", title=f"Book {n}")


def waiting(n: int, state: str = "on_loan") -> core.PendingWrite:
    return core.PendingWrite(TagUid(f"E0040150{n:08X}"), f"3900{n:04d}", f"Book {n}",
                             state)  # type: ignore[arg-type]


def test_the_banner_names_this_readers_books_and_counts_them_right() -> None:
    one = present.pending_text(view(lines=(line(1),), pending=(waiting(1),)))
    assert one.startswith("Please put this book back") and "Book 1" in one
    two = present.pending_text(view(lines=(line(1), line(2)),
                                    pending=(waiting(1), waiting(2))))
    assert two.startswith("Please put 2 books back") and "Book 1, Book 2" in two
    vi = present.pending_text(view(lang="vi", lines=(line(1),), pending=(waiting(1),)))
    assert "cuốn sách này" in vi and "1 cuốn" not in vi
    # a borrowed book is unlocked, a returned one locked: one sentence each
    both = present.pending_text(view(mode=core.Mode.RETURN, lines=(line(1), line(2, "return")),
                                     pending=(waiting(1), waiting(2, "in_library"))))
    assert len(both.splitlines()) == 2 and "to lock" in both and "to unlock" in both


def test_the_banner_never_names_another_readers_book() -> None:
    # a book left by the reader before: said without its title
    other = present.pending_text(view(lines=(line(1),), pending=(waiting(7),)))
    assert other and "Book 7" not in other
    # no reader signed in (idle, checking): no title at all
    idle = present.pending_text(view(mode=core.Mode.IDLE, name=None, lines=(line(1),),
                                     pending=(waiting(1),)))
    assert idle and "Book 1" not in idle
    # staff and out of service: no banner
    assert present.pending_text(view(mode=core.Mode.STAFF, pending=(waiting(1),))) == ""
    assert present.pending_text(view()) == ""


def test_renewable_left_leaves_out_refused_and_asked_loans() -> None:
    acc = Account(ok=True, loans=(AccountLoan("39000001"), AccountLoan("39000002"),
                                  AccountLoan("39000003", renewable=False)))
    asked = (dataclasses.replace(line(2, "renew"), uid=None, item_id="39000002"),)
    got = present.renewable_left(view(mode=core.Mode.ACCOUNT, account=acc, renewals=asked))
    assert [ln.item_id for ln in got] == ["39000001"]
    assert present.renewable_left(view(mode=core.Mode.ACCOUNT)) == []


def test_the_time_out_question_comes_in_the_last_seconds_only() -> None:
    from selfcheck.kiosk.timeouts import MORE_TIME_WARN_S

    assert not present.time_out_warned(view(countdown=None))
    assert not present.time_out_warned(view(countdown=int(MORE_TIME_WARN_S) + 1))
    assert present.time_out_warned(view(countdown=int(MORE_TIME_WARN_S)))


def test_the_summary_counts_an_offline_loan_as_made() -> None:
    lines = (line(1), dataclasses.replace(line(2), status=core.Status.OFFLINE),
             line(3, "return"), dataclasses.replace(line(4), status=core.Status.REFUSED))
    assert present.summary_counts(view(mode=core.Mode.SUMMARY, lines=lines)) == (2, 1, 1)
