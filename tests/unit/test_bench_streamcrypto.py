"""The stream crypto benchmark (``make bench``, ``--only streamcrypto``) keeps working.

Like tests/integration/test_bench_smoke.py, this checks that the benchmark runs and reports
the figures docs/performance.md relies on, not the figures themselves (they depend on the
machine); the one comparison asserted is structural, not timed: a signed batch's proof is
larger on the wire than a bare signature, and grows with the batch.
"""

from __future__ import annotations

from bench import streamcrypto


def test_stream_crypto_benchmark_reports_every_figure() -> None:
    report = streamcrypto.run(quick=True)
    values = {row.metric: row.value for row in report.rows}
    for n in streamcrypto.BATCH_SIZES:
        assert values[f"sign + verify per item, batch of {n}"] > 0
        assert values[f"one signature each / batch of {n}"] > 0
    assert values["sign + verify per item, one signature each (today)"] > 0
    assert values["HPKE seal + open per message, 1 KiB (today)"] > 0
    assert values["epoch AEAD seal + open per item, 1 KiB"] > 0
    assert values["epoch start + accept (once per epoch)"] > 0
    assert (
        values["wire per item: proof, batch of 128"]
        > values["wire per item: proof, batch of 1"]
        > values["wire per item: signature (today)"]
    )
