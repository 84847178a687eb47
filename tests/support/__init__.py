"""Helpers of the test suite: the CLI in process, packet and capture builders, the API client,
Dovecot configuration, the databases, tshark as an oracle."""
