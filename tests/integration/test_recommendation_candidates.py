"""The per-request candidate path (CandidateIndex) against its definition, AffinityState.candidates,
on the trained repository's real snapshot: same candidates, sources and pair features, bit for bit."""
from __future__ import annotations

import numpy as np

from services.recommendation.candidates import CandidateIndex
from tenure.features import customer_columns
from tenure.store import FeatureSnapshot


def test_candidate_index_equals_affinity_candidates(snapshot: FeatureSnapshot) -> None:
    aff = snapshot.affinity
    index = CandidateIndex(snapshot)
    P = aff.n_products
    rng = np.random.default_rng(5)
    orders = snapshot.X[:, snapshot.feature_names.index("orders_total")]
    rows = np.r_[np.argsort(-orders)[:10], rng.choice(len(snapshot.customer_ids), 60, replace=False)]
    categories = sorted(set(snapshot.catalog.categories.tolist()) - {""})
    for i, row in enumerate(rows):
        exclude = np.zeros(P, bool)
        if i % 3 == 1:
            exclude[rng.choice(P, 20)] = True
        if i % 3 == 2 and categories:
            exclude |= snapshot.catalog.categories != categories[i % len(categories)]
        boost = None
        if i % 4 == 3:  # a checkout basket
            boost = np.zeros(P, np.float32)
            boost[rng.choice(P, 3)] = 2.0
        n = (200, 5, P, P + 7)[i % 4] if i % 5 == 0 else 200
        cust = customer_columns(snapshot.feature_names, snapshot.X[row:row + 1], snapshot.space.categories)
        want_cand, want_src, want_X = aff.candidates(aff.hist[row].toarray(), aff.hist_last[row].toarray(), cust, n,
                                                     exclude[None], None if boost is None else boost[None])
        cand, src, X = index.candidates(int(row), n, exclude, boost)
        np.testing.assert_array_equal(cand, want_cand[0])
        np.testing.assert_array_equal(src, want_src[0])
        assert X.dtype == want_X.dtype == np.float32
        np.testing.assert_array_equal(X.view(np.uint32), want_X.view(np.uint32))


def test_everything_excluded_leaves_only_empty_slots(snapshot: FeatureSnapshot) -> None:
    index = CandidateIndex(snapshot)
    cand, src, X = index.candidates(0, 200, np.ones(snapshot.affinity.n_products, bool))
    assert (cand == -1).all() and (src == 0).all() and len(X) == min(200, snapshot.affinity.n_products)
