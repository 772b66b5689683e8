"""The e-mail receipt: a text/plain UTF-8 message built with the standard library and sent
through the site's SMTP relay. The reader's address is used for this one message and not kept.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from selfcheck.drivers.printer.config import PrinterConfigError
from selfcheck.drivers.printer.document import Receipt
from selfcheck.system.secrets import read_password


class MailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1)
    port: int = Field(587, gt=0, lt=65536)
    sender: str = Field(min_length=3, pattern=r"^[^@\s]+@[^@\s]+$")
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: str | None = Field(None, repr=False)  # never in a log line
    # The password's file (mode 0600), so that the station's TOML holds no secret.
    password_file: Path | None = None
    timeout_s: float = Field(10.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _read_password_file(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("password_file") is not None:
            if raw.get("password") is not None:
                raise ValueError("give password or password_file, not both")
            raw = {**raw, "password": read_password(Path(raw["password_file"]),
                                                    "password_file")}
        return raw


class MailError(RuntimeError):
    pass


def load_mail_config(raw: dict[str, object]) -> MailConfig:
    try:
        return MailConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "?"
        raise PrinterConfigError(f"receipt_mail.{key}: {err['msg']}") from None


def build_message(receipt: Receipt, sender: str, to: str, width: int = 60) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = receipt.subject
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    # utf-8 + quoted-printable keeps Vietnamese readable in any mail client and 7-bit safe.
    msg.set_content(receipt.as_text(width), subtype="plain", charset="utf-8",
                    cte="quoted-printable")
    msg["Content-Language"] = receipt.lang
    return msg


def send_receipt(receipt: Receipt, to: str, cfg: MailConfig) -> None:
    if "@" not in to or any(c.isspace() for c in to):
        raise MailError("not an e-mail address")  # the address itself is not logged
    msg = build_message(receipt, cfg.sender, to)
    try:
        smtp: smtplib.SMTP
        if cfg.security == "tls":
            smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s,
                                    context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
        with smtp:
            if cfg.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if cfg.username:
                smtp.login(cfg.username, cfg.password or "")
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"SMTP {cfg.host}:{cfg.port}: {exc}") from exc
