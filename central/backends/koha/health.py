"""Is Koha there? Both of its doors are checked: the REST API (one small authenticated GET on
the backend's own client) and the SIP2 server that carries the returns (a fresh login)."""

from __future__ import annotations

from selfcheck.central.backends.koha.client import KohaAuthRefused, KohaClient, KohaUnavailable
from selfcheck.central.backends.sip2.client import Sip2Config
from selfcheck.central.ils_health import Probe, Verdict, sip2_probe


def koha_probe(client: KohaClient, circulation: Sip2Config) -> Probe:
    sip2 = sip2_probe(circulation)

    def probe() -> Verdict:
        try:
            client.get("/items", params={"_per_page": "1"})
        except KohaAuthRefused as exc:
            return Verdict("login refused", f"REST: {exc}")
        except KohaUnavailable as exc:
            return Verdict("down", f"REST: {exc}")
        verdict = sip2()
        return verdict if verdict.state == "ok" else Verdict(verdict.state,
                                                             f"SIP2: {verdict.detail}")

    return probe
