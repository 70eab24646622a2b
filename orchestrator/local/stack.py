"""The embedded stack in one object.

    with LocalStack() as stack:          # moto server, resources, API, timers, sweeper
        stack.settings                    # points at it
        stack.api_url
        stack.exports()                   # the environment a second terminal needs

Background loops (sweeper, scheduler emulator) run on one thread and read the
stack's Clock, so a SkippingClock moves every timer in the stack together.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
import botocore.loaders

from .. import resources as r
from ..api.app import build_app
from ..api.service import Service
from ..aws import client
from ..clock import SYSTEM_CLOCK, Clock
from ..dispatch import Dispatcher
from ..payloads import SyncValues
from ..recurring import parse_event
from ..settings import Settings
from ..store import Store
from ..sweeper import Sweeper
from .aws import MotoServer
from .bootstrap import bootstrap
from .http import ApiServer
from .scheduler_emulator import SchedulerEmulator

log = logging.getLogger(__name__)

# The jobs pass (api/jobs.py) runs on a thread of its own at every sweep
# interval, so a job neither waits for the sweep's own passes nor holds the
# timers; each pass works the due jobs for up to this long.
LOCAL_JOBS_BUDGET_S = 5.0

LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": r.DEFAULT_REGION,
    "AWS_DEFAULT_REGION": r.DEFAULT_REGION,
}


@functools.cache
def _shared_loader() -> Any:
    return botocore.loaders.create_loader()


def use_local_credentials() -> None:
    """moto accepts any credentials; make sure boto3 finds some and never a real profile."""
    for k, v in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(k, v)


class LocalStack:
    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        settings: Settings | None = None,
        aws_port: int = 0,
        api_port: int = 0,
        endpoint_url: str | None = None,
        background_interval: float = 1.0,
        sweep_interval: float | None = None,
        serve_api: bool = True,
        max_receive_count: int = r.MAX_RECEIVE_COUNT,  # the queue's redrive to the DLQ
        allow_reset: bool = False,  # open moto's reset route (tests): see local.aws
        allowed_hosts: tuple[str, ...] = (),  # Host names the API accepts besides loopback
        aws_middleware: Callable[[Any], Any] | None = None,  # wraps moto's app (tests)
    ) -> None:
        self._aws_middleware = aws_middleware
        self._allow_reset = allow_reset
        self._allowed_hosts = allowed_hosts
        use_local_credentials()
        self.clock = clock
        self._base = settings or Settings()
        self._aws_port = aws_port
        self._api_port = api_port
        self._external_endpoint = endpoint_url
        # Timers fire every background_interval; the sweep (the backstop: walks and
        # due passes over every shard, the DLQs, missed schedules) every
        # sweep_interval, by default as often.
        self._interval = background_interval
        self._sweep_interval = background_interval if sweep_interval is None else sweep_interval
        self._serve_api = serve_api
        self._max_receive_count = max_receive_count
        self.moto: MotoServer | None = None
        self.api: ApiServer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._jobs_thread: threading.Thread | None = None
        self.settings = self._base
        self.session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name=self._base.region,
        )
        # Service models are parsed once per process, not once per stack: each
        # botocore session would read its own (some 0.35 s of JSON for a stack).
        self.session._session.register_component("data_loader", _shared_loader())

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> LocalStack:
        if self._external_endpoint:
            endpoint = self._external_endpoint
        else:
            self.moto = MotoServer(
                port=self._aws_port,
                allow_reset=self._allow_reset,
                middleware=self._aws_middleware,
            ).start()
            endpoint = self.moto.url
        self.settings = bootstrap(
            self.session, endpoint, self._base, max_receive_count=self._max_receive_count
        )
        self.ddb = client("dynamodb", self.settings, self.session)
        self.sqs = client("sqs", self.settings, self.session)
        self.scheduler = client("scheduler", self.settings, self.session)
        self.s3 = client("s3", self.settings, self.session)
        self.values = SyncValues(self.s3, self.settings.bucket)
        self.store = Store(self.ddb, self.settings.table, self.clock)
        self.dispatcher = Dispatcher(self.sqs, self.settings, self.scheduler)
        self.service = Service(
            self.store, self.dispatcher, self.clock, self.settings, values=self.values
        )
        self.sweeper = Sweeper(self.store, self.dispatcher, self.clock, self.settings)
        self.emulator = SchedulerEmulator(
            self.scheduler,
            self.sqs,
            self.clock,
            self.settings.schedule_group,
            recurring_group=self.settings.recurring_group,
            deliver=self._deliver_tick,
        )
        if self._serve_api:
            self.api = ApiServer(
                lambda: build_app(lambda: self.service),
                port=self._api_port,
                allowed_hosts=self._allowed_hosts,
            ).start()
            self.settings = self.settings.with_(api_url=self.api.url)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="timers")
        self._thread.start()
        self._jobs_thread = threading.Thread(target=self._jobs_loop, daemon=True, name="jobs")
        self._jobs_thread.start()
        return self

    def _loop(self) -> None:
        next_sweep = 0.0
        while not self._stop.wait(self._interval):
            now = time.monotonic()
            sweep = now >= next_sweep
            if sweep:
                next_sweep = now + self._sweep_interval
            self.tick(sweep=sweep, jobs=False)

    def _jobs_loop(self) -> None:
        while not self._stop.wait(self._sweep_interval):
            try:
                self.service.jobs.advance_due(LOCAL_JOBS_BUDGET_S)
            except Exception:
                if not self._stop.is_set():
                    log.exception("the jobs pass failed; retrying next round")

    def tick(self, *, sweep: bool = True, jobs: bool = True) -> None:
        """One round of the background work: fire due schedules, then sweep (runs,
        schedules' catch-up) and, unless `jobs` is False (the background loop,
        whose jobs pass has its own thread), work the due jobs."""
        try:
            self.emulator.fire_due()
            if sweep:
                self.sweeper.sweep_once()
                self.service.schedules.catch_up(grace_ms=self.settings.sweep_grace_ms)
                if jobs:
                    self.service.jobs.advance_due(LOCAL_JOBS_BUDGET_S)
        except Exception:
            if not self._stop.is_set():
                log.exception("background round failed; retrying next round")

    def _deliver_tick(self, payload: dict[str, Any]) -> Any:
        """A recurring schedule's invocation, as the API Lambda receives it."""
        event = parse_event(payload)
        if event is None:
            return None
        return self.service.schedules.fire(*event)

    def reset(self) -> None:
        """Clear all state and recreate the resources (tests)."""
        assert self.moto is not None
        self.moto.reset()
        self.settings = bootstrap(
            self.session, self.moto.url, self.settings, max_receive_count=self._max_receive_count
        )

    def stop_background(self) -> None:
        """Stop the timers, sweeps and jobs passes (each ends its round first)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        if self._jobs_thread:
            self._jobs_thread.join(timeout=10)

    def stop(self) -> None:
        self.stop_background()
        if self.api:
            self.api.stop()
        if self.moto:
            self.moto.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- for users ----------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        assert self.settings.api_url, "the API is not served"
        return self.settings.api_url

    def exports(self) -> dict[str, str]:
        return {**LOCAL_CREDENTIALS, **self.settings.env_exports()}
