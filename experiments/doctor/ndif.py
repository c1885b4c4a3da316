"""NDIF checks of ``plip-nn doctor --remote ndif``: the key, the server, its package versions
(``nnsight.compare()``), the model's deployment (``nnsight.is_model_running``) and one tiny
verified knockout trace on the server.

The key is read from ``NDIF_API_KEY`` into nnsight's in-memory config
(:func:`plip_nn.remote.configure_remote`); only its length is printed. The server is asked
with plain HTTP GETs (``/status``, ``/env``) that carry no key.
"""

from __future__ import annotations

import os
from typing import Any

from experiments.doctor import FAIL, OK, WARN, Check
from experiments.doctor.engine import ConfigUnavailable, meta_handle, trace_check

__all__ = ["STATUS_TIMEOUT_S", "check_ndif"]

STATUS_TIMEOUT_S = 15.0
"""Seconds the doctor waits for NDIF's ``/status`` to answer."""
_KEY_FIX = (
    "export NDIF_API_KEY=... (from https://login.ndif.us; plip-nn reads it from the "
    "environment and writes it nowhere)"
)


def check_ndif(model: str) -> list[Check]:
    """Every NDIF check for ``model``, in print order; later ones are skipped (a warn line)
    when what they need failed."""
    from nnsight import CONFIG

    key = _key_check()
    server, status = _server_check(CONFIG.API.HOST)
    checks = [key, server]
    if status is None:
        return [
            *checks,
            _skipped("ndif versions", "the server"),
            _skipped("ndif model", "the server"),
            _skipped("ndif trace", "the server"),
        ]
    checks += [_versions_check(), _model_check(model, status)]
    if key.status == FAIL:
        return [*checks, _skipped("ndif trace", "the key")]
    if checks[-1].status == FAIL:
        return [*checks, _skipped("ndif trace", "the model running on NDIF")]
    try:
        handle = meta_handle(model)
    except ConfigUnavailable as err:
        return [*checks, Check("ndif trace", FAIL, str(err), err.fix)]
    return [*checks, trace_check(handle, "ndif")]


def _skipped(name: str, needs: str) -> Check:
    return Check(name, WARN, f"not checked: it needs {needs}", f"fix the FAIL line about {needs}")


def _key_check() -> Check:
    from plip_nn.remote import RemoteConfigError, configure_remote

    try:
        configure_remote("ndif")  # assigns CONFIG.API.APIKEY in memory only
    except RemoteConfigError:
        return Check("ndif key", FAIL, "NDIF_API_KEY is not set", _KEY_FIX)
    length = len(os.environ.get("NDIF_API_KEY", "").strip())
    return Check("ndif key", OK, f"NDIF_API_KEY is set ({length} characters; never printed)")


def _server_check(host: str) -> tuple[Check, dict[str, Any] | None]:
    import httpx

    url = f"{host}/status"
    fix = f"check the network and {host} (NDIF_HOST / nnsight CONFIG.API.HOST); status: https://discuss.ndif.us/"
    try:
        response = httpx.get(url, timeout=httpx.Timeout(5.0, read=STATUS_TIMEOUT_S))
        response.raise_for_status()
        status = response.json()
    except httpx.TimeoutException:
        return Check(
            "ndif server", FAIL, f"{url} did not answer within {STATUS_TIMEOUT_S:g} s", fix
        ), None
    except httpx.HTTPStatusError as err:
        code = err.response.status_code
        return Check("ndif server", FAIL, f"{url} answered HTTP {code}", fix), None
    except (httpx.HTTPError, ValueError) as err:
        what = " ".join(str(err).split()) or type(err).__name__
        return Check("ndif server", FAIL, f"cannot reach {url}: {what}", fix), None
    if not isinstance(status, dict):
        return Check(
            "ndif server", FAIL, f"{url} answered something that is not a status", fix
        ), None
    deployments = status.get("deployments") or {}
    running = sum(1 for d in deployments.values() if d.get("application_state") == "RUNNING")
    return Check(
        "ndif server", OK, f"{host} answers: {len(deployments)} deployment(s), {running} running"
    ), status


def _versions_check() -> Check:
    import nnsight

    try:
        cmp = nnsight.compare()
    except Exception as err:
        what = " ".join(str(err).split()) or type(err).__name__
        return Check(
            "ndif versions",
            FAIL,
            f"cannot read the server's environment (/env): {what}",
            "rerun later; the server must report its versions before a study",
        )
    critical = cmp.critical_mismatches
    if critical:
        pairs = ", ".join(
            f"{p} {v['local']} here vs {v['remote']} on NDIF" for p, v in sorted(critical.items())
        )
        pins = " ".join(f"{p}=={v['remote']}" for p, v in sorted(critical.items()))
        return Check(
            "ndif versions",
            FAIL,
            f"critical mismatch: {pairs}",
            f"install the server's versions: pip install {pins}",
        )
    notes = []
    if not cmp.python_matches:
        notes.append(f"Python {cmp.local_python} here vs {cmp.remote_python} on NDIF")
    others = len(cmp.mismatches)
    if others:
        notes.append(
            f"{others} non-critical package(s) differ (print(nnsight.compare()) lists them)"
        )
    if notes:
        return Check(
            "ndif versions",
            WARN,
            "nnsight, transformers and torch match; " + "; ".join(notes),
            "align them if a remote trace behaves differently from a local one",
        )
    return Check("ndif versions", OK, "nnsight, transformers and torch match the server's")


def _model_check(model: str, status: dict[str, Any]) -> Check:
    import nnsight

    try:
        running = bool(nnsight.is_model_running(model))
        how = ""
    except Exception:  # the Hub lookup that canonicalises the name failed: match it as given
        listed = _listed(model, status)
        running = any(d.get("application_state") == "RUNNING" for d in listed)
        how = " (the Hub could not canonicalise the name: matched as given)"
    if running:
        return Check("ndif model", OK, f"{model} is running on NDIF{how}")
    listed = _listed(model, status)
    if listed:
        states = ", ".join(
            sorted(
                {
                    f"{d.get('deployment_level', '?')}/{d.get('application_state', '?')}"
                    for d in listed
                }
            )
        )
        return Check(
            "ndif model",
            WARN,
            f"{model} is deployed on NDIF ({states}) but not running now{how}",
            "a job waits in the queue until it is running; check nnsight.status() first",
        )
    hosted = sorted(
        {
            str(d.get("repo_id"))
            for d in status.get("deployments", {}).values()
            if d.get("application_state") == "RUNNING"
        }
    )
    offer = ", ".join(hosted[:6]) or "none"
    return Check(
        "ndif model",
        FAIL,
        f"{model} is not running on NDIF{how}; running now: {offer}",
        "pass --model with one of the running models (NDIF hosts no code models)",
    )


def _listed(model: str, status: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in (status.get("deployments") or {}).values() if d.get("repo_id") == model]
