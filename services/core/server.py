"""Server plumbing shared by the three services: build, health, reflection, errors, drain."""
from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import signal
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from services.core.errors import status_for
from services.core.runtime import Holder
from tenure.errors import TenureError
from tenure.settings import ServiceSettings

log = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def grpc_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Map domain errors to their status (services.core.errors.STATUS) for unary and streaming
    handlers; anything unexpected becomes INTERNAL with a generic message and a logged traceback."""
    name = method.__qualname__

    async def abort(err: Exception, context: grpc.aio.ServicerContext) -> None:
        if isinstance(err, grpc.aio.AbortError):  # the handler aborted on purpose
            raise err
        if isinstance(err, TenureError):
            await context.abort(*status_for(err))
        log.error("%s failed", name, exc_info=err)
        await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {name}")

    if inspect.isasyncgenfunction(method):
        @functools.wraps(method)
        async def stream_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for item in method(self, request, context):
                    yield item
            except Exception as err:
                await abort(err, context)
        return stream_wrapper

    @functools.wraps(method)
    async def unary_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except Exception as err:
            await abort(err, context)
    return unary_wrapper


class Service:
    """A running service: the aio server, its port, health, and the model holder."""

    def __init__(self, server: grpc.aio.Server, port: int, health: HealthServicer, holder: Holder[Any],
                 service_names: Sequence[str], settings: ServiceSettings) -> None:
        self.server = server
        self.port = port
        self.health = health
        self.holder = holder
        self.service_names = list(service_names)
        self.settings = settings
        self._loader: asyncio.Task[None] | None = None

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    async def load_models(self) -> None:
        """Load (then keep polling for newer) models; health goes SERVING after the first load."""
        while True:
            swapped = await asyncio.to_thread(self.holder.refresh)
            if swapped or self.holder.current is not None:
                await self._set_health(health_pb2.HealthCheckResponse.SERVING)
            interval = self.settings.reload_interval_s
            if self.holder.current is not None and interval <= 0:
                return
            await asyncio.sleep(interval if interval > 0 else 2.0)

    async def start(self) -> None:
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        self._loader = asyncio.create_task(self.load_models())

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain: report NOT_SERVING, refuse new calls, let in-flight calls finish within the grace."""
        await self.health.enter_graceful_shutdown()
        if self._loader is not None:
            self._loader.cancel()
        await self.server.stop(self.settings.shutdown_grace_s if grace_s is None else grace_s)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log collectors parse without configuration."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"t": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "msg": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def build_service(
    address: str,
    registrations: Sequence[tuple[Callable[[Any, grpc.aio.Server], None], Any]],
    service_names: Sequence[str],
    holder: Holder[Any],
    settings: ServiceSettings,
) -> Service:
    """Create the server (not started) with health (NOT_SERVING) and reflection; port 0 picks one."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    for add, servicer in registrations:
        add(servicer, server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {address}")
    return Service(server, port, health, holder, service_names, settings)


async def serve_forever(service: Service, banner: str) -> None:
    """Run until SIGTERM/SIGINT, then drain gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    log.info("%s listening on port %d", banner, service.port)
    await stop.wait()
    log.info("%s draining (grace %.1fs)", banner, service.settings.shutdown_grace_s)
    await service.stop()


def run(make: Callable[[ServiceSettings, str], Awaitable[Service]] | Callable[[ServiceSettings, str], Service],
        settings: ServiceSettings, address: str, banner: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)

    async def main() -> None:
        service = make(settings, address)
        if inspect.isawaitable(service):
            service = await service
        await serve_forever(service, banner)

    asyncio.run(main())

