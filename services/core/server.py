"""Server plumbing shared by the three services: build, health, reflection, errors, drain."""
from __future__ import annotations

import dataclasses
import datetime
import gc
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, NoReturn, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import HealthServicer
from grpc_reflection.v1alpha import reflection

from services.core import handlers, metrics, runtime, security
from services.core.interceptor import ACCESS, Interceptor
from services.core.runtime import Holder, limit_malloc_arenas, release_memory
from services.core.tracing import Tracing, service_name, start_tracing
from tenure.errors import ConfigError
from tenure.settings import ServiceSettings, cpu_quota

log = logging.getLogger(__name__)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# --- process faults (part: process faults) ---
LOADER_JOIN_S = 5.0
"""After the server stopped, how long Service.stop waits for model loaders to leave onnxruntime."""
HARD_EXIT_AFTER_GRACE_S = 5.0
"""A server process still not stopped this long after its grace ran out exits hard (os._exit), logged."""
RESTART_BACKOFF_S = (0.5, 30.0)
"""A worker that died is restarted after the first delay, doubled on each quick death, at most the second."""
CRASH_LOOP_DEATHS = 5
"""A worker that dies this many times in a row, each within CRASH_LOOP_RUN_S of its start, is not
restarted again: the parent stops every worker and exits with an error (the orchestrator takes over)."""
CRASH_LOOP_RUN_S = 30.0
# --- end process faults ---


def deadline_of(context: grpc.ServicerContext) -> float | None:
    """The call's deadline as time.monotonic() seconds (None: no deadline)."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class Service:
    """A server: grpcio's threaded server, its port, health, and one model holder per gRPC service.

    Threaded rather than grpc.aio: measured here with the same handler, the threaded server answers
    single-row calls at ~1.7-2x the req/s of grpc.aio at concurrency 64 and at least as fast at
    concurrency 1 (each call runs on a pool thread; onnxruntime releases the GIL while it computes).
    """

    def __init__(self, server: grpc.Server, port: int, health: HealthServicer,
                 holders: dict[str, Holder[Any]], settings: ServiceSettings) -> None:
        self.server = server
        self.port = port
        self.health = health
        self.holders = holders
        self.settings = settings
        self._stopping = threading.Event()
        self._loaders: list[threading.Thread] = []
        self.calls: handlers.CallLimiter | None = None
        """Admission of calls by class (services.core.handlers), set by build_service."""
        self.metrics_port: int | None = None
        """The bound port of this process's /metrics endpoint once serve_metrics started it."""
        self.tracing: Tracing | None = None
        """OpenTelemetry tracing (settings.otlp_endpoint), set by build_service; flushed by stop."""
        self.closers: list[Callable[[], None]] = []
        """Run last by stop (the online store's connections and subscriptions)."""

    def serve_metrics(self, port: int | None = None) -> int:
        """Start the process's Prometheus endpoint on settings.metrics_host and `port` (default
        settings.metrics_port; 0 picks a free one); the bound port, also in self.metrics_port."""
        self.metrics_port = metrics.serve(self.settings.metrics_port if port is None else port,
                                          self.settings.metrics_host)
        return self.metrics_port

    def _refresh_health(self) -> None:
        """Each gRPC service: SERVING when its engine is loaded and has something to serve (ModelInfer
        without any model is not). The server (""): every engine loaded, and at least one ready."""
        ready = {name: h.ready for name, h in self.holders.items()}
        for name, ok in ready.items():
            self.health.set(name, SERVING if ok else NOT_SERVING)
        loaded = all(h.current is not None for h in self.holders.values())
        self.health.set("", SERVING if loaded and any(ready.values()) else NOT_SERVING)

    def _load(self, holder: Holder[Any]) -> None:
        """Load (then keep polling for newer) models; health follows what is loaded."""
        while not self._stopping.is_set():
            try:
                changed = holder.refresh()
            except Exception:  # refresh reports broken versions itself; never let the loader die
                log.exception("loading models failed")
                changed = False
            if changed:
                self._refresh_health()  # at once: the clean-up below can take a while on a busy box
                # The old engine is gone: collect it (unfreezing first, or its frozen objects would
                # stay for good) and return its memory to the kernel. Models, snapshots and their
                # indexes live as long as the version: freeze them, so that the collector does not
                # walk them again and again on the serving path.
                release_memory()
                gc.freeze()
            self._refresh_health()
            interval = self.settings.reload_interval_s
            if holder.current is not None and interval <= 0:
                return
            self._stopping.wait(interval if interval > 0 else 2.0)

    def start(self) -> None:
        if self.settings.workers > 1 and any([h.refresh() for h in self.holders.values()]):  # all, not the first
            # A worker shares its port with the others: it only starts listening once its models are
            # loaded, so the kernel never hands it a connection it cannot serve yet.
            gc.collect()
            gc.freeze()
        self._refresh_health()
        self.server.start()
        self._loaders = [threading.Thread(target=self._load, args=(h,), name=f"load-{name}", daemon=True)
                         for name, h in self.holders.items()]
        for thread in self._loaders:
            thread.start()

    def stop(self, grace_s: float | None = None) -> None:
        """Drain: report NOT_SERVING, refuse new calls, let in-flight calls finish within the grace.

        First a lame-duck pause (settings.shutdown_lame_duck_s, within the grace) that still serves every
        call: grpc's core hands calls to the Python server one at a time per method, so under load calls
        that clients sent before the signal can still be queued inside the core, and the core's shutdown
        cancels whatever it holds (the clients see CANCELLED). Then the core's shutdown (GOAWAY: clients
        open new connections, to another worker when there is one) and the wait for in-flight calls,
        unary and streams, for the rest of the grace; what still runs after it is cancelled. Last, the
        model loaders get a bounded wait to leave onnxruntime (a session being created must not race
        the interpreter's exit)."""
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        self.health.enter_graceful_shutdown()
        self._stopping.set()
        lame_duck = min(self.settings.shutdown_lame_duck_s, grace / 2)
        if lame_duck > 0:
            time.sleep(lame_duck)
        self.server.stop(grace - lame_duck).wait()
        until = time.monotonic() + LOADER_JOIN_S
        for thread in self._loaders:
            thread.join(max(0.0, until - time.monotonic()))
        if any(thread.is_alive() for thread in self._loaders):
            log.warning("a model loader is still busy %.0fs after the server stopped", LOADER_JOIN_S)
        if self.tracing is not None:  # the spans of the last calls reach the collector before the exit
            self.tracing.shutdown()
        for close in self.closers:
            close()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log collectors parse without configuration. "t" is ISO-8601 UTC with
    milliseconds ("2026-11-29T22:41:05.123Z"); a record's `fields` extra (the access log's) joins the object."""

    def format(self, record: logging.LogRecord) -> str:
        t = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        entry: dict[str, Any] = {"t": t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z",
                                 "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def build_service(
    address: str,
    registrations: Sequence[tuple[Callable[[Any, grpc.Server], None], Any, str, Holder[Any]]],
    settings: ServiceSettings,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    tracing: Tracing | None = None,
) -> Service:
    """Create the server (not started) with health (NOT_SERVING) and reflection; port 0 picks one.

    registrations: (add_XServicer_to_server, servicer, full service name, the holder it serves from);
    the servicer is registered through services.core.handlers.register (the add function is not used).
    interceptors: run in this order, after the token check (settings.tokens_file) when there is one.
    tracing: the server's tracing (services.core.tracing), when the caller needs it first (traced client
    channels); else one named after the first registration when settings.otlp_endpoint is set. Its span
    interceptor is the outermost.
    TLS when settings.tls_cert_file/tls_key_file are set (mutual TLS with tls_client_ca_file); a
    missing or unreadable file stops here with one SecurityConfigError.
    """
    runtime.TREE_BACKEND = settings.tree_backend  # read by OnnxModel when the holders load models
    credentials = None
    if settings.tls_cert_file or settings.tls_key_file or settings.tls_client_ca_file:
        credentials = security.server_credentials(settings.tls_cert_file, settings.tls_key_file,
                                                  settings.tls_client_ca_file)
    auth = security.server_interceptors(settings.tokens_file, settings.reflection_open)
    if tracing is None and registrations:
        tracing = start_tracing(settings, service_name(registrations[0][2]))
    traced = [] if tracing is None else [tracing.server_interceptor({name: h for _, _, name, h in registrations})]
    server = grpc.server(
        ThreadPoolExecutor(max_workers=handlers.server_threads(settings), thread_name_prefix="rpc"),
        options=[
            # grpc refuses a bigger request (RESOURCE_EXHAUSTED) before it is read into memory and parsed.
            ("grpc.max_receive_message_length", settings.max_request_bytes),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # Several worker processes may share a port (settings.workers); otherwise a second
            # server on the same port is an error, not a silent split of the traffic.
            ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        ],
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        # Errors to status, metrics and the access log (services.core.interceptor) see every call, denied too.
        interceptors=[*traced, Interceptor(settings.access_log), *auth, *interceptors],
    )
    # Raw bytes in, decoded by handlers (INVALID_ARGUMENT when malformed), admitted by call class.
    calls = handlers.CallLimiter(settings.bulk_calls)
    control_pool = ThreadPoolExecutor(max_workers=handlers.CONTROL_THREADS, thread_name_prefix="rpc-control")
    for _, servicer, name, _ in registrations:
        handlers.register(server, name, servicer, calls, control_pool)
    service_names = [name for _, _, name, _ in registrations]
    health = HealthServicer()
    health.Check = handlers.control_behavior(health.Check, control_pool)  # type: ignore[method-assign]
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    security.warn_if_exposed(address, tls=credentials is not None, client_certs=bool(settings.tls_client_ca_file),
                             tokens=bool(auth))
    if port == 0:
        raise OSError(f"cannot bind {address}")
    service = Service(server, port, health, {name: holder for _, _, name, holder in registrations}, settings)
    service.calls = calls
    service.tracing = tracing
    return service


def _stop_when_orphaned(parent_pid: int, stop: threading.Event) -> None:
    """A worker whose parent died (even by SIGKILL) drains and exits instead of serving on alone."""
    while os.getppid() == parent_pid and not stop.wait(1.0):
        pass
    if not stop.is_set():
        log.warning("parent process %d is gone; stopping", parent_pid)
        stop.set()


def serve_forever(service: Service, banner: str, parent_pid: int | None = None) -> None:
    """Run until SIGTERM/SIGINT (or, for a worker, until its parent is gone), then drain gracefully
    (Service.stop). Should the drain itself hang, the process exits hard HARD_EXIT_AFTER_GRACE_S after
    the grace ran out (logged), so that it always ends."""
    stop = threading.Event()
    sys.setswitchinterval(service.settings.switch_interval_ms / 1000.0)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    if parent_pid:
        threading.Thread(target=_stop_when_orphaned, args=(parent_pid, stop), name="orphan-watch",
                         daemon=True).start()
    service.start()
    log.info("%s listening on port %d", banner, service.port)
    # Wake up now and then: a signal that the kernel delivers to one of grpc's threads only runs its
    # Python handler when the main thread executes bytecode again, not while it blocks on a lock.
    while not stop.wait(0.2):
        pass
    grace = service.settings.shutdown_grace_s
    log.info("%s draining (grace %.1fs)", banner, grace)
    threading.Thread(target=_exit_if_stuck, args=(banner, grace + HARD_EXIT_AFTER_GRACE_S), name="exit-watch",
                     daemon=True).start()
    service.stop()
    log.info("%s stopped", banner)


def _flush_and_exit(code: int) -> NoReturn:
    """Leave now, without the interpreter's shutdown: everything to keep is written (calls are over,
    state is committed per call); what is left are threads that may block the exit or crash it
    (executor threads joined at exit, an onnxruntime session being created: SIGABRT)."""
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # noqa: S110 - a closed stream must not keep the process alive
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: S110
            pass
    ACCESS.flush(1.0)  # the access-log lines of the last calls
    os._exit(code)


def _exit_if_stuck(banner: str, after_s: float) -> None:
    time.sleep(after_s)
    log.error("%s still not stopped %.0fs after the drain began; exiting hard", banner, after_s)
    _flush_and_exit(1)


def resolve_processes(settings: ServiceSettings) -> ServiceSettings:
    """Workers and onnxruntime threads sized to the CPU quota, not the host's core count."""
    quota = cpu_quota()
    workers = settings.workers or quota
    threads = settings.ort_threads or max(1, quota // workers)
    return dataclasses.replace(settings, workers=workers, ort_threads=threads)


def _configure_logging() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def _serve_one(make: Callable[[ServiceSettings, str], Service], settings: ServiceSettings, address: str,
               banner: str, parent_pid: int | None = None, core: int | None = None) -> None:
    """One server process: serve, drain on SIGTERM, then exit (os._exit, see _flush_and_exit). A
    setting or file that stops the server before it serves raises as before (one line, exit 2)."""
    _configure_logging()
    limit_malloc_arenas()  # before any thread exists
    if core is not None:
        # Before any thread exists, so that grpc's, onnxruntime's and ours all stay on this core.
        os.sched_setaffinity(0, {core})
        log.info("%s pinned to core %d", banner, core)
    try:
        service = make(settings, address)
    except ConfigError as err:  # TLS files, tokens file: one line, exit 2 (like a bad setting)
        print(f"{banner}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if parent_pid is None and settings.metrics_port:  # a worker's metrics are served by its parent
        log.info("%s metrics on http://%s:%d/metrics", banner, settings.metrics_host, service.serve_metrics())
    serve_forever(service, banner, parent_pid)
    _flush_and_exit(0)


def worker_cores(settings: ServiceSettings) -> list[int | None]:
    """The core each worker process is pinned to, or None each when not pinning.

    A Python server's threads share one GIL: measured here, one worker whose threads roam over two
    cores answered ~40% fewer single-row calls than the same worker held on one core (the GIL
    hand-offs cross cores). So with several workers and at least as many cores as workers, each
    worker keeps to a core of its own."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not settings.pin_workers or settings.workers < 2 or len(cores) < settings.workers:
        return [None] * settings.workers
    return [cores[i] for i in range(settings.workers)]


def run(make: Callable[[ServiceSettings, str], Service], settings: ServiceSettings, address: str, banner: str) -> None:
    """Serve until SIGTERM; with settings.workers > 1, that many processes share the port, supervised
    (Supervisor): one that dies is restarted, SIGTERM/SIGINT is forwarded and every worker drains."""
    settings = resolve_processes(settings)
    if settings.workers == 1:
        _serve_one(make, settings, address, banner)
        return
    _configure_logging()
    if address.endswith(":0"):
        raise SystemExit("--workers > 1 needs a fixed port: each worker binds the same one (SO_REUSEPORT)")
    if settings.metrics_port:  # one endpoint for all workers, summing their files
        path = metrics.multiprocess_dir()
        port = metrics.serve(settings.metrics_port, settings.metrics_host)
        log.info("%s metrics of %d workers on http://%s:%d/metrics (%s)", banner, settings.workers,
                 settings.metrics_host, port, path)
    try:
        codes = Supervisor(make, settings, address, banner).run()
    finally:
        metrics.cleanup_multiprocess_dir()
    if any(codes):
        raise SystemExit(f"workers exited with {codes}")


class Supervisor:
    """The parent of the worker processes (spawned, not forked: no grpc or onnxruntime state is shared).

    A worker that exits while the parent is not stopping (killed, crashed, out of memory) is restarted
    after a backoff (RESTART_BACKOFF_S, doubled while it keeps dying quickly), with a log line; after
    CRASH_LOOP_DEATHS quick deaths in a row the parent gives up: it stops the others and exits with an
    error. SIGTERM/SIGINT go to every worker, which drains; the parent waits for all of them (a worker
    still alive well after its grace is killed). Should the parent itself be killed (SIGKILL), each
    worker notices within about a second (_stop_when_orphaned) and drains its in-flight calls within
    its grace before it exits: an orchestrator then restarts the whole service."""

    def __init__(self, make: Callable[[ServiceSettings, str], Service], settings: ServiceSettings, address: str,
                 banner: str) -> None:
        self.make, self.settings, self.address, self.banner = make, settings, address, banner
        self.ctx = multiprocessing.get_context("spawn")
        self.cores = worker_cores(settings)
        self.procs: dict[int, Any] = {}
        self.started_at: dict[int, float] = {}
        self.quick_deaths = dict.fromkeys(range(settings.workers), 0)
        self.restart_at: dict[int, float] = {}
        self.stopping: int | None = None
        """The signal being forwarded, once the workers are stopping."""

    def _spawn(self, i: int) -> None:
        proc = self.ctx.Process(target=_serve_one, name=f"{self.banner}-worker-{i}",
                                args=(self.make, self.settings, self.address, f"{self.banner} worker {i}",
                                      os.getpid(), self.cores[i]))
        proc.start()
        self.procs[i], self.started_at[i] = proc, time.monotonic()
        if self.stopping is not None:  # the signal came while this one was starting
            self._signal(proc, self.stopping)

    @staticmethod
    def _signal(proc: Any, signum: int) -> None:
        if proc.pid is not None and proc.exitcode is None:
            try:
                os.kill(proc.pid, signum)
            except ProcessLookupError:
                pass

    def _forward(self, signum: int, _frame: object) -> None:
        first = self.stopping is None
        self.stopping = signum
        self.restart_at.clear()
        if first:
            log.info("%s: stopping %d workers (signal %d)", self.banner, len(self.procs), signum)
        for proc in list(self.procs.values()):
            self._signal(proc, signum)

    def _check(self, now: float) -> None:
        """Note the workers that died; restart those whose backoff is over."""
        for i, proc in self.procs.items():
            if proc.exitcode is None or i in self.restart_at or self.stopping is not None:
                continue
            ran = now - self.started_at[i]
            metrics.worker_exited(proc.pid)
            self.quick_deaths[i] = self.quick_deaths[i] + 1 if ran < CRASH_LOOP_RUN_S else 1
            if self.quick_deaths[i] >= CRASH_LOOP_DEATHS:
                log.error("%s worker %d died %d times in a row, each within %.0fs of its start (last exit code %s); "
                          "stopping", self.banner, i, self.quick_deaths[i], CRASH_LOOP_RUN_S, proc.exitcode)
                self._forward(signal.SIGTERM, None)
                return
            delay = min(RESTART_BACKOFF_S[1], RESTART_BACKOFF_S[0] * 2 ** (self.quick_deaths[i] - 1))
            log.warning("%s worker %d (pid %s) exited with code %s after %.1fs; restarting it in %.1fs", self.banner,
                        i, proc.pid, proc.exitcode, ran, delay)
            self.restart_at[i] = now + delay
        for i, at in list(self.restart_at.items()):
            if now >= at and self.stopping is None:
                del self.restart_at[i]
                self._spawn(i)
                log.info("%s worker %d restarted as pid %s", self.banner, i, self.procs[i].pid)

    def run(self) -> list[int | None]:
        """Start the workers and supervise them until they have all stopped; their exit codes."""
        from multiprocessing.connection import wait

        signal.signal(signal.SIGTERM, self._forward)
        signal.signal(signal.SIGINT, self._forward)
        for i in range(self.settings.workers):
            self._spawn(i)
        log.info("%s: %d workers on %s, %d onnxruntime thread(s) each", self.banner, self.settings.workers,
                 self.address, self.settings.ort_threads)
        kill_at: float | None = None
        while True:
            running = [p for p in self.procs.values() if p.exitcode is None]
            if self.stopping is not None and not running:
                break
            wait([p.sentinel for p in running], timeout=0.5)
            now = time.monotonic()
            self._check(now)
            if self.stopping is not None:
                kill_at = kill_at or now + self.settings.shutdown_grace_s + 2 * HARD_EXIT_AFTER_GRACE_S
                if now >= kill_at:
                    for proc in running:
                        log.error("%s: worker pid %s still running long after its grace; killing it", self.banner,
                                  proc.pid)
                        self._signal(proc, signal.SIGKILL)
        for proc in self.procs.values():
            proc.join()
        codes = [self.procs[i].exitcode for i in sorted(self.procs)]
        log.info("%s: workers stopped (exit codes %s)", self.banner, codes)
        return codes
