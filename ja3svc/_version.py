"""The version of ja3svc: read by the build (pyproject.toml) and by ``ja3svc --version``."""

__version__ = "0.2.0"
