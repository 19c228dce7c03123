"""The check before any upload or launch, against what VIP says of the pipeline: its CARMIN
parameters (types, required inputs) and, where VIP serves it, its Boutiques descriptor
(``vip:dot``, value-choices, bounds, groups: :mod:`vip_smk.boutiques`). Every face calls
:func:`check_against_descriptor`; a VIP that does not serve descriptors (portals older than
4.6) leaves the CARMIN check alone, as before."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from vip_smk.api.client import ApiClient, DescriptorUnavailable, Pipeline
from vip_smk.core.settings import validate_settings

__all__ = ["check_against_descriptor", "descriptor_or_none"]

log = logging.getLogger(__name__)


def descriptor_or_none(client: ApiClient, pipeline_id: str) -> dict[str, Any] | None:
    """The pipeline's Boutiques descriptor, or None where VIP does not serve it (logged)."""
    try:
        return client.descriptor(pipeline_id)
    except DescriptorUnavailable as exc:
        log.info("%s", exc)
        return None


def check_against_descriptor(client: ApiClient | None, pipeline_id: str, settings: Mapping[str, Any],
                             *, pipeline: Pipeline | None = None,
                             descriptor: Mapping[str, Any] | None = None, where: str = "",
                             check_file: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """Check ``settings`` against everything VIP says of ``pipeline_id``; return the values
    to send (:func:`validate_settings`). One :class:`~vip_smk.core.SettingsError` lists every
    problem, naming ``where``. ``pipeline`` / ``descriptor``: already known (the study's dry
    run passes the copies it keeps, with ``client=None``: no request); otherwise asked of
    ``client`` (cached per client). No descriptor served: the CARMIN check only."""
    if pipeline is None:
        if client is None:
            raise ValueError("check_against_descriptor: give a client or the pipeline")
        pipeline = client.pipeline(pipeline_id)
    if descriptor is None and client is not None:
        descriptor = descriptor_or_none(client, pipeline_id)
    return validate_settings(pipeline, settings, where=where, check_file=check_file,
                             descriptor=descriptor)
