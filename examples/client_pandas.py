import numpy as np
import pandas as pd

from tenure.client import InferenceClient, ScoringClient, SegmentationClient

with ScoringClient("127.0.0.1:50051") as scoring, SegmentationClient("127.0.0.1:50053") as seg:
    # Bulk scoring of a DataFrame of ids (StreamScore, 10,000 rows a chunk): one row per input row
    ids = seg.export_audience(limit=2_000).customer_id
    scored = scoring.score_frame(pd.DataFrame({"customer_id": ids}))
    print(scored.churn_probability.describe())

    # A frame with every feature column (model_info().customer_features) is sent as features:
    # what if this customer had not bought for 90 more days?
    view = seg.customer_360(ids.iloc[0])
    row = {f.name: f.value for f in view.features}
    what_if = pd.DataFrame([{**row, "customer_id": "as-is"},
                            {**row, "customer_id": "90 days later", "recency_days": row["recency_days"] + 90}])
    print(scoring.score_frame(what_if)[["customer_id", "churn_probability"]])

# The Open Inference Protocol: any model of the repository on numpy arrays
with InferenceClient("127.0.0.1:50051") as oip:
    X = what_if[list(row)].to_numpy(np.float32)  # Customer360.features are in the model's feature order
    outputs = oip.infer("churn", X)  # a single array: the model's only input ("features")
    print(outputs["probabilities"][:, 1])
