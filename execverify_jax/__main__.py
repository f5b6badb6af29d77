"""`python -m execverify_jax` = the `execverify` command."""

import sys

from execverify_jax.cli import main

sys.exit(main())
