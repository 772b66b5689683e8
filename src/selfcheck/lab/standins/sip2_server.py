"""A real SIP2 server for the tests and the benchmark: the `pysip2` package's ACS server
(its own codec, framing, AY/AZ checks and 96/97 handling, none of ours) with a small library
behind it, and a TCP proxy in front of it that breaks the transport on demand (drops, garbled
bytes, CR LF, held replies).

`with running(Library(...)) as (server, proxy): ...` serves from a thread on free ports.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from pysip2 import (
    CHECKIN,
    CHECKOUT,
    END_PATRON_SESSION,
    FEE_PAID,
    ITEM_INFORMATION,
    LOGIN,
    PATRON_INFORMATION,
    PATRON_STATUS,
    RENEW,
    RENEW_ALL,
    SIP2Server,
)
from pysip2.models import (
    CheckinRequest,
    CheckinResponse,
    CheckoutRequest,
    CheckoutResponse,
    EndPatronSessionRequest,
    EndSessionResponse,
    FeePaidRequest,
    FeePaidResponse,
    ItemInformationRequest,
    ItemInformationResponse,
    LoginRequest,
    LoginResponse,
    PatronInformationRequest,
    PatronInformationResponse,
    PatronStatusRequest,
    PatronStatusResponse,
    RenewAllRequest,
    RenewAllResponse,
    RenewRequest,
    RenewResponse,
)

LOAN_DAYS = 14
FINE_PER_DAY = 1_000  # VND per day late, charged at the return as Koha does


@dataclass
class Patron:
    name: str
    blocked: bool = False
    limit: int = 5
    pin: str | None = None  # checked when AD is sent: CQ Y/N
    holds_ready: list[str] = field(default_factory=list)  # AS: item ids
    holds_waiting: list[str] = field(default_factory=list)  # CD: titles
    fines: list[tuple[str, int]] = field(default_factory=list)  # AV text, amount (VND)


@dataclass
class Item:
    title: str
    charged_to: str | None = None
    due: dt.date | None = None
    sort_bin: str | None = None
    hold_queue: int = 0  # CF
    hold_pickup: dt.date | None = None  # CM
    returned_on: dt.date | None = None  # the return date of the last check-in (09)
    home: str = "TVTINH"  # the home branch: AQ of 18 (Koha's homebranch)
    lost: bool = False  # Koha's itemlost: status 12, before charged (17)
    damaged: bool = False  # Koha's damaged: status 01 with "Item is damaged" (17)


def _now18() -> str:
    now = dt.datetime.now()
    return now.strftime("%Y%m%d") + "    " + now.strftime("%H%M%S")


def _due18(day: dt.date) -> str:
    return day.strftime("%Y%m%d") + "    235900"


def _day(text: str) -> dt.date | None:
    """A date field the way Koha's SIP server reads it: by position, the zone ignored."""
    try:
        return dt.date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def _flags(patron: Patron | None, charged: int) -> str:
    flags = [" "] * 14
    if patron is not None and patron.blocked:
        flags[0] = "Y"
    if patron is not None and charged >= patron.limit:
        flags[5] = "Y"
    return "".join(flags)


@dataclass
class Library:
    """What the ACS knows. `log` records every state-changing request the ACS applied."""

    patrons: dict[str, Patron] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    user: str = "sc"
    password: str = "secret"
    delay_s: float = 0.0  # every answer waits this long (a slow library system)
    log: list[tuple[str, str]] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)  # locations as received (CP, AP)
    requests: list[Any] = field(default_factory=list)  # 65, 35 and 37 as pysip2 parsed them
    languages: list[str] = field(default_factory=list)  # the language of each 23 and 63
    circulation: list[Any] = field(default_factory=list)  # 11 and 09 as pysip2 parsed them
    asked: list[str] = field(default_factory=list)  # the item of each 17
    lock: threading.Lock = field(default_factory=threading.Lock)

    def charged(self, card: str) -> list[str]:
        return [k for k, v in self.items.items() if v.charged_to == card]

    def count(self, command: str, item: str) -> int:
        return self.log.count((command, item))

    def charge_overdue(self, it: Item, returned: dt.date) -> None:
        """The overdue fine Koha charges on a return: per day late at the return date."""
        late = (returned - it.due).days if it.due else 0
        patron = self.patrons.get(it.charged_to or "")
        if late > 0 and patron is not None:
            patron.fines.append((f"Trả sách quá hạn: {it.title}", late * FINE_PER_DAY))


def build_server(lib: Library, encoding: str) -> SIP2Server:
    app = SIP2Server(institution_id="tv-test", encoding=encoding, login_required=True)

    def say(text: str) -> str:
        """The server's own messages; a cp850 library system has them without Vietnamese
        marks (folded here with unicodedata, independently of central/sip2)."""
        if encoding.lower().replace("-", "") == "utf8":
            return text
        plain = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
        return plain.encode("ascii", "ignore").decode("ascii")

    async def slow() -> None:
        if lib.delay_s:
            await anyio.sleep(lib.delay_s)

    @app.route(LOGIN)
    async def login(req: LoginRequest, ctx: Any) -> LoginResponse:
        await slow()
        lib.seen.append(req.location_code or "")
        ok = (req.login_user_id, req.login_password) == (lib.user, lib.password)
        return LoginResponse(ok="1" if ok else "0")

    @app.route(PATRON_STATUS)
    async def patron_status(req: PatronStatusRequest, ctx: Any) -> PatronStatusResponse:
        await slow()
        lib.languages.append(req.language)
        p = lib.patrons.get(req.patron_identifier)
        return PatronStatusResponse(
            patron_status=_flags(p, len(lib.charged(req.patron_identifier))),
            language=req.language, transaction_date=_now18(), institution_id=req.institution_id,
            patron_identifier=req.patron_identifier, personal_name=p.name if p else "",
            valid_patron="Y" if p else "N")

    @app.route(PATRON_INFORMATION)
    async def patron_info(req: PatronInformationRequest,
                          ctx: Any) -> PatronInformationResponse:
        await slow()
        lib.languages.append(req.language)
        p = lib.patrons.get(req.patron_identifier)
        charged = lib.charged(req.patron_identifier)
        overdue = [i for i in charged if (d := lib.items[i].due) and d < dt.date.today()]
        pin_ok = None
        if req.patron_password is not None and p is not None:
            pin_ok = "Y" if p.pin is not None and req.patron_password == p.pin else "N"
        want = req.summary.ljust(10)
        fined = p.fines if p else []
        return PatronInformationResponse(
            patron_status=_flags(p, len(charged)), language=req.language,
            transaction_date=_now18(), hold_items_count="0000", overdue_items_count="0000",
            charged_items_count=f"{len(charged):04d}", fine_items_count="0000",
            recall_items_count="0000", unavailable_holds_count="0000",
            institution_id=req.institution_id, patron_identifier=req.patron_identifier,
            personal_name=p.name if p else "", valid_patron="Y" if p else "N",
            charged_items_limit=f"{p.limit:04d}" if p else None,
            charged_items=tuple(charged) if want[2] == "Y" else (),
            valid_patron_password=pin_ok,
            hold_items=tuple(p.holds_ready) if p and want[0] == "Y" else (),
            overdue_items=tuple(overdue) if want[1] == "Y" else (),
            fine_items=tuple(f"{text} {amount}" for text, amount in fined)
            if want[3] == "Y" else (),
            unavailable_hold_items=tuple(p.holds_waiting) if p and want[5] == "Y" else (),
            currency_type="VND" if fined else None,
            fee_amount=f"{sum(a for _, a in fined)}.00" if fined else None,
            screen_message=() if p else (say("Không tìm thấy bạn đọc"),))

    @app.route(CHECKOUT)
    async def checkout(req: CheckoutRequest, ctx: Any) -> CheckoutResponse:
        await slow()
        lib.circulation.append(req)
        card, item_id = req.patron_identifier, req.item_identifier
        p, it = lib.patrons.get(card), lib.items.get(item_id)
        # No block (done offline): Koha lends whatever the holds and limits, the reader has
        # the book; its nb due date is when the loan was made.
        no_block = req.no_block == "Y"
        refusal = None
        if p is None:
            refusal = say("Thẻ không hợp lệ")
        elif p.blocked:
            refusal = say("Thẻ bị khóa")
        elif it is None:
            refusal = say("Không tìm thấy sách")
        elif it.charged_to not in (None, card):
            refusal = say("Sách đang được mượn")
        elif it.hold_queue and not no_block:
            refusal = say("Sách đang được giữ cho bạn đọc khác")
        elif it.charged_to is None and len(lib.charged(card)) >= p.limit and not no_block:
            refusal = say("Quá số sách được mượn")
        if refusal is not None or it is None:
            return CheckoutResponse(
                ok="0", renewal_ok="N", magnetic_media="N", desensitize="N",
                transaction_date=_now18(), institution_id=req.institution_id,
                patron_identifier=card, item_identifier=item_id,
                title_identifier=it.title if it else "", due_date="",
                screen_message=(say(refusal or ""),))
        lent_on = _day(req.nb_due_date) if no_block else None
        with lib.lock:
            lib.log.append(("11", item_id))
            it.charged_to = card
            it.due = (lent_on or dt.date.today()) + dt.timedelta(days=LOAN_DAYS)
        return CheckoutResponse(
            ok="1", renewal_ok="N", magnetic_media="N", desensitize="Y",
            transaction_date=_now18(), institution_id=req.institution_id, patron_identifier=card,
            item_identifier=item_id, title_identifier=it.title,
            due_date="" if no_block else _due18(it.due),  # Koha's offline path sends none
            screen_message=(say("Mượn thành công"),),
            print_line=(say(f"{it.title} - hạn {it.due}"),))

    @app.route(CHECKIN)
    async def checkin(req: CheckinRequest, ctx: Any) -> CheckinResponse:
        await slow()
        lib.seen.append(req.current_location)
        lib.circulation.append(req)
        it = lib.items.get(req.item_identifier)
        if it is None:
            return CheckinResponse(
                ok="0", resensitize="N", magnetic_media="N", alert="N",
                transaction_date=_now18(), institution_id=req.institution_id,
                item_identifier=req.item_identifier, permanent_location="",
                screen_message=(say("Không tìm thấy sách"),))
        # Koha returns the loan as of the return date, with or without no block.
        returned = _day(req.return_date) or dt.date.today()
        with lib.lock:
            lib.log.append(("09", req.item_identifier))
            lib.charge_overdue(it, returned)
            it.charged_to, it.due, it.returned_on = None, None, returned
        return CheckinResponse(
            ok="1", resensitize="Y", magnetic_media="N", alert="N", transaction_date=_now18(),
            institution_id=req.institution_id, item_identifier=req.item_identifier,
            permanent_location=say("Kho mở"), title_identifier=it.title, sort_bin=it.sort_bin,
            screen_message=(say("Trả sách thành công"),))

    @app.route(RENEW)
    async def renew(req: RenewRequest, ctx: Any) -> RenewResponse:
        await slow()
        item_id = req.item_identifier or ""
        it = lib.items.get(item_id)
        ok = it is not None and it.charged_to == req.patron_identifier
        if ok and it is not None:
            with lib.lock:
                lib.log.append(("29", item_id))
                it.due = dt.date.today() + dt.timedelta(days=2 * LOAN_DAYS)
        return RenewResponse(
            ok="1" if ok else "0", renewal_ok="Y" if ok else "N", magnetic_media="N",
            desensitize="Y" if ok else "N", transaction_date=_now18(),
            institution_id=req.institution_id, patron_identifier=req.patron_identifier,
            item_identifier=item_id, title_identifier=it.title if it else "",
            due_date=_due18(it.due) if ok and it and it.due else "",
            screen_message=() if ok else (say("Không gia hạn được"),))

    @app.route(RENEW_ALL)
    async def renew_all(req: RenewAllRequest, ctx: Any) -> RenewAllResponse:
        await slow()
        lib.requests.append(req)
        p = lib.patrons.get(req.patron_identifier)
        charged = lib.charged(req.patron_identifier)
        if p is None or p.blocked:  # nothing renewed, and each item says so
            return RenewAllResponse(ok="0", renewed_count="0000",
                                    unrenewed_count=f"{len(charged):04d}",
                                    transaction_date=_now18(),
                                    institution_id=req.institution_id,
                                    unrenewed_items=tuple(charged),
                                    screen_message=(say("Không gia hạn được"),))
        with lib.lock:
            for item_id in charged:
                lib.log.append(("65", item_id))
                lib.items[item_id].due = dt.date.today() + dt.timedelta(days=2 * LOAN_DAYS)
        return RenewAllResponse(ok="1", renewed_count=f"{len(charged):04d}",
                                unrenewed_count="0000", transaction_date=_now18(),
                                institution_id=req.institution_id, renewed_items=tuple(charged),
                                screen_message=(say(f"Đã gia hạn {len(charged)} cuốn"),))

    @app.route(ITEM_INFORMATION)
    async def item_info(req: ItemInformationRequest, ctx: Any) -> ItemInformationResponse:
        """As Koha's handle_item_information (C4/SIP/Sip/MsgType.pm) and its
        sip_circulation_status (C4/SIP/ILS/Item.pm): an unknown barcode is "010101", the
        barcode echoed and an empty title, nothing else (no screen message); lost comes
        before charged, so a lost book on loan says 12, its loan only by the due date (sent
        whenever there is a checkout); a damaged one is 01 with "Item is damaged"."""
        await slow()
        lib.asked.append(req.item_identifier)
        it = lib.items.get(req.item_identifier)
        if it is None:
            return ItemInformationResponse(
                circulation_status="01", security_marker="01", fee_type="01",
                transaction_date=_now18(), item_identifier=req.item_identifier,
                title_identifier="")
        status = "12" if it.lost else "04" if it.charged_to else "01" if it.damaged else "03"
        return ItemInformationResponse(
            circulation_status=status, security_marker="02", fee_type="01",
            transaction_date=_now18(), item_identifier=req.item_identifier,
            title_identifier=it.title, media_type="001", permanent_location=it.home,
            current_location=it.home,
            due_date=_due18(it.due) if it.due else None,
            hold_queue_length=str(it.hold_queue) if it.hold_queue else None,
            hold_pickup_date=_due18(it.hold_pickup) if it.hold_pickup else None,
            screen_message=("Item is damaged",) if status == "01" else ())

    @app.route(END_PATRON_SESSION)
    async def end_session(req: EndPatronSessionRequest, ctx: Any) -> EndSessionResponse:
        lib.requests.append(req)
        return EndSessionResponse(end_session="Y", transaction_date=_now18(),
                                  institution_id=req.institution_id,
                                  patron_identifier=req.patron_identifier,
                                  screen_message=(say("Tạm biệt, hẹn gặp lại"),))

    @app.route(FEE_PAID)
    async def fee_paid(req: FeePaidRequest, ctx: Any) -> FeePaidResponse:
        lib.requests.append(req)
        known = req.patron_identifier in lib.patrons
        return FeePaidResponse(payment_accepted="Y" if known else "N",
                               transaction_date=_now18(),
                               institution_id=req.institution_id,
                               patron_identifier=req.patron_identifier,
                               transaction_id=req.transaction_id,
                               screen_message=(say("Đã nhận tiền phạt" if known
                                                   else "Không tìm thấy bạn đọc"),))

    return app


class Sip2Library:
    """The pysip2 server with `lib` behind it, served from a thread on a free port."""

    def __init__(self, lib: Library, encoding: str = "utf-8") -> None:
        self.lib = lib
        self.app = build_server(lib, encoding)
        self.port = 0
        self._ready = threading.Event()
        self._stop: anyio.Event | None = None
        self._token: Any = None
        self._thread = threading.Thread(target=self._run, name="sip2-server", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._stop = anyio.Event()
            async with self.app.start() as port:
                self.port = port
                self._token = anyio.lowlevel.current_token()
                self._ready.set()
                await self._stop.wait()

        anyio.run(main)

    def start(self) -> Sip2Library:
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("the SIP2 server did not start")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            anyio.from_thread.run_sync(self._stop.set, token=self._token)
        self._thread.join(10)

    def __enter__(self) -> Sip2Library:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FaultProxy:
    """TCP proxy in front of the server that breaks the transport on demand:
    - drop_request: close the connection when the next request arrives, before the ACS sees it;
    - drop_reply: let the next request through, then close before its reply (the ACS did it,
      the answer is lost);
    - corrupt_request / corrupt_reply: flip one bit of the next frame (a bad checksum);
    - crlf: end every reply with CR LF instead of CR;
    - hold_reply_s: sit on every reply this long;
    - only: the drops wait for a request of this message code ("29"), letting others by.
    """

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.drop_request = self.drop_reply = False
        self.corrupt_request = self.corrupt_reply = False
        self.crlf = False
        self.hold_reply_s = 0.0
        self.only: str | None = None
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # the ACS is down: so is this connection (and the proxy lives on)
                client.close()
                continue
            mute = threading.Event()  # set: replies on this connection are swallowed
            threading.Thread(target=self._up, args=(client, server, mute), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, mute),
                             daemon=True).start()

    @staticmethod
    def _flip(frame: bytes) -> bytes:
        return frame[:3] + bytes([frame[3] ^ 0x01]) + frame[4:]

    @staticmethod
    def _frames(sock: socket.socket) -> Iterator[bytes]:
        buf = b""
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\r" in buf:
                frame, _, buf = buf.partition(b"\r")
                yield frame + b"\r"

    def _up(self, client: socket.socket, server: socket.socket, mute: threading.Event) -> None:
        for frame in self._frames(client):
            aimed = self.only is None or frame.startswith(self.only.encode())
            if self.drop_request and aimed:
                self.drop_request = False
                return self._close(client, server)
            if self.corrupt_request:
                self.corrupt_request = False
                frame = self._flip(frame)
            if self.drop_reply and aimed:
                self.drop_reply = False
                mute.set()
                server.sendall(frame)
                threading.Event().wait(0.3)  # let the ACS apply it
                return self._close(client, server)
            try:
                server.sendall(frame)
            except OSError:
                break
        self._close(client, server)

    def _down(self, server: socket.socket, client: socket.socket,
              mute: threading.Event) -> None:
        for frame in self._frames(server):
            if mute.is_set():
                continue
            if self.hold_reply_s:
                threading.Event().wait(self.hold_reply_s)
            if self.corrupt_reply:
                self.corrupt_reply = False
                frame = self._flip(frame)
            if self.crlf:
                frame += b"\n"
            try:
                client.sendall(frame)
            except OSError:
                break
        self._close(client, server)

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._closing = True
        self._listener.close()


@contextmanager
def running(lib: Library, encoding: str = "utf-8") -> Iterator[tuple[Sip2Library, FaultProxy]]:
    with Sip2Library(lib, encoding) as server:
        proxy = FaultProxy(server.port)
        try:
            yield server, proxy
        finally:
            proxy.close()
