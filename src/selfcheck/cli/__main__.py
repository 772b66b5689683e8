import sys

from selfcheck.cli import main

sys.exit(main())
