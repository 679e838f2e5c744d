"""A local Azure for tests and the demo: Entra ID, Key Vault and Azure DNS behind one HTTPS proxy."""
