"""Entry point: ``python -m k8s_validate --helm ... --promql-modules ...`` (see suite.py)."""

import sys

from k8s_validate.suite import main

sys.exit(main())
