"""/scanning: the registry's scanning configuration and the gate's policies."""

from __future__ import annotations

from aiohttp import web

from pullthrough.api.admin.body import read_model
from pullthrough.api.admin.context import services
from pullthrough.api.admin.fields import iso_or_none
from pullthrough.api.admin.models import Scanning, ScanningInput
from pullthrough.api.admin.replies import reply
from pullthrough.metadata.scanning import (
    GatePolicy,
    RepositoryFilter,
    ScanningConfiguration,
    ScanningRule,
)


def _render(configuration: ScanningConfiguration) -> Scanning:
    return Scanning.model_validate(
        {**configuration.to_json(), "updated_at": iso_or_none(configuration.updated_at)}
    )


async def get_scanning(request: web.Request) -> web.Response:
    return reply(_render(await services(request).scanning.get()))


async def put_scanning(request: web.Request) -> web.Response:
    body = await read_model(request, ScanningInput)
    configuration = ScanningConfiguration(
        scan_type=body.scan_type,
        rules=tuple(
            ScanningRule(
                scan_frequency=rule.scan_frequency,
                repository_filters=tuple(
                    RepositoryFilter(f.filter, f.filter_type) for f in rule.repository_filters
                ),
            )
            for rule in body.rules
        ),
        gates=tuple(
            GatePolicy(
                repository_filters=tuple(
                    RepositoryFilter(f.filter, f.filter_type) for f in gate.repository_filters
                ),
                block_severity=gate.block_severity,
                allowed=tuple(gate.allowed),
                only_fixable=gate.only_fixable,
            )
            for gate in body.gates
        ),
        gate_wait_seconds=body.gate_wait_seconds,
    )
    return reply(_render(await services(request).scanning.put(configuration)))
