"""The core's edge: wire models (pydantic, from the central) become the core's own events.
The SIP2 details (alert codes "01".."04", hold flags) end here; the core sees a Route."""

from __future__ import annotations

from selfcheck.kiosk import core
from selfcheck.mqtt.messages import AccountRes, AckTx, PatronCheckRes


def route(ack: AckTx) -> core.Route:
    """Where a returned book goes next, from the SIP2 alert type or the hold flags."""
    if ack.alert_type == "02":
        return core.Route.HOLD_ELSEWHERE
    if ack.alert_type == "01" or ack.hold:
        return core.Route.HOLD_HERE
    if ack.alert_type in ("03", "04") or getattr(ack, "transit_to", None):
        return core.Route.TRANSIT
    return core.Route.SHELF


def tx_answer(ack: AckTx) -> core.TxAnswer:
    c = ack.confirm
    return core.TxAnswer(
        msg_id=ack.msg_id, ok=ack.ok, item_id=ack.item_id, reason=ack.reason, title=ack.title,
        due=ack.due, sort_bin=ack.sort_bin, screen_message=tuple(ack.screen_message or ()),
        print_lines=tuple(ack.print_lines or ()), route=route(ack),
        transit_to=getattr(ack, "transit_to", None), desensitize=ack.desensitize,
        resensitize=ack.resensitize,
        confirm=None if c is None else core.Confirmation(
            code=c.code, amount=c.amount, currency=c.currency,
            currency_exponent=c.currency_exponent))


def ack_received(ack: AckTx) -> core.AckReceived:
    return core.AckReceived(tx_answer(ack))


def patron_checked(res: PatronCheckRes | None) -> core.PatronChecked:
    if res is None:
        return core.PatronChecked(None)
    return core.PatronChecked(core.PatronAnswer(
        ok=res.ok, reason=res.reason, patron_ref=res.patron_ref,
        display_name=res.display_name, pin_required=res.pin_required,
        pin_tries_left=res.pin_tries_left, pin_locked_until=res.pin_locked_until))


def account(res: AccountRes) -> core.Account:
    return core.Account(
        ok=res.ok, fines_total=res.fines_total, currency=res.currency,
        currency_exponent=res.currency_exponent,
        loans=tuple(core.AccountLoan(item_id=x.item_id, title=x.title, due=x.due,
                                     overdue=x.overdue, renewable=x.renewable)
                    for x in res.loans),
        holds_ready=tuple(core.HoldReady(item_id=x.item_id, title=x.title,
                                         pickup_by=x.pickup_by, pickup_at=x.pickup_at)
                          for x in res.holds_ready),
        holds_waiting=tuple(core.HoldWaiting(title=x.title, position=x.position)
                            for x in res.holds_waiting),
        fines=tuple(core.Fine(description=x.description, amount=x.amount) for x in res.fines))


def account_loaded(res: AccountRes | None) -> core.AccountLoaded:
    return core.AccountLoaded(None if res is None else account(res))
