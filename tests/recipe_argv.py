"""A stand-in launcher for tests/test_recipes.py.

A recipe runs ``$LAUNCH -m align ARGS``; with ``LAUNCH="python tests/recipe_argv.py"`` this file
receives ``-m align ARGS`` and appends them as one JSON line to $RECIPE_ARGV_LOG instead of
running anything, so the test can replay every command in-process.
"""

import json
import os
import sys

with open(os.environ["RECIPE_ARGV_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
