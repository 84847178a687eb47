"""Settings of the edges (CLI, capture worker, HTTP service, store); the core takes arguments."""
