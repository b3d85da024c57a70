"""The operator's own API client (kube/rest.py) against the real API server: a refusal says
why without the request in it, and a token that stopped working is read again."""

from __future__ import annotations

import pytest

from cerebelum.actions.api_retry import object_missing
from cerebelum.actions.errors import ApiError
from cerebelum.api import GROUP, PLURAL, VERSION
from cerebelum.kube.rest import RestClient, path_of
from tests.harness import Cluster
from tests.harness.cluster import eventually, rest_client


async def test_a_refusal_says_why_and_never_holds_the_request(
    cluster: Cluster, crds: None, namespace: str
) -> None:
    async with rest_client(cluster.kubeconfig) as rest:
        with pytest.raises(ApiError) as missing:
            await rest.request("GET", path_of(GROUP, VERSION, PLURAL, namespace, "nowhere"))
        assert missing.value.status == 404
        assert '"nowhere" not found' in str(missing.value)
        assert object_missing(missing.value, "nowhere")  # the answer's details name it

        secret_value = "s3cr3t-value-that-must-not-leak"
        bad = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "Not_A_Valid_Name", "namespace": namespace},
            "data": {"token": secret_value},
        }
        with pytest.raises(ApiError) as refused:
            await rest.request("POST", path_of("", "v1", "configmaps", namespace), body=bad)
        assert refused.value.status == 422
        assert "Not_A_Valid_Name" in str(refused.value)
        assert secret_value not in str(refused.value)
        assert secret_value not in refused.value.body


async def test_a_token_that_stops_working_is_read_again(
    cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service account's token is rotated on disk; the client reads its credentials
    again on a 401 rather than failing every request until the operator restarts."""
    cluster.kubectl("-n", namespace, "create", "serviceaccount", "rotated")
    first = cluster.kubectl("-n", namespace, "create", "token", "rotated").stdout.strip()
    old = cluster.kubeconfig_with_token(f"old-{namespace}", first)
    kubeconfig = cluster.kubeconfig_with_token(f"rotated-{namespace}", first)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    rest = await RestClient.connect()

    async def who() -> str:
        # Any authenticated user may ask who it is (no RBAC to wait for).
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        answer = await rest.request(
            "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=review
        )
        return str(answer["status"]["userInfo"]["username"])

    try:
        assert await who() == f"system:serviceaccount:{namespace}:rotated"
        # The account is made again: its first token is refused from then on.
        cluster.kubectl("-n", namespace, "delete", "serviceaccount", "rotated")
        cluster.kubectl("-n", namespace, "create", "serviceaccount", "rotated")

        def refused() -> bool:
            probe = cluster.kubectl("auth", "whoami", kubeconfig=old, check=False)
            return probe.returncode != 0 and "Unauthorized" in probe.stderr

        eventually(refused, timeout=30)
        second = cluster.kubectl("-n", namespace, "create", "token", "rotated").stdout.strip()
        cluster.kubeconfig_with_token(f"rotated-{namespace}", second)  # rewrites the file
        assert await who() == f"system:serviceaccount:{namespace}:rotated"
    finally:
        await rest.close()
