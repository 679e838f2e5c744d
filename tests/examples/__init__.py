"""The examples/ programs, each run as its own Pulumi project under mocks."""
