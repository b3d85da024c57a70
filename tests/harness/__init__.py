"""Test harness: a real Kubernetes API server and the real kubectl and helm binaries."""

from tests.harness.cluster import Cluster, CommandError

__all__ = ["Cluster", "CommandError"]
