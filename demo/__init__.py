"""``make demo``: the local stack's certificates through their whole lifecycle (see :mod:`demo.walkthrough`)."""
