"""Broker login and TLS options shared by the central services' commands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from selfcheck.mqtt.security import BrokerConfig, ClientSecurity, check_transport
from selfcheck.system.secrets import read_password


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
