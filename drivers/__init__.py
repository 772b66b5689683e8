"""The hardware edge: tag data models, book pads, card readers, printers.

Imported as `selfcheck.drivers` only (docs/layout.md): from the checkout's root the folder is
also reachable as `drivers`, which would load every module a second time under another name,
with classes that are not the same classes.
"""

if __name__ != "selfcheck.drivers":
    raise ImportError(f"import selfcheck.drivers, not {__name__}: one name per module")
