# The keyvault-acme CLI for the in-Azure renewer (a Container Apps Job running `keyvault-acme renew --due`).
# The wheel of this package goes in: no emulator, tests, demo, Pulumi program (__main__.py) or stack files (the job gets its
# stack file as configuration). Base image pinned to an exact release; pin its digest too where your
# registry mirrors it (FROM python:3.11.13-slim-bookworm@sha256:...).
FROM python:3.11.13-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY keyvault_acme/ keyvault_acme/
COPY keyvault_acme_cli/ keyvault_acme_cli/
COPY keyvault_acme_stack/ keyvault_acme_stack/
# The wheel's package list names keyvault_acme_pulumi (mapped from components/ and providers/): setuptools
# needs their sources to build it, though the job never imports them (nor can: their Pulumi dependencies are
# the pulumi extra, which this image leaves out).
COPY pulumi_package/ pulumi_package/
COPY components/ components/
COPY providers/ providers/
# A wheel of this tree and of every dependency, so the runtime stage installs offline and holds no build cache.
# The base package (engine, CLI, stack model) and the OpenTelemetry exporter the CLI exports spans with when
# OTEL_EXPORTER_OTLP_ENDPOINT is set; no [pulumi] (the SDK and pulumi-azure-native, ~350 MB the job never
# imports) and no [dev]. tests/test_dockerfile.py checks the extras named here.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[otel]"

FROM python:3.11.13-slim-bookworm
COPY --from=build /wheels /wheels
# Exactly the wheels built above (this tree, its runtime dependencies and the OpenTelemetry exporter), nothing fetched.
RUN pip install --no-cache-dir --no-index /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin keyvault-acme
# Not root: the job needs no privilege; Azure credentials come from its managed identity (AZURE_CLIENT_ID).
USER 10001
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["keyvault-acme"]
CMD ["--help"]
