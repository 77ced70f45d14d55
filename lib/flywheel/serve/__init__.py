"""The router service: an OpenAI-compatible endpoint that routes with the promoted model and logs traffic.

`routing` picks and loads the router in force (the registry's current promotion, else the configured
default); `records` turns one routed question into an interaction record in the documented log schema and
stores it through the row builder file ingestion uses (`flywheel.core.rows`); `shadow` decides answered
queries in shadow (the production model on a sampled share, the registry's candidate in shadow); `app` is
the FastAPI application; `runner` starts it in a background thread (tests, benchmarks); `cli` holds the
`flywheel serve` and `flywheel promote` commands.
This package imports no web framework at import time: `flywheel.cli` stays fast.
"""
