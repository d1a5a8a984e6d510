"""TLS, mutual TLS, bearer tokens with scopes and path containment, through real servers on port 0.

Certificates are made here with `cryptography` (a CA, a server certificate for 127.0.0.1/localhost,
an expired one, a client certificate, and a second CA nobody trusts)."""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.core.security import SecurityConfigError, TokenTable, client_channel
from services.core.server import Service, build_service
from tenure.artifacts import Manifest, load_manifest, safe_name, write_artifact
from tenure.errors import ArtifactError, InvalidInput
from tenure.settings import ServiceSettings
from tenure.store import FeatureSnapshot
from tenure.v1 import (
    common_pb2,
    inference_pb2,
    inference_pb2_grpc,
    recommendation_pb2,
    recommendation_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    segmentation_pb2,
    segmentation_pb2_grpc,
)

CHECKOUT = "checkout-" + "c" * 32
ANALYST = "analyst-" + "a" * 32
ADMIN = "admin-" + "z" * 32
WRONG = "wrong-" + "w" * 32
TIMEOUT_S = 30  # a safety net only: every call here answers (or fails its handshake) at once


# ---------------------------------------------------------------------------------------- certificates


@dataclass
class Issued:
    cert: Path
    key: Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Pki:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.now = datetime.datetime.now(datetime.timezone.utc)

    def ca(self, name: str) -> tuple[Issued, ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(self.now - datetime.timedelta(days=1))
                .not_valid_after(self.now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return self._write(name, cert, key), key, cert

    def leaf(self, name: str, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, server: bool,
             expired: bool = False) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = ((self.now - datetime.timedelta(days=10), self.now - datetime.timedelta(days=1)) if expired
                      else (self.now - datetime.timedelta(days=1), self.now + datetime.timedelta(days=30)))
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(ca_cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                         else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return self._write(name, builder.sign(ca_key, hashes.SHA256()), key)

    def _write(self, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
        issued = Issued(self.root / f"{name}.crt", self.root / f"{name}.key")
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key.write_bytes(_key_pem(key))
        return issued


@dataclass
class Certs:
    ca: Issued
    server: Issued
    expired: Issued
    client: Issued
    other_ca: Issued
    rogue_client: Issued


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    pki = Pki(tmp_path_factory.mktemp("pki"))
    ca, ca_key, ca_cert = pki.ca("tenure-test-ca")
    other, other_key, other_cert = pki.ca("someone-else-ca")
    return Certs(ca=ca, server=pki.leaf("server", ca_key, ca_cert, server=True),
                 expired=pki.leaf("expired", ca_key, ca_cert, server=True, expired=True),
                 client=pki.leaf("client", ca_key, ca_cert, server=False), other_ca=other,
                 rogue_client=pki.leaf("rogue", other_key, other_cert, server=False))


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "tokens.json"
    path.write_text(json.dumps({"tokens": [
        {"name": "checkout", "token": CHECKOUT,
         "allow": ["tenure.v1.RecommendationService/Recommend", "tenure.v1.RecommendationService/RecommendForBasket"]},
        {"name": "analyst", "token_sha256": hashlib.sha256(ANALYST.encode()).hexdigest(),
         "allow": ["tenure.v1.ScoringService/*", "inference.GRPCInferenceService/*",
                   "tenure.v1.SegmentationService/GetSegments"]},
        {"name": "admin", "token": ADMIN, "allow": ["*"]},
    ]}))
    return path


# --------------------------------------------------------------------------------------------- servers


def wait_serving(channel: grpc.Channel) -> None:
    grpc.channel_ready_future(channel).result(timeout=120)
    stub = health_pb2_grpc.HealthStub(channel)
    while stub.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S, wait_for_ready=True).status != \
            health_pb2.HealthCheckResponse.SERVING:
        pass


@pytest.fixture(scope="module")
def open_channel(certs: Certs) -> Iterator[Callable[..., grpc.Channel]]:
    channels: list[grpc.Channel] = []

    def make(target: str, **kw: Any) -> grpc.Channel:
        kw.setdefault("environ", {})  # these tests say everything explicitly; the env path has its own test
        ch = client_channel(target, **kw)
        channels.append(ch)
        return ch

    yield make
    for ch in channels:
        ch.close()


def _tls_server(make_service: Callable[..., Any], repo: Path, start_server: Callable[..., Any], certs: Certs,
                tokens_file: Path, open_channel: Callable[..., grpc.Channel]) -> Any:
    """A server with TLS and the tokens file, SERVING (checked over TLS)."""
    server = start_server(make_service, repo, wait=False, tls_cert_file=str(certs.server.cert),
                          tls_key_file=str(certs.server.key), tokens_file=str(tokens_file))
    wait_serving(open_channel(server.target, ca_file=str(certs.ca.cert)))
    return server


@pytest.fixture(scope="module")
def tls_scoring(trained_repo: Path, start_server: Callable[..., Any], certs: Certs, tokens_file: Path,
                open_channel: Callable[..., grpc.Channel]) -> Any:
    from services.scoring.__main__ import make_service

    return _tls_server(make_service, trained_repo, start_server, certs, tokens_file, open_channel)


@pytest.fixture(scope="module")
def tls_recommendation(trained_repo: Path, start_server: Callable[..., Any], certs: Certs, tokens_file: Path,
                       open_channel: Callable[..., grpc.Channel]) -> Any:
    from services.recommendation.__main__ import make_service

    return _tls_server(make_service, trained_repo, start_server, certs, tokens_file, open_channel)


@pytest.fixture(scope="module")
def customer(trained_repo: Path) -> str:
    snap = FeatureSnapshot.load_latest(trained_repo)
    orders = snap.X[:, snap.feature_names.index("orders_total")]
    return str(snap.customer_ids[int(np.argmax(orders))])


@pytest.fixture
def bare_server(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """A server with only health and reflection: enough for handshakes and the open/closed rules."""
    started: list[Service] = []

    def start(**overrides: Any) -> Service:
        service = build_service("127.0.0.1:0", [], ServiceSettings(state_dir=tmp_path, **overrides))
        service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop(0)


def health(channel: grpc.Channel) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S).status


def code_of(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details() or ""


def list_services(channel: grpc.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                        timeout=TIMEOUT_S)
    return [s.name for a in answers for s in a.list_services_response.service]


# ----------------------------------------------------------------------------------------------- TLS


def test_tls_server_refuses_plaintext_and_untrusted_clients(tls_scoring: Any, certs: Certs,
                                                            open_channel: Callable[..., grpc.Channel]) -> None:
    target = tls_scoring.target
    assert health(open_channel(target, ca_file=str(certs.ca.cert))) == health_pb2.HealthCheckResponse.SERVING
    assert code_of(lambda: health(open_channel(target)))[0] == grpc.StatusCode.UNAVAILABLE
    assert code_of(lambda: health(open_channel(target, ca_file=str(certs.other_ca.cert))))[0] == \
        grpc.StatusCode.UNAVAILABLE
    # the name checked against the certificate can be given instead of the target's host
    assert health(open_channel(target, ca_file=str(certs.ca.cert), server_name="localhost")) == \
        health_pb2.HealthCheckResponse.SERVING
    assert code_of(lambda: health(open_channel(target, ca_file=str(certs.ca.cert), server_name="other.example")))[0] \
        == grpc.StatusCode.UNAVAILABLE


def test_an_expired_server_certificate_fails_the_handshake(bare_server: Callable[..., Service], certs: Certs,
                                                           open_channel: Callable[..., grpc.Channel]) -> None:
    service = bare_server(tls_cert_file=str(certs.expired.cert), tls_key_file=str(certs.expired.key))
    code, _ = code_of(lambda: health(open_channel(f"127.0.0.1:{service.port}", ca_file=str(certs.ca.cert))))
    assert code == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_needs_a_client_certificate_from_the_trusted_ca(
        trained_repo: Path, start_server: Callable[..., Any], certs: Certs, customer: str,
        open_channel: Callable[..., grpc.Channel]) -> None:
    from services.recommendation.__main__ import make_service

    server = start_server(make_service, trained_repo, wait=False, tls_cert_file=str(certs.server.cert),
                          tls_key_file=str(certs.server.key), tls_client_ca_file=str(certs.ca.cert))
    with_cert = open_channel(server.target, ca_file=str(certs.ca.cert), cert_file=str(certs.client.cert),
                             key_file=str(certs.client.key))
    wait_serving(with_cert)
    answer = recommendation_pb2_grpc.RecommendationServiceStub(with_cert).Recommend(
        recommendation_pb2.RecommendRequest(customer_id=customer, k=3), timeout=TIMEOUT_S)
    assert len(answer.items) == 3

    without = open_channel(server.target, ca_file=str(certs.ca.cert))
    assert code_of(lambda: health(without))[0] == grpc.StatusCode.UNAVAILABLE
    rogue = open_channel(server.target, ca_file=str(certs.ca.cert), cert_file=str(certs.rogue_client.cert),
                         key_file=str(certs.rogue_client.key))
    assert code_of(lambda: health(rogue))[0] == grpc.StatusCode.UNAVAILABLE


def test_tls_files_are_checked_at_start(tmp_path: Path, certs: Certs) -> None:
    def build(**overrides: Any) -> None:
        build_service("127.0.0.1:0", [], ServiceSettings(state_dir=tmp_path, **overrides))

    with pytest.raises(SecurityConfigError, match="cannot read the TLS certificate file"):
        build(tls_cert_file=str(tmp_path / "missing.crt"), tls_key_file=str(certs.server.key))
    with pytest.raises(SecurityConfigError, match="both tls_cert_file and tls_key_file"):
        build(tls_cert_file=str(certs.server.cert))
    with pytest.raises(SecurityConfigError, match="matching private key"):
        build(tls_cert_file=str(certs.server.cert), tls_key_file=str(certs.client.key))
    garbled = tmp_path / "garbled.pem"
    garbled.write_text("not a certificate")
    with pytest.raises(SecurityConfigError, match="client CA file"):
        build(tls_cert_file=str(certs.server.cert), tls_key_file=str(certs.server.key), tls_client_ca_file=str(garbled))


# -------------------------------------------------------------------------------------------- tokens


def test_tokens_and_their_scopes(tls_scoring: Any, tls_recommendation: Any, certs: Certs, customer: str,
                                 open_channel: Callable[..., grpc.Channel], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ca = str(certs.ca.cert)

    def scoring(token: str | None) -> scoring_pb2_grpc.ScoringServiceStub:
        return scoring_pb2_grpc.ScoringServiceStub(open_channel(tls_scoring.target, ca_file=ca, token=token))

    def recommendation(token: str | None) -> recommendation_pb2_grpc.RecommendationServiceStub:
        return recommendation_pb2_grpc.RecommendationServiceStub(
            open_channel(tls_recommendation.target, ca_file=ca, token=token))

    score = scoring_pb2.ScoreRequest(customers=[common_pb2.CustomerRef(customer_id=customer)])
    recommend = recommendation_pb2.RecommendRequest(customer_id=customer, k=3)

    code, message = code_of(lambda: scoring(None).Score(score, timeout=TIMEOUT_S))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "authorization: Bearer" in message
    code, message = code_of(lambda: scoring(WRONG).Score(score, timeout=TIMEOUT_S))
    assert code == grpc.StatusCode.UNAUTHENTICATED and WRONG not in message
    garbled = scoring_pb2_grpc.ScoringServiceStub(open_channel(tls_scoring.target, ca_file=ca))
    code, _ = code_of(lambda: garbled.Score(score, timeout=TIMEOUT_S, metadata=[("authorization", f"Basic {ADMIN}")]))
    assert code == grpc.StatusCode.UNAUTHENTICATED

    code, message = code_of(lambda: scoring(CHECKOUT).Score(score, timeout=TIMEOUT_S))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "'checkout'" in message and "tenure.v1.ScoringService/Score" in message and CHECKOUT not in message
    # a streaming method is refused the same way, before its requests are read
    chunks = iter([scoring_pb2.ScoreChunk(chunk_id=1, customer_ids=[customer])])
    code, _ = code_of(lambda: list(scoring(CHECKOUT).StreamScore(chunks, timeout=TIMEOUT_S)))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = code_of(lambda: recommendation(CHECKOUT).RecordFeedback(recommendation_pb2.RecordFeedbackRequest(),
                                                                      timeout=TIMEOUT_S))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = code_of(lambda: recommendation(ANALYST).Recommend(recommend, timeout=TIMEOUT_S))
    assert code == grpc.StatusCode.PERMISSION_DENIED

    assert len(recommendation(CHECKOUT).Recommend(recommend, timeout=TIMEOUT_S).items) == 3
    assert len(recommendation(ADMIN).Recommend(recommend, timeout=TIMEOUT_S).items) == 3
    assert scoring(ANALYST).Score(score, timeout=TIMEOUT_S).results[0].customer_id == customer  # token_sha256 entry
    ready = inference_pb2_grpc.GRPCInferenceServiceStub(open_channel(tls_scoring.target, ca_file=ca, token=ANALYST))
    assert ready.ServerReady(inference_pb2.ServerReadyRequest(), timeout=TIMEOUT_S).ready

    # health and (by default) reflection stay open to callers without a token
    anonymous = open_channel(tls_scoring.target, ca_file=ca)
    assert health(anonymous) == health_pb2.HealthCheckResponse.SERVING
    assert "tenure.v1.ScoringService" in list_services(anonymous)

    for secret in (CHECKOUT, ANALYST, ADMIN, WRONG):
        assert secret not in caplog.text
    assert "PERMISSION_DENIED" in caplog.text  # the refusals are logged, by token name


def test_tokens_over_plaintext_and_closed_reflection(bare_server: Callable[..., Service], tokens_file: Path,
                                                     open_channel: Callable[..., grpc.Channel]) -> None:
    service = bare_server(tokens_file=str(tokens_file), reflection_open=False)
    target = f"127.0.0.1:{service.port}"
    health(open_channel(target))  # answers (this server has no models: NOT_SERVING) without a token
    assert code_of(lambda: list_services(open_channel(target)))[0] == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(lambda: list_services(open_channel(target, token=CHECKOUT)))[0] == grpc.StatusCode.PERMISSION_DENIED
    assert "grpc.health.v1.Health" in list_services(open_channel(target, token=ADMIN))


def test_tokens_file_changes_apply_without_a_restart(bare_server: Callable[..., Service], tmp_path: Path,
                                                    open_channel: Callable[..., grpc.Channel]) -> None:
    path = tmp_path / "tokens.json"
    entry = {"name": "ops", "token": CHECKOUT, "allow": ["tenure.v1.ScoringService/*"]}
    path.write_text(json.dumps({"tokens": [entry]}))
    service = bare_server(tokens_file=str(path), reflection_open=False)
    channel = open_channel(f"127.0.0.1:{service.port}", token=CHECKOUT)
    assert code_of(lambda: list_services(channel))[0] == grpc.StatusCode.PERMISSION_DENIED
    path.write_text(json.dumps({"tokens": [{**entry, "allow": ["grpc.reflection.v1alpha.ServerReflection/*"]}]}))
    deadline = time.monotonic() + 60  # a safety net: the file is looked at again about every second
    while True:
        try:
            assert list_services(channel)
            break
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED and time.monotonic() < deadline
            time.sleep(0.2)


def test_a_broken_edit_of_the_tokens_file_keeps_the_tokens_in_force(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": [{"name": "ops", "token": CHECKOUT, "allow": ["*"]}]}))
    table = TokenTable(str(path))
    table.CHECK_EVERY_S = 0.0
    path.write_text("{ not json")
    found = table.find(CHECKOUT)
    assert found is not None and found.name == "ops" and table.find(WRONG) is None
    assert "keeping the previous tokens" in caplog.text


def test_binding_beyond_loopback_unprotected_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    service = build_service("0.0.0.0:0", [], ServiceSettings(state_dir=tmp_path))
    service.server.stop(0)
    assert "without TLS or tokens" in caplog.text


def test_clients_read_tls_and_token_from_the_environment(tls_recommendation: Any, certs: Certs, customer: str,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `tenure health`, the demo and the segmentation service's calls to recommendation use."""
    token_file = tmp_path / "token"
    token_file.write_text(CHECKOUT + "\n")
    monkeypatch.setenv("TENURE_TLS_CA_FILE", str(certs.ca.cert))
    monkeypatch.setenv("TENURE_TLS_SERVER_NAME", "localhost")
    monkeypatch.setenv("TENURE_TOKEN_FILE", str(token_file))
    with client_channel(tls_recommendation.target) as channel:
        answer = recommendation_pb2_grpc.RecommendationServiceStub(channel).Recommend(
            recommendation_pb2.RecommendRequest(customer_id=customer, k=2), timeout=TIMEOUT_S)
    assert len(answer.items) == 2
    from services.demo import wait_serving as cli_wait_serving

    cli_wait_serving(tls_recommendation.target, timeout_s=60)
    monkeypatch.setenv("TENURE_TOKEN_FILE", str(tmp_path / "absent"))
    with pytest.raises(SecurityConfigError, match="cannot read the token file"):
        client_channel(tls_recommendation.target)


def test_the_360_view_reaches_a_tls_recommendation_service_with_its_token(
        trained_repo: Path, start_server: Callable[..., Any], tls_recommendation: Any, certs: Certs, customer: str,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_channel: Callable[..., grpc.Channel]) -> None:
    from services.segmentation.__main__ import make_service

    token_file = tmp_path / "token"
    token_file.write_text(CHECKOUT)
    monkeypatch.setenv("TENURE_TLS_CA_FILE", str(certs.ca.cert))
    monkeypatch.setenv("TENURE_TOKEN_FILE", str(token_file))
    server = start_server(make_service, trained_repo, wait=False, recommendation_target=tls_recommendation.target)
    monkeypatch.delenv("TENURE_TLS_CA_FILE")  # the segmentation server itself is plaintext
    channel = open_channel(server.target)
    wait_serving(channel)
    view = segmentation_pb2_grpc.SegmentationServiceStub(channel).GetCustomer360(
        segmentation_pb2.Customer360Request(customer_id=customer, recommendations=3), timeout=TIMEOUT_S)
    assert not view.recommendations_error and len(view.recommendations) == 3


@pytest.mark.parametrize("content, needle", [
    ("{", "not valid JSON"),
    ('{"tokens": []}', "at least one token"),
    ('{"tokens": [{"name": "a", "token": "short", "allow": ["*"]}]}', "at least 16 characters"),
    ('{"tokens": [{"name": "a", "token": "' + "x" * 20 + '", "allow": ["Score"]}]}', "package.Service/Method"),
    ('{"tokens": [{"name": "a", "token_sha256": "abc", "allow": ["*"]}]}', "64 hex digits"),
    ('{"tokens": [{"name": "a", "token": "' + "x" * 20 + '", "token_sha256": "' + "0" * 64 + '", "allow": ["*"]}]}',
     "exactly one of"),
    ('{"tokens": [{"name": "a", "token": "' + "x" * 20 + '", "allow": ["*"]}, '
     '{"name": "b", "token": "' + "x" * 20 + '", "allow": ["*"]}]}', "same token as token 'a'"),
])
def test_a_bad_tokens_file_stops_the_server(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(SecurityConfigError, match=needle) as err:
        build_service("127.0.0.1:0", [], ServiceSettings(state_dir=tmp_path, tokens_file=str(path)))
    assert "x" * 20 not in str(err.value)


# --------------------------------------------------------------------------------- path containment

BAD_NAMES = ["../x", "/etc/passwd", "a\x00b", "job\n", ".hidden", "a/b", "..", "n" * (4 << 20)]


def test_safe_name_accepts_repository_names_only() -> None:
    for good in ("churn", "lookalike-vip_2", "20250101T000000123456Z", "a.b"):
        assert safe_name(good, "model name") == good
    for bad in BAD_NAMES:
        with pytest.raises(InvalidInput, match="expected 1-128 letters, digits"):
            safe_name(bad, "model name")


def test_a_manifest_cannot_name_files_outside_its_version(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("outside")
    version = tmp_path / "models" / "churn" / "20250101T000000000000Z"
    version.mkdir(parents=True)
    digest = hashlib.sha256(b"outside").hexdigest()
    (version / "manifest.json").write_text(json.dumps({"name": "churn", "kind": "lightgbm", "files": {"../../../secret": digest}}))
    with pytest.raises(ArtifactError, match="expected a plain file name"):
        load_manifest(version)
    with pytest.raises(InvalidInput, match="model name"):
        write_artifact(tmp_path / "models", Manifest(name="../escape", kind="blob"), {"a.bin": b"1"})
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("bad", BAD_NAMES, ids=lambda v: repr(v[:12]))
def test_names_in_requests_cannot_leave_their_directory(bad: str, scoring_server: Any,
                                                        segmentation_server: Any, channel_to: Any) -> None:
    oip = inference_pb2_grpc.GRPCInferenceServiceStub(channel_to(scoring_server))
    seg = segmentation_pb2_grpc.SegmentationServiceStub(channel_to(segmentation_server))
    calls = [
        lambda: oip.ModelInfer(inference_pb2.ModelInferRequest(model_name=bad), timeout=TIMEOUT_S),
        lambda: oip.ModelInfer(inference_pb2.ModelInferRequest(model_name="churn", model_version=bad),
                               timeout=TIMEOUT_S),
        lambda: oip.ModelMetadata(inference_pb2.ModelMetadataRequest(name=bad), timeout=TIMEOUT_S),
        lambda: oip.ModelReady(inference_pb2.ModelReadyRequest(name=bad), timeout=TIMEOUT_S),
        lambda: oip.ModelReady(inference_pb2.ModelReadyRequest(name="churn", version=bad), timeout=TIMEOUT_S),
        lambda: seg.StartLookalikeJob(segmentation_pb2.LookalikeJobRequest(name=bad, seed_customer_ids=["x"] * 20),
                                      timeout=TIMEOUT_S),
        lambda: list(seg.StreamLookalikeAudience(segmentation_pb2.LookalikeAudienceRequest(size=5, model=bad),
                                                 timeout=TIMEOUT_S)),
    ]
    for call in calls:
        code, message = code_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, message
        assert "letters, digits" in message and len(message) <= 1000
