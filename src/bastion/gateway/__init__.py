"""The secure model gateway: serve admitted models behind authentication, per-model
permissions, quotas and a hash-chained audit log.

- ``principals``: who is asking and which permission levels exist
- ``registry``: admission (scan + signature) and the content digest re-checked at load
- ``keys`` / ``tokens``: API keys (argon2) and OIDC/JWT bearer tokens
- ``access``: grants per principal or group per model, separation of duties
- ``quotas``: token-bucket rates and query budgets, in-process or in Redis
- ``audit``: the append-only, hash-chained request log
- ``schema`` / ``loaders``: input validation and the model runtimes
- ``app``: the FastAPI application ``bastion serve`` runs

Needs the ``gateway`` extra: ``pip install 'bastion-mlsec[gateway]'``.
"""
