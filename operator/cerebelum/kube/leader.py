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

from cerebelum.actions.errors import ApiError
from cerebelum.kube.rest import RestClient, path_of

logger = logging.getLogger("cerebelum.leader")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _micro_time(moment: datetime.datetime) -> str:
    """A Lease's times are MicroTime: RFC 3339 with microseconds."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


class LeaderElector:
    def __init__(
        self,
        rest: RestClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_seconds: float = 15.0,
        renew_seconds: float = 5.0,
        on_change: Callable[[bool], None] = lambda leading: None,
    ) -> None:
        self._rest = rest
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

    def _spec(self, now: datetime.datetime, acquired: str | None = None) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_seconds)),
            "acquireTime": acquired or _micro_time(now),
            "renewTime": _micro_time(now),
        }

    def _path(self, *name: str) -> str:
        return path_of("coordination.k8s.io", "v1", "leases", self.namespace, *name)

    def _lease(self, spec: dict[str, Any], resource_version: str | None = None) -> dict[str, Any]:
        """The Lease to write: with ``resource_version``, a replace that fails (409) if
        another replica wrote it since it was read."""
        metadata = {"name": self.name, "namespace": self.namespace}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    async def try_acquire(self) -> bool:
        """One round: create, renew or take over the Lease; True while we hold it."""
        now = _now()
        try:
            lease = await self._rest.request("GET", self._path(self.name))
        except ApiError as exc:
            if exc.status != 404:
                raise
            try:
                await self._rest.request("POST", self._path(), body=self._lease(self._spec(now)))
            except ApiError as create_exc:
                if create_exc.status == 409:
                    return False  # another replica created it first
                raise
            self._renewed_at = now
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        mine = holder == self.identity
        renewed = _parse_time(spec.get("renewTime")) or _parse_time(spec.get("acquireTime"))
        expired = renewed is None or now >= renewed + datetime.timedelta(
            seconds=spec.get("leaseDurationSeconds") or self.lease_seconds
        )
        if not (mine or expired or not holder):
            return False
        body = self._lease(
            self._spec(now, spec.get("acquireTime") if mine else None),
            lease["metadata"]["resourceVersion"],
        )
        try:
            await self._rest.request("PUT", self._path(self.name), body=body)
        except ApiError as exc:
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
            lease = await self._rest.request("GET", self._path(self.name))
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            body = self._lease(
                {"leaseDurationSeconds": spec.get("leaseDurationSeconds")},
                lease["metadata"]["resourceVersion"],
            )
            await self._rest.request("PUT", self._path(self.name), body=body)
        except ApiError as exc:
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
