"""`python -m selfcheck.central.migrations revision "what changes"`: see the package doc."""

import sys

from selfcheck.central.migrations import new_revision

if len(sys.argv) != 3 or sys.argv[1] != "revision":
    sys.exit('usage: python -m selfcheck.central.migrations revision "what changes"')
new_revision(sys.argv[2])
