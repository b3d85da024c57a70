"""Leader election on a coordination.k8s.io Lease, for several operator replicas.

Every replica watches (so a standby's cache is warm), but only the Lease holder reconciles,
runs actions and writes. The holder renews the Lease every ``renew_seconds``. When it
stops renewing (crash, partition), another replica takes the Lease once ``lease_seconds``
have passed since the last renewal, so a handover takes at most lease + renew seconds.
A replica that cannot renew in time steps down on its own before another can take over.

Kopf's peering is not used for this: it pauses Kopf's watch streams, but nothing would
pause this operator's own timer heap and workers, which keep working from the cache.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

logger = logging.getLogger("cerebelum.leader")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class LeaderElector:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_seconds: float = 15.0,
        renew_seconds: float = 5.0,
        on_change: Callable[[bool], None] = lambda leading: None,
    ) -> None:
        self._coordination = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_seconds, self.renew_seconds = lease_seconds, renew_seconds
        self._on_change = on_change
        self.leading = False
        self._renewed_at: datetime.datetime | None = None

    def _set(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            logger.info(
                "%s %s the lease %s/%s",
                self.identity,
                "holds" if leading else "no longer holds",
                self.namespace,
                self.name,
            )
            self._on_change(leading)

    def _spec(self, now: datetime.datetime, acquired: Any = None) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_seconds)),
            "acquireTime": acquired or now,
            "renewTime": now,
        }

    async def try_acquire(self) -> bool:
        """One round: create, renew or take over the Lease; True while we hold it."""
        now = _now()
        try:
            lease = await self._coordination.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body: Any = {
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now),
            }
            try:
                await self._coordination.create_namespaced_lease(self.namespace, body)
            except ApiException as create_exc:
                if create_exc.status == 409:
                    return False  # another replica created it first
                raise
            self._renewed_at = now
            return True
        spec = lease.spec
        mine = spec.holder_identity == self.identity
        renewed = spec.renew_time or spec.acquire_time
        expired = renewed is None or now >= renewed + datetime.timedelta(
            seconds=spec.lease_duration_seconds or self.lease_seconds
        )
        if not (mine or expired or not spec.holder_identity):
            return False
        body = {
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": lease.metadata.resource_version,
            },
            "spec": self._spec(now, spec.acquire_time if mine else None),
        }
        try:
            await self._coordination.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False  # someone else renewed or took it in between
            raise
        self._renewed_at = now
        return True

    async def release(self) -> None:
        """On a clean shutdown, hand the Lease back so a successor need not wait it out."""
        if not self.leading:
            return
        self._set(False)
        try:
            lease = await self._coordination.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity != self.identity:
                return
            body: Any = {
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "resourceVersion": lease.metadata.resource_version,
                },
                "spec": {"leaseDurationSeconds": lease.spec.lease_duration_seconds},
            }
            await self._coordination.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as exc:
            logger.warning(
                "could not release lease %s/%s: HTTP %s", self.namespace, self.name, exc.status
            )

    async def run(self) -> None:
        while True:
            try:
                self._set(await self.try_acquire())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("lease %s/%s: %s", self.namespace, self.name, type(exc).__name__)
                # Step down before the lease can expire and another replica can take it.
                stale = self._renewed_at is None or (_now() - self._renewed_at).total_seconds() > (
                    self.lease_seconds - self.renew_seconds
                )
                if stale:
                    self._set(False)
            await asyncio.sleep(self.renew_seconds)
