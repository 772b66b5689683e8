"""What is wrong with the connection to the broker, said once per change (selfcheck.system.
faults): not reached (with paho's own reason, which paho itself keeps to a debug line), a
certificate not trusted, a login refused; and one line when it works again."""

from __future__ import annotations

import logging
import ssl
from typing import Any

import paho.mqtt.client as paho

from selfcheck.mqtt.connection import BrokerAddress
from selfcheck.system.faults import Fault

# CONNACK reasons that no retry fixes: the credentials themselves are wrong.
_LOGIN = {134, 135, 5, 4}  # bad user name or password, not authorized (and their MQTT 3 codes)


class BrokerWatch:
    """Follows one paho client. The owner calls `connected(rc)` from its on_connect and
    `disconnected()` from its on_disconnect; failures to connect at all arrive through paho's
    on_connect_fail, which the watch installs."""

    def __init__(self, client: paho.Client, broker: BrokerAddress, who: str,
                 logger: logging.Logger) -> None:
        self.fault = Fault(logger, "broker.up", broker=str(broker), who=who)
        self._error: BaseException | None = None
        reconnect = client.reconnect

        # paho calls on_connect_fail without the exception: keep it on the way past.
        def remembering() -> Any:
            try:
                return reconnect()
            except OSError as exc:
                self._error = exc
                raise

        client.reconnect = remembering  # type: ignore[method-assign]
        client.on_connect_fail = self._connect_failed

    @property
    def up(self) -> bool:
        return self.fault.is_up is True

    def _connect_failed(self, client: paho.Client, userdata: Any) -> None:
        exc = self._error
        reason = _reason(exc)
        if isinstance(exc, ssl.SSLCertVerificationError):
            self.fault.down("broker.tls_untrusted", reason=reason)
        elif isinstance(exc, ssl.SSLError):
            self.fault.down("broker.tls", reason=reason)
        else:
            self.fault.down("broker.down", reason=reason)

    def connected(self, rc: Any) -> None:
        if not rc.is_failure:
            self.fault.up()
        elif getattr(rc, "value", None) in _LOGIN:
            self.fault.down("broker.login_refused", reason=str(rc))
        else:
            self.fault.down("broker.refused", reason=str(rc))

    def disconnected(self, rc: Any = None) -> None:
        """A connection that worked was lost (a refused one was said by `connected`); a
        disconnect of our own (rc success: stopping) is no fault."""
        if rc is not None and not getattr(rc, "is_failure", True):
            return
        if self.fault.is_up:
            self.fault.down("broker.lost", reason=str(rc) if rc is not None else "")


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "?"
    text = getattr(exc, "verify_message", None) or getattr(exc, "strerror", None) or str(exc)
    return str(text).splitlines()[0][:200] if text else type(exc).__name__
