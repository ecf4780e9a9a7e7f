"""The monthly review and the cost model, read from ClickHouse through aipulse_stream.readside.

    aipulse report --from -30d --out review.html     (aipulse_review.report)
    aipulse cost-model --volume 10000/day [--json]   (aipulse_review.cost_model)
"""
