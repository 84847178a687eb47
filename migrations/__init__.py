"""Alembic migration scripts of the fingerprint database, shipped inside the package.

Run them through ``ja3svc db upgrade`` (or :mod:`store.migrate`), which builds the Alembic
configuration in code: the database URL comes from the settings, never from an alembic.ini.
"""
