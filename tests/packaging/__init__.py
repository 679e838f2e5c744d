"""What `pip install keyvault-acme` installs, and what a platform team's own program can import."""
