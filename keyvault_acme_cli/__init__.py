"""``keyvault-acme``, the operator's command line: argument parsing and printing over the engine.

Outside the engine (``keyvault_acme`` has no argparse and no stack files); it reads a stack file through
:mod:`keyvault_acme_stack` and calls :class:`keyvault_acme.lifecycle.Engine`.
"""
