"""How a client proves who it is to the broker (password, TLS) and the rule that credentials
never cross a network in clear text unless the config says so explicitly."""

from __future__ import annotations

import argparse
import ipaddress
import os
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


def check_private(path: Path, key: str) -> None:
    """Refuse a secret file that its group or others may read or change: only the service's
    user (a 0600 file, or systemd's LoadCredential= copy) should hold a password."""
    try:
        mode = Path(path).stat().st_mode
    except OSError as exc:
        raise ValueError(f"{key}: cannot read {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise ValueError(f"{key}: {path} is open to group or others (mode {mode & 0o777:04o});"
                         f" make it private: chmod 600 {path}")


def read_secret(path: Path, key: str = "password_file") -> list[str]:
    """The lines of a password file, the first not empty (kept apart from the config so the
    config can be read by more people than the secret, and out of argv, which `ps` shows to
    everyone)."""
    check_private(Path(path), key)
    try:
        text = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ValueError(f"{key}: cannot read {path}: {exc.strerror}") from exc
    if not text or not text[0]:
        raise ValueError(f"{key}: {path} is empty")
    return text


def read_password(path: Path | None, key: str = "password_file") -> str | None:
    """The first line of a password file; None without one."""
    return None if path is None else read_secret(path, key)[0]


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Broker login and TLS options for the central services' commands."""
    g = parser.add_argument_group("broker security")
    g.add_argument("--password-file", type=Path,
                   default=os.environ.get("SELFCHECK_PASSWORD_FILE") or None,
                   help="file (mode 0600) holding this client's broker password (username = "
                   "--id); default $SELFCHECK_PASSWORD_FILE")
    g.add_argument("--tls", action="store_true", help="connect with TLS")
    g.add_argument("--ca-file", type=Path, help="CA that signed the broker's certificate")
    g.add_argument("--cert-file", type=Path, help="client certificate, if the broker asks")
    g.add_argument("--key-file", type=Path, help="key of the client certificate")
    g.add_argument("--allow-insecure", action="store_true",
                   help="allow clear text to a broker that is not on this machine")


def from_args(args: argparse.Namespace, username: str) -> BrokerConfig:
    """The broker (`--broker`, parsed by argparse) and this client's login from
    `add_arguments` options, checked once; ValueError names the bad option."""
    for opt in ("ca_file", "cert_file", "key_file"):
        path = getattr(args, opt)
        if path is not None and not Path(path).is_file():
            raise ValueError(f"--{opt.replace('_', '-')}: {path} does not exist")
    password = read_password(args.password_file, "--password-file")
    security = ClientSecurity(username=username if password is not None else None,
                              password=password, tls=args.tls, ca_file=args.ca_file,
                              cert_file=args.cert_file, key_file=args.key_file,
                              allow_insecure=args.allow_insecure)
    check_transport(args.broker, security, "--broker")
    return BrokerConfig(args.broker, security)
