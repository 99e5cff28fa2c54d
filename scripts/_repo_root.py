"""
Scripts are run as `python scripts/X.py`, so Python looks for imports in scripts/, not at the
repository root where the library is (train.py, configurator.py, experiments/, ...). A script
imports this module first, and this is the one place that makes the root importable:

    import _repo_root  # noqa: F401  (the repository's modules become importable)
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
