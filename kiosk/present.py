"""What the station's screens show, worked out from the core's view without Kivy: the rules
a screen must keep (which titles a banner may name, which loans can still be renewed) are
here, where a test reaches them without rendering; `ui/` only binds the results."""

from __future__ import annotations

from selfcheck.kiosk import core
from selfcheck.kiosk.core_model import AccountLoan
from selfcheck.kiosk.i18n import t
from selfcheck.kiosk.timeouts import MORE_TIME_WARN_S


def pending_text(view: core.View) -> str:
        """Books to put back on the pad: titles only of this reader's own books; a book
        left by someone before is mentioned without its title."""
        if not view.pending or view.mode in (core.Mode.STAFF, core.Mode.OUT_OF_SERVICE):
            return ""
        lang = view.lang
        own = {u for ln in view.lines for u in ln.uids}
        mine = [p for p in view.pending if p.uid in own]
        if view.patron_name is None and view.mode not in (core.Mode.RETURN,
                                                          core.Mode.SUMMARY):
            mine = []
        if mine:
            # a borrowed book must be unlocked to leave, a returned one locked again: one
            # sentence for each that is waiting
            parts = []
            for state in ("on_loan", "in_library"):
                books = [p for p in mine if p.state == state]
                if books:
                    # one book is "this book", not "1 book(s)"
                    key = f"pending.banner.{state}" + (".one" if len(books) == 1 else "")
                    parts.append(t(key, lang, n=len(books),
                                   titles=", ".join(p.title or t("item.unknown_title", lang,
                                                                 item=p.item_id or p.uid)
                                                    for p in books[:3])))
            return "\n".join(parts)
        return t("pending.neutral", lang)


def renewable_left(view: core.View) -> list[AccountLoan]:
    """The account's loans the reader can still renew: renewable, and not asked for in this
    visit already."""
    if view.account is None:
        return []
    asked = {r.item_id for r in view.renewals}
    return [ln for ln in view.account.loans if ln.renewable and ln.item_id not in asked]


def time_out_warned(view: core.View) -> bool:
    """The time-out question (or a staff panel's warning) shows in the last
    MORE_TIME_WARN_S seconds only: earlier, a countdown would hurry a reader who is reading."""
    return view.countdown is not None and view.countdown <= MORE_TIME_WARN_S


def summary_counts(view: core.View) -> tuple[int, int, int]:
    """Loans made, returns made and books not done, as the summary counts them (an offline
    loan is made)."""
    done = [ln for ln in view.lines if ln.status in (core.Status.DONE, core.Status.OFFLINE)]
    return (sum(ln.kind == "loan" for ln in done), sum(ln.kind == "return" for ln in done),
            len(view.lines) - len(done))
