"""The embedded Argilla server (a service) and its search plug-in."""
