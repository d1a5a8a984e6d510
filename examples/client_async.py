import asyncio

from tenure.client import AsyncScoringClient, AsyncSegmentationClient


async def main() -> None:
    async with AsyncScoringClient("127.0.0.1:50051") as scoring, \
            AsyncSegmentationClient("127.0.0.1:50053") as seg:
        audience = await seg.export_audience(order_by="churn", limit=40)
        ids = list(audience.customer_id)
        # eight Predict calls in flight at once, and the segments of the same customers meanwhile
        *batches, segments = await asyncio.gather(
            *(scoring.predict(ids[i:i + 5]) for i in range(0, len(ids), 5)), seg.get_segments(ids))
        for batch in batches:
            print(batch[["customer_id", "churn_probability", "clv_predicted"]].to_string(header=False))
        print(segments.rfm_segment.value_counts())


asyncio.run(main())
