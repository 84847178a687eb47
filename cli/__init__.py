"""The ``ja3svc`` command line: thin glue over the core, the capture sources, the store and the API."""
