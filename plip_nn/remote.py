"""Remote execution: nnsight's ``remote=`` argument, the NDIF key (in memory only) and the
package registration that ships the in-trace code to the server. Loads no torch."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["REMOTES", "RemoteConfigError", "configure_remote", "register_for_remote"]

REMOTES = ("none", "local", "ndif")


class RemoteConfigError(ValueError):
    """Remote execution was requested but cannot be configured (e.g. no API key)."""


def configure_remote(remote: str) -> Any:
    """Translate ``remote`` into nnsight's ``remote=`` argument; set the NDIF key in memory only."""
    if remote not in REMOTES:
        raise RemoteConfigError(f"remote={remote!r}; use one of {', '.join(REMOTES)}")
    if remote == "none":
        return False
    if remote == "local":
        return "local"
    key = os.environ.get("NDIF_API_KEY", "").strip()
    if not key:
        raise RemoteConfigError(
            "--remote ndif needs an API key: export NDIF_API_KEY=... (it is read from the "
            "environment and never written anywhere)"
        )
    from nnsight import CONFIG

    CONFIG.API.APIKEY = key  # in memory only; never CONFIG.save() / set_default_api_key
    return True


def register_for_remote() -> None:
    """Register this package with nnsight so the in-trace code ships to the server."""
    import nnsight

    import plip_nn

    nnsight.register(plip_nn)
