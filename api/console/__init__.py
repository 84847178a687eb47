"""The operator console: web pages under /console (see ``web``)."""
