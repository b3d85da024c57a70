"""Shapes of whole objects on the wire."""

from __future__ import annotations

from typing import Any


def status_update(body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """The object to PUT to the status subresource. It carries the resourceVersion of
    ``body``, so the API server refuses it (409) if the object changed since it was read.

    No spec: on a status write the API server keeps the stored spec whatever the request
    says, and decoding (and pruning) a spec only to drop it cost it a tenth of the write
    (``bench/status_cost.py``). The answer still carries the whole object."""
    meta = body["metadata"]
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "resourceVersion": meta["resourceVersion"],
        },
        "status": status,
    }
