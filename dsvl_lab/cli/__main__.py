"""``python -m dsvl_lab.cli ...``: the same as the ``dsvl-lab`` console script."""
import sys

from . import main

sys.exit(main())
