"""ML infrastructure exposure: unauthenticated model servers and insecure ML platform settings.

Two halves share the rules of :mod:`bastion.exposure.rules`:

- static (``bastion scan``, capability ``infra``): :mod:`~bastion.exposure.analyzer` reads
  TorchServe ``config.properties``, Jupyter configs, MLflow ``basic_auth.ini``, Kubernetes
  manifests, compose files, Ray cluster files, Dockerfiles and shell scripts, and hands them to
  one module per platform (``torchserve``, ``triton``, ``ray``, ``mlflow``, ``jupyter``,
  ``kserve``, ``kubernetes``). Nothing is executed or imported: Python with :mod:`ast`, YAML
  composed with a node budget, command lines with :mod:`shlex`.
- live (``bastion probe URL...``): :mod:`~bastion.exposure.probe` identifies the server behind
  each URL with read-only GET/HEAD/OPTIONS requests to that origin only, and reports what
  answers without credentials.

This package imports nothing at import time: ``bastion scan`` loads it only when a file may be
configuration (see ``bastion.catalogue``).
"""
