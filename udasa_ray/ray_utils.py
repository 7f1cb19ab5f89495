"""Joining or starting Ray: one place that knows the local-run settings."""

from __future__ import annotations

import logging
import os
import statistics
from collections.abc import Callable
from typing import Any, TypeVar

from udasa_ray.config import RayConfig

# Ray's soft limit on worker processes is the CPU count: while a step's actors hold CPUs, it stops an idle worker a
# second after its task, so on a local Ray every Ray Data read or write task would start a new Python process and
# import Ray again. A job keeps about a dozen actors alive (the steps' models, Ray Data's and Ray Train's own).
IDLE_WORKERS_KEPT = 16


def local_ray(cfg: RayConfig) -> bool:
    """Whether this process starts its own Ray (of `ray.num_cpus`) rather than joining a cluster."""
    return not (cfg.address or os.environ.get("RAY_ADDRESS"))


def init_ray(cfg: RayConfig) -> None:
    """Join `ray.address` or RAY_ADDRESS (as under `ray job submit`), else start Ray on loopback."""
    import ray

    if ray.is_initialized():
        return
    if not local_ray(cfg):
        ray.init(address=cfg.address or os.environ.get("RAY_ADDRESS"), log_to_driver=True)
        return
    # A local Ray needs no auth token, and must listen on loopback only.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # The dashboard serves the state API that Ray Train and Tune use to clean up after themselves.
    ray.init(num_cpus=cfg.num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1",
             configure_logging=True, logging_level="WARNING",
             _system_config={"num_workers_soft_limit": (cfg.num_cpus or os.cpu_count() or 1) + IDLE_WORKERS_KEPT})


T = TypeVar("T")


def run_task(fn: Callable[..., T], *args: Any, num_cpus: float, num_gpus: float = 0) -> T:
    """Run `fn(*args)` as one Ray task where its resources are (a GPU node on a cluster), and wait."""
    import ray

    return ray.get(ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(fn).remote(*args))


def data_context(preserve_order: bool = True):
    """Ray Data settings for our stages: our own progress bar (rows, rate, ETA), no log chatter."""
    import ray

    ctx = ray.data.DataContext.get_current()  # importing ray.data configures its loggers
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.execution_options.preserve_order = preserve_order
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "bars disabled"
    return ctx


def finished_batches(ds):  # noqa: ANN001, ANN201
    """`ds`'s output blocks as Arrow tables, each as soon as its actor call is done. Ray Data's default
    prefetch holds a finished block back until the next one is done too, which would keep the driver's
    part files and progress bar one batch behind the actors (and a kill would lose that batch)."""
    return ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0)


def actor_seconds(batch, column: str) -> float | None:  # noqa: ANN001
    """The seconds the actor calls behind one output batch took, from the `column` each call fills
    with its own time (a batch can hold rows of more than one call)."""
    return sum(set(batch[column].to_pylist())) if column in batch.column_names else None


def warm_up(seconds: list[float | None], rows: list[int], actors: int) -> dict:
    """The actors' own seconds per batch and the warm-up ratio: the slowest of their first batches,
    per row, over the median of the later ones (1: none; None under 2 later batches). {} without times."""
    if not seconds or any(s is None for s in seconds):
        return {}
    per_row = [s / n for s, n in zip(seconds, rows, strict=True) if n]
    later = per_row[actors:]
    ratio = max(per_row[:actors]) / statistics.median(later) if len(later) >= 2 else None
    return {"actor_batch_seconds": [round(s, 2) for s in seconds],
            "first_batch_ratio": None if ratio is None else round(ratio, 2)}
