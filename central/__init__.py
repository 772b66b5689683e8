"""The library side: the bridge, the ledger, the backends and the fleet service.

Imported as `selfcheck.central` only (docs/layout.md): from the checkout's root the folder is
also reachable as `central`, which would load every module a second time under another name,
with classes that are not the same classes.
"""

if __name__ != "selfcheck.central":
    raise ImportError(f"import selfcheck.central, not {__name__}: one name per module")
