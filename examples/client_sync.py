from tenure.client import RecommendationClient, ScoringClient, SegmentationClient, TenureRpcError, where

with ScoringClient("127.0.0.1:50051") as scoring, RecommendationClient("127.0.0.1:50052") as rec, \
        SegmentationClient("127.0.0.1:50053") as seg:
    # An audience as a DataFrame: the 10% most likely to churn, highest churn first
    audience = seg.export_audience(where("churn", "top%", 10), order_by="churn", limit=20)
    print(f"{audience.attrs['count']} of {audience.attrs['base']} customers; the first 20:")
    print(audience[["customer_id", "churn", "rfm_segment", "lifecycle"]])

    # Every prediction, one row per id; an unknown id fails its own row only (the `error` column)
    predictions = scoring.predict([*audience.customer_id[:3], "nobody"])
    print(predictions[["customer_id", "churn_probability", "churn_band", "next_purchase_date", "error"]])

    # Recommendations (typed proto answers) and the feedback on them
    cid = audience.customer_id.iloc[0]
    shown = rec.recommend(cid, k=3)
    for item in shown.items:
        print(item.rank, item.product.name, f"{item.score:.3f}")
    ack = rec.record_feedback([{"customer_id": cid, "product_id": shown.items[0].product.product_id,
                                "kind": "click", "position": 1, "request_id": shown.request_id}])
    print(f"{ack.recorded} feedback event recorded")

    # A failed call raises TenureRpcError with the gRPC code and the server's message
    try:
        seg.customer_360("nobody")
    except TenureRpcError as err:
        print(err.code.name, "-", err.details)
