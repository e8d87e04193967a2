"""``python -m ipseclab`` is the ``ipseclab`` command."""

import sys

from ipseclab.cli import main

sys.exit(main())
