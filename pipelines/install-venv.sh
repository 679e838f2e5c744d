#!/usr/bin/env bash
# Install keyvault-acme (the package, its CLI, and with the pulumi extra the Pulumi SDK and pulumi-azure-native the
# program imports) into the virtualenv Pulumi.yaml names under
# runtime.options.virtualenv: the Python Pulumi runs the program and the dynamic-provider host with. Installed
# into the runner's own Python instead, that virtualenv is missing or empty and `pulumi up` fails on import.
# Both pipeline templates run exactly this, from the project directory, with the Python they set up as `python`;
# it then puts the virtualenv's bin/ (the keyvault-acme CLI) on PATH for the later steps of the job.
set -euo pipefail

venv=$(sed -n 's/^[[:space:]]*virtualenv:[[:space:]]*\([^#[:space:]]*\).*/\1/p' Pulumi.yaml | head -n 1)
if [ -z "$venv" ]; then
  echo "Pulumi.yaml sets no runtime.options.virtualenv; set it (e.g. virtualenv: .venv)" >&2
  exit 1
fi
"${PYTHON:-python}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet '.[pulumi]'
bin="$(cd "$venv/bin" && pwd)"
echo "keyvault-acme installed into $venv (the virtualenv Pulumi.yaml names)"
if [ -n "${GITHUB_PATH:-}" ]; then echo "$bin" >> "$GITHUB_PATH"; fi       # GitHub Actions
if [ -n "${TF_BUILD:-}" ]; then echo "##vso[task.prependpath]$bin"; fi     # Azure Pipelines
