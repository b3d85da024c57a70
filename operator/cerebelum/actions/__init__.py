"""Action kinds: one module each. The registry maps a step's action kind to its callable."""

from __future__ import annotations

from cerebelum.actions import local
from cerebelum.actions.base import Action, ActionContext, ActionError, execute

REGISTRY: dict[str, Action] = {
    "noop": local.noop,
    "fail": local.fail,
}

__all__ = ["REGISTRY", "Action", "ActionContext", "ActionError", "execute"]
