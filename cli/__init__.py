"""The ``ja3svc`` command line: glue over the core, capture sources, store and API."""
