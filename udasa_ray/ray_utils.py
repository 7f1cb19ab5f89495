"""Joining or starting Ray: one place that knows the local-run settings."""

from __future__ import annotations

import os

from udasa_ray.config import RayConfig


def init_ray(cfg: RayConfig) -> None:
    """Join `ray.address` or RAY_ADDRESS (as under `ray job submit`), else start Ray on loopback."""
    import ray

    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    # A local Ray needs no auth token, and must listen on loopback only (see STACK.md).
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray.init(num_cpus=cfg.num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
             configure_logging=True, logging_level="WARNING")
