"""The web UI: ``cerebelum ui`` locally, or the chart's ``ui.enabled`` in the cluster.

Every request is made with the user's own credentials (``identity``); the pages are a
static single-page app (``static/``, no asset from a CDN) over a JSON API (``server``)
computed by pure functions (``views``) from a watch-fed cache per user (``cache``).
"""
