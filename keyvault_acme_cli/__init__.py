"""The ``keyvault-acme`` command line: argument parsing and output over the engine (keyvault_acme)."""
