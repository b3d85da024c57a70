"""Action kinds: one module each. The registry maps a step's action kind to its callable."""

from __future__ import annotations

from cerebelum.actions import local
from cerebelum.actions.base import Action, ActionContext, ActionError, execute
from cerebelum.actions.digitalocean import digitalocean
from cerebelum.actions.http import http
from cerebelum.actions.job import job
from cerebelum.actions.python import python
from cerebelum.actions.tcp import tcp

REGISTRY: dict[str, Action] = {
    "noop": local.noop,
    "fail": local.fail,
    "http": http,
    "tcp": tcp,
    "digitalocean": digitalocean,
    "job": job,
    "python": python,
}

__all__ = ["REGISTRY", "Action", "ActionContext", "ActionError", "execute"]
