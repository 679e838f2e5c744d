"""This project's own components: a folder named like keyvault-acme's repository folder, on purpose.

keyvault-acme installs as ``keyvault_acme_pulumi``, so both import side by side.
"""


def edge_tags(team: str) -> dict[str, str]:
    return {"team": team, "tier": "edge"}
