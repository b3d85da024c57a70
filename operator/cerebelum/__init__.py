"""Cerebelum Operator: durable workflows on Kubernetes.

The package is laid out as a functional core (``api``, ``engine``) inside an imperative
shell (``kube``, ``actions``); see the README's design notes.
"""

__version__ = "0.1.0"
