"""The customers file's attributes in the segmentation service: the 360-degree view and profiles.

The table (tenure.attributes.AttributeTable) is the feature snapshot's, loaded once per snapshot
version by the Predictor. A customer only the online store knows has none (an empty list).
"""
from __future__ import annotations

import numpy as np

from tenure.attributes import AttributeTable
from tenure.profile import ProfileRow
from tenure.v1 import common_pb2

ATTRIBUTE_KIND = "attribute"
"""ProfileFeature.kind of the attribute rows ("household_size", "interests=Coffee", "consent_sms=no")."""


def customer_attributes(table: AttributeTable | None, row: int) -> list[common_pb2.CustomerAttribute]:
    """The CustomerAttribute messages of snapshot row `row` (none for -1 or without a table)."""
    if table is None or row < 0:
        return []
    return [common_pb2.CustomerAttribute(**fields) for fields in table.values_of(row)]


def with_attribute_rows(rows: list[ProfileRow], table: AttributeTable | None, mask: np.ndarray,
                        top: int | None) -> list[ProfileRow]:
    """The feature rows of a profile and the attribute rows (share of each text level / set value / consent
    state in the group vs the base, the mean for numbers), most distinctive first, at most `top`."""
    if table is None:
        return rows
    extra = [ProfileRow(feature=r["feature"], kind=ATTRIBUTE_KIND, group_mean=r["group_mean"],
                        base_mean=r["base_mean"], index=r["index"], smd=float(r["smd"]),
                        distinctiveness=abs(float(r["smd"])), group_known=r["group_known"],
                        base_known=r["base_known"]) for r in table.profile(mask)]
    merged = sorted(rows + extra, key=lambda r: -r.distinctiveness)  # stable: ties keep features first
    return merged[:top] if top else merged
