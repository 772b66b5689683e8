"""The operators' stock-take pages, behind the fleet page's login: `/stocktake` lists the
stock-takes of the sites the operator sees, `/stocktake/{id}` is one report (found, missing,
misplaced, on loan but seen, unknown tags), `/stocktake/{id}.csv` the same as CSV, and
`/api/stocktakes` the list as JSON. `?lang=vi|en` (Vietnamese by default).

Pages rendered on the server, read only: the stock-takes are opened, paused and closed at
the stations by staff; nothing here changes them.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, NoResultFound
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from selfcheck.central.stocktake import Report, Stocktakes, place_label
from selfcheck.system.i18n import LANGS, Catalog

TEXTS = Catalog(Path(__file__).resolve().parent / "locale", "stocktake")
ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
VERDICTS = ("missing", "misplaced", "on_loan", "unknown", "found")
STYLE = """body{font:16px/1.5 system-ui,sans-serif;margin:1.5rem;color:#111;background:#fff}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}th,td{border:1px solid #767676;
padding:.3rem .6rem;text-align:left}th{background:#eee}a{color:#0645ad}
.n{text-align:right}h2{margin-top:1.5rem}.note{background:#fff3cd;padding:.5rem}"""


def place_text(r: Report, lang: str) -> str:
    return TEXTS.t(f"kind.{r.place.kind}", lang, value=place_label(r.place))


def routes(server: Any, engine: Engine) -> list[Route]:
    """`server`: the WebServer, whose login (`_need`) these pages share."""
    takes = Stocktakes(engine)

    def lang_of(request: Request) -> str:
        lang = request.query_params.get("lang", "vi")
        return lang if lang in LANGS else "vi"

    def page(lang: str, title: str, body: str, other: str) -> HTMLResponse:
        t = TEXTS.t
        switch = "en" if lang == "vi" else "vi"
        return HTMLResponse(
            f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            f'<p><a href="{other}?lang={switch}">{html.escape(t("lang.switch", lang))}</a></p>'
            f"<h1>{html.escape(title)}</h1>{body}</body></html>",
            headers={"Cache-Control": "no-store"})

    def visible(request: Request) -> tuple[Any, list[Report]] | Response:
        s = server._need(request)
        if isinstance(s, Response):
            return s
        try:
            reports = takes.reports()
        except DBAPIError:  # a fleet database apart from the central's: no stock-takes here
            reports = []
        return s, [r for r in reports if s.user.sees(r.site)]

    def one(request: Request) -> Report | Response:
        s = server._need(request)
        if isinstance(s, Response):
            return s
        sid = request.path_params["sid"]
        try:
            if not ID.match(sid):
                raise NoResultFound
            r = takes.report(sid)
        except NoResultFound:
            return Response("no such stock-take\n", 404, media_type="text/plain")
        if not s.user.sees(r.site):
            return Response("no such stock-take\n", 404, media_type="text/plain")
        return r

    def listing(request: Request) -> Response:
        got = visible(request)
        if isinstance(got, Response):
            return got
        lang, t = lang_of(request), TEXTS.t
        _, reports = got
        if not reports:
            return page(lang, t("title", lang), f"<p>{html.escape(t('none', lang))}</p>",
                        "/stocktake")
        cols = ["col.site", "col.place", "col.status", "col.opened", "col.stations",
                "col.expected", *(f"verdict.{v}" for v in VERDICTS)]
        head = "".join(f"<th>{html.escape(t(c, lang))}</th>" for c in cols)
        rows = []
        for r in reports:
            c = r.counts()
            rows.append(
                f"<tr><td>{html.escape(r.site)}</td><td><a href=\"/stocktake/"
                f"{r.stocktake_id}?lang={lang}\">{html.escape(place_text(r, lang))}</a></td>"
                f"<td>{html.escape(t('status.' + r.status, lang))}</td>"
                f"<td>{r.opened_at:%Y-%m-%d %H:%M}</td>"
                f"<td>{html.escape(', '.join(r.stations))}</td><td class=n>{r.expected}</td>"
                + "".join(f"<td class=n>{c[v]}</td>" for v in VERDICTS) + "</tr>")
        return page(lang, t("title", lang),
                    f"<table><tr>{head}</tr>{''.join(rows)}</table>", "/stocktake")

    def report(request: Request) -> Response:
        r = one(request)
        if isinstance(r, Response):
            return r
        lang, t = lang_of(request), TEXTS.t
        c = r.counts()
        parts = [f'<p><a href="/stocktake?lang={lang}">{html.escape(t("back", lang))}</a> · '
                 f'<a href="/stocktake/{r.stocktake_id}.csv">{html.escape(t("csv", lang))}'
                 f"</a></p>",
                 f"<p>{html.escape(t('status.' + r.status, lang))} · "
                 f"{html.escape(t('col.expected', lang))}: {r.expected} · "
                 f"{html.escape(t('col.stations', lang))}: "
                 f"{html.escape(', '.join(r.stations))}</p>"]
        if r.status != "closed":
            parts.append(f"<p class=note>{html.escape(t('not_final', lang))}</p>")
        if r.on_loan_from == "library":  # SIP2 and Koha sites: whose word "on loan" is
            parts.append(f"<p>{html.escape(t('on_loan.library', lang))}</p>")
        elif r.on_loan_from in ("partial", "fallback"):
            parts.append(f"<p class=note>{html.escape(t('on_loan.unasked', lang, n=r.unasked))}"
                         "</p>")
        cols = ["col.item", "col.uid", "col.title", "col.call", "col.shelf", "col.station",
                "col.seen"]
        head = "".join(f"<th>{html.escape(t(x, lang))}</th>" for x in cols)
        for v in VERDICTS:
            lines = sorted(r.of(v), key=lambda x: (x.call_number or "", x.item_id or x.uid or ""))
            parts.append(f"<h2 id={v}>{html.escape(t('verdict.' + v, lang))}: {c[v]}</h2>")
            if not lines:
                continue
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(str(x or ''))}</td>" for x in (
                    ln.item_id, ln.uid, ln.title, ln.call_number, ln.shelf, ln.station,
                    f"{ln.seen_at:%Y-%m-%d %H:%M}" if ln.seen_at else "")) + "</tr>"
                for ln in lines)
            parts.append(f"<table><tr>{head}</tr>{rows}</table>")
        return page(lang, f"{t('title', lang)}: {place_text(r, lang)}", "".join(parts),
                    f"/stocktake/{r.stocktake_id}")

    def report_csv(request: Request) -> Response:
        r = one(request)
        if isinstance(r, Response):
            return r
        name = f"stocktake-{r.site}-{r.place.kind}-{r.opened_at:%Y%m%d}.csv"
        # A byte-order mark: spreadsheet programs then read the Vietnamese titles as UTF-8.
        return Response("\ufeff" + r.csv(), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store"})

    def api(request: Request) -> Response:
        got = visible(request)
        if isinstance(got, Response):
            return got
        return JSONResponse([{"site": r.site, **r.info().model_dump(mode="json")}
                             for r in got[1]], headers={"Cache-Control": "no-store"})

    return [Route("/stocktake", listing), Route("/stocktake/{sid}.csv", report_csv),
            Route("/stocktake/{sid}", report), Route("/api/stocktakes", api)]
