"""How a client proves who it is to the broker (password, TLS) and the rule that credentials
never cross a network in clear text unless the config says so explicitly."""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho

from selfcheck.mqtt.connection import BrokerAddress


class InsecureBroker(ValueError):
    """A non-loopback broker without TLS, and `allow_insecure` not set."""


@dataclass(frozen=True)
class ClientSecurity:
    """Credentials and TLS for one client. With TLS and no `ca_file`, the system CAs verify
    the broker; `cert_file`/`key_file` add a client certificate for brokers that ask for one."""

    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    allow_insecure: bool = False

    def __repr__(self) -> str:  # never print the password (it ends up in logs)
        return (f"ClientSecurity(username={self.username!r}, tls={self.tls}, "
                f"ca_file={self.ca_file}, cert_file={self.cert_file}, "
                f"allow_insecure={self.allow_insecure})")


@dataclass(frozen=True)
class BrokerConfig:
    """Where the broker is and how this client proves who it is, parsed and checked once
    (the password already read from its file)."""

    address: BrokerAddress
    security: ClientSecurity

    def __str__(self) -> str:
        return str(self.address)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: we do not resolve it, so it counts as the network


def check_transport(broker: BrokerAddress, security: ClientSecurity,
                    key: str = "broker") -> None:
    """Refuse clear text to anything but this machine unless explicitly allowed."""
    if security.tls or security.allow_insecure or is_loopback(broker.host):
        return
    raise InsecureBroker(
        f"{key}: {broker} is not on this machine and TLS is off; set tls = true (with "
        "ca_file) or, only on a network you trust, allow_insecure = true")


def apply(client: paho.Client, broker: BrokerAddress, security: ClientSecurity) -> None:
    """Check the transport rule, then give `client` its credentials and TLS context."""
    check_transport(broker, security)
    if security.username is not None:
        client.username_pw_set(security.username, security.password)
    if security.tls:
        context = ssl.create_default_context(
            cafile=str(security.ca_file) if security.ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if security.cert_file is not None:
            context.load_cert_chain(str(security.cert_file),
                                    str(security.key_file) if security.key_file else None)
        client.tls_set_context(context)
