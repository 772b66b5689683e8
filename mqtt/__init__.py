"""The v1 MQTT contract: topics, messages, the station link and the outbox.

Imported as `selfcheck.mqtt` only (docs/layout.md): from the checkout's root the folder is
also reachable as `mqtt`, which would load every module a second time under another name,
with classes that are not the same classes.
"""

if __name__ != "selfcheck.mqtt":
    raise ImportError(f"import selfcheck.mqtt, not {__name__}: one name per module")
