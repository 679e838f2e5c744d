"""``python -m keyvault_acme_cli``: the same as the ``keyvault-acme`` console script."""
import sys

from .cli import main

sys.exit(main())
