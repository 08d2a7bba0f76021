"""``python -m gaitheat ...`` (also what ``torchrun -m gaitheat train ...`` runs)."""

import sys

from gaitheat.cli import main

if __name__ == "__main__":
    sys.exit(main())
