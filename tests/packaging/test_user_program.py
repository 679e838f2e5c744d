"""A platform team's own Pulumi program, in its own directory, with its own ``components``/``providers`` folders."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from pulumi.dynamic.dynamic import serialize_provider

from keyvault_acme_pulumi import CertificateProvider

PROGRAM = textwrap.dedent('''
    import base64, json, sys
    import dill
    import components, providers          # the user's own folders
    from keyvault_acme_pulumi import Certificate, CertificateProvider, CertificateWorkload

    # What the provider host does with the provider stored in this user's state, run from the user's directory.
    provider = dill.loads(base64.b64decode(sys.argv[1]))
    print(json.dumps({
        "components": components.__file__, "providers": providers.__file__, "mine": components.MINE + providers.MINE,
        "provider": type(provider).__module__, "is_ours": isinstance(provider, CertificateProvider),
        "workload": CertificateWorkload.__module__, "certificate": Certificate.__module__,
    }))
''')


def test_a_program_with_its_own_components_and_providers_folders_imports_both(tmp_path):
    for folder in ("components", "providers"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text(f"MINE = '{folder}'\n")
    (tmp_path / "__main__.py").write_text(PROGRAM)
    # The user's directory first on sys.path, as when Pulumi runs the program (and the host) there.
    result = subprocess.run([sys.executable, str(tmp_path / "__main__.py"), serialize_provider(CertificateProvider())],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["components"] == str(tmp_path / "components" / "__init__.py")
    assert seen["providers"] == str(tmp_path / "providers" / "__init__.py")
    assert seen["mine"] == "componentsproviders"
    assert seen["provider"] == "keyvault_acme_pulumi.providers.certificate" and seen["is_ours"]
    assert seen["workload"] == "keyvault_acme_pulumi.components.workload"
    assert seen["certificate"] == "keyvault_acme_pulumi.providers.certificate"


def test_the_real_provider_host_runs_our_provider_from_a_project_with_its_own_providers_folder(tmp_path):
    # `python -m pulumi.dynamic` in the user's project directory (first on its sys.path), as `pulumi up` starts
    # it, unpickling the provider stored in state. A user's `providers` package that cannot even be imported
    # shows the host never looks at it.
    from tests.provider.conftest import INPUTS
    from tests.provider.host import ProviderHost

    for folder in ("components", "providers"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text(f"raise ImportError('the user\\'s own {folder}')\n")
    with ProviderHost(tmp_path) as host:
        host.configure({})
        inputs, failures = host.check({}, {**INPUTS, "__provider": serialize_provider(CertificateProvider())})
    assert failures == [] and inputs["name"] == INPUTS["name"]
    assert "the user's own" not in host.stderr()
