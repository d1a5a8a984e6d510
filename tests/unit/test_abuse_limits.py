"""The bounds behind the abuse tests (tests/integration/test_abuse.py), as plain logic: client
messages without server paths, the per-call impression cap, the bounded recently-shown index, and
CSV encodings that are said, never guessed."""
from __future__ import annotations

import dataclasses
import gzip
import time
from pathlib import Path

import grpc
import pytest

from services.core.errors import status_for, strip_paths
from tenure.data import CANONICAL, load_customers, load_shop
from tenure.errors import ArtifactError, DataError, InvalidInput, TooLarge, UnknownCustomer
from tenure.feedback import IMPRESSION, MAX_IMPRESSIONS_PER_CUSTOMER, FeedbackEvent, FeedbackStore, check_events

NOW = float(int(time.time()))


# -- messages to clients -------------------------------------------------------------------------------

@pytest.mark.parametrize(("message", "expected"), [
    ("model 'churn': no valid version (/srv/tenure/models/churn/20261123T140000Z: model.onnx is missing)",
     "model 'churn': no valid version (.../churn/20261123T140000Z: model.onnx is missing)"),
    ("not in the repository /home/shop/models: train first", "not in the repository .../shop/models: train first"),
    ("cannot read '/etc/tenure/token'", "cannot read '.../tenure/token'"),
    ("expected 1/2 of http://example.com/x and ./relative/path", "expected 1/2 of http://example.com/x and "
     "./relative/path"),
])
def test_absolute_paths_are_shortened(message: str, expected: str) -> None:
    assert strip_paths(message) == expected


def test_status_for_strips_paths_and_keeps_the_code() -> None:
    code, message = status_for(ArtifactError("/var/lib/tenure/models/features/V1/snapshot.npz: sha256 differs"))
    assert code == grpc.StatusCode.UNAVAILABLE and message == ".../V1/snapshot.npz: sha256 differs"


# -- feedback --------------------------------------------------------------------------------------------

def test_impressions_per_customer_and_call_are_capped() -> None:
    events = [FeedbackEvent("c1", f"p{i}", IMPRESSION, 1, "", NOW) for i in range(MAX_IMPRESSIONS_PER_CUSTOMER + 5)]
    events += [FeedbackEvent("c2", "p1", IMPRESSION, 1, "", NOW), FeedbackEvent("ghost", "p1", IMPRESSION, 1, "", NOW),
               FeedbackEvent("c1", "p1", 2, 1, "", NOW)]  # a click is not an impression: recorded
    products = {f"p{i}" for i in range(200)}
    good, failures = check_events(events, NOW, products, customers={"c1", "c2"})
    assert len(good) == MAX_IMPRESSIONS_PER_CUSTOMER + 2
    n = MAX_IMPRESSIONS_PER_CUSTOMER
    assert sorted(failures) == [*range(n, n + 5), n + 6]
    assert isinstance(failures[n], TooLarge) and isinstance(failures[n + 6], UnknownCustomer)


def test_the_index_stays_bounded_and_recently_shown_is_capped(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "f.sqlite", index_days=7, max_entries=500, max_products_per_customer=40)
    # One customer shown 100 products, one at a time (the newest last).
    store.record([FeedbackEvent("c0", f"p{i:03d}", IMPRESSION, 1, "", NOW - 100 + i) for i in range(100)], NOW)
    assert store.index_size() == (1, 40)
    shown = store.recently_shown("c0", NOW, 7, limit=10)
    assert shown == [f"p{i:03d}" for i in range(99, 89, -1)]  # the ten most recent, most recent first
    # Many customers: the least recently updated ones leave the index, the file keeps every event.
    for c in range(1, 60):
        store.record([FeedbackEvent(f"c{c}", f"p{i}", IMPRESSION, 1, "", NOW) for i in range(20)], NOW)
    customers, entries = store.index_size()
    assert entries <= 500 and customers == entries // 20 and store.evicted > 0
    assert store.recently_shown("c59", NOW, 7) and store.recently_shown("c1", NOW, 7) == []
    assert len(store.read_events()) == 100 + 59 * 20
    store.prune(NOW + 30 * 86_400)
    assert store.index_size() == (0, 0)


# -- encodings -------------------------------------------------------------------------------------------

def _export(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


HEADER = b"customer_id,order_id,ts,product_id,quantity,amount,category\n"
ROWS = b"".join(b"c%d,o%d,2024-01-%02d,p1,1,9.5,Books\n" % (i, i, 1 + i % 28) for i in range(40))
LATIN = b"c99,o99,2024-02-01,p1,1,9.5,Caf\xe9\n"


@pytest.mark.parametrize("name", ["export.csv", "export.csv.gz"])
def test_a_bad_byte_is_an_error_naming_line_and_offset(tmp_path: Path, name: str) -> None:
    data = HEADER + ROWS + LATIN
    path = _export(tmp_path, name, data)
    with pytest.raises(DataError) as err:
        load_shop(path)
    message = str(err.value)
    assert message == (f"{name}: line 42 (byte offset {data.index(b'Caf') + 3:,}): byte 0xe9 is not valid utf-8; if "
                       "the file is in another encoding, say which: \"encoding\": \"latin-1\" (or cp1252, ...) in the "
                       "column mapping, or --encoding")
    shop, _ = load_shop(path, mapping=dataclasses.replace(CANONICAL, encoding="latin-1"))  # when asked: read
    assert "Caf\u00e9" in set(shop.transactions["category"])


def test_utf8_with_a_bom_and_named_encodings(tmp_path: Path) -> None:
    path = _export(tmp_path, "bom.csv", b"\xef\xbb\xbf" + HEADER + ROWS + "c99,o99,2024-02-01,p1,1,9.5,Café\n".encode())
    shop, _ = load_shop(path)
    assert "Caf\u00e9" in set(shop.transactions["category"]) and shop.transactions["customer_id"].iloc[0] == "c0"
    with pytest.raises(DataError, match="unknown text encoding 'klingon'"):
        dataclasses.replace(CANONICAL, encoding="klingon")
    customers = _export(tmp_path, "customers.csv", b"customer_id,gender\nc1,f\nc2,m\xe4nnlich\n")
    with pytest.raises(DataError, match=r"customers.csv: line 3 \(byte offset 28\): byte 0xe4"):
        load_customers(customers)
    assert list(load_customers(customers, encoding="latin-1")["gender"]) == ["f", "m\u00e4nnlich"]


def test_invalid_input_is_still_invalid_argument() -> None:
    assert status_for(InvalidInput("k=0"))[0] == grpc.StatusCode.INVALID_ARGUMENT
