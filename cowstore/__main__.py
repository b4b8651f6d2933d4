"""python -m cowstore: the same command line as the cowstore script."""
import sys

from ._cli import main

sys.exit(main())
