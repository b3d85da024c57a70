"""Shapes of whole objects on the wire."""

from __future__ import annotations

from typing import Any


def status_update(body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """The object to PUT to the status subresource. It carries the resourceVersion of
    ``body``, so the API server refuses it (409) if the object changed since it was read."""
    meta = body["metadata"]
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "resourceVersion": meta["resourceVersion"],
        },
        "spec": body.get("spec", {}),
        "status": status,
    }
