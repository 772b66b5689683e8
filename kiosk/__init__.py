"""The station: the self-check core, its runtime and its Kivy UI.

Imported as `selfcheck.kiosk` only (docs/layout.md): from the checkout's root the folder is
also reachable as `kiosk`, which would load every module a second time under another name,
with classes that are not the same classes.
"""

if __name__ != "selfcheck.kiosk":
    raise ImportError(f"import selfcheck.kiosk, not {__name__}: one name per module")
