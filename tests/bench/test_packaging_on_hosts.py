"""The table of the packaging benchmark on emulated hosts (bench/packaging/on_hosts.py): values in, the
verdicts out."""

from __future__ import annotations

import argparse

from tests.bench.loading import load_bench

bench = load_bench("packaging/on_hosts.py", "bench_packaging_on_hosts")
ARGS = argparse.Namespace(
    titles=4, title_seconds=20.0, long_seconds=120.0, chunk_seconds=30, control_cpus=None
)


def rows(text: str) -> dict[str, list[str]]:
    table = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in table[1:]}


def test_each_target_is_judged_on_its_own_measure() -> None:
    batch = [bench.Run(1, 100.0, ["a"]), bench.Run(2, 52.0, ["b"])]  # 1.92x
    long = [bench.Run(1, 200.0, ["c"], 1_000_000, 40.0), bench.Run(2, 125.0, ["d"], 1_040_000, 39.8, True)]
    table = rows(bench.section(ARGS, batch, long, "test machine"))
    assert table["batch: seconds to package all"] == ["100.0", "52.0", "1.92x", ">= 1.8x", "met"]
    assert table["long title: seconds to ready (2 hosts: chunked over both)"][2:] == [
        "1.60x",
        ">= 1.7x",
        "NOT MET",
    ]
    assert table["long title: output bytes"] == ["1,000,000", "1,040,000", "+4.0%", "within 3%", "NOT MET"]
    assert table["long title: top rendition PSNR vs source, dB"] == [
        "40.00",
        "39.80",
        "-0.20 dB",
        "within 0.5 dB",
        "met",
    ]


def test_a_title_the_origin_did_not_chunk_says_so_and_no_long_run_means_no_long_rows() -> None:
    batch = [bench.Run(1, 100.0, ["a"]), bench.Run(2, 70.0, ["b"])]
    long = [bench.Run(1, 200.0, ["c"], 1_000_000, 40.0), bench.Run(2, 199.0, ["d"], 1_000_000, 40.0, False)]
    table = rows(bench.section(ARGS, batch, long, "test machine"))
    assert table["batch: seconds to package all"][-1] == "NOT MET"
    assert "long title: seconds to ready (2 hosts: one process: the origin did not chunk it)" in table
    assert list(rows(bench.section(ARGS, batch, [], "test machine"))) == ["batch: seconds to package all"]


def test_the_cpu_each_run_spent_is_listed_by_where_it_ran() -> None:
    batch = [
        bench.Run(1, 50.0, ["a"], worker_cpu_s=48.0, control_cpu_s=5.0),
        bench.Run(2, 25.0, ["b"], worker_cpu_s=49.0, control_cpu_s=6.5),
    ]
    text = bench.section(ARGS, batch, [], "test machine")
    assert "- batch on 1 host: worker hosts 48.0, the rest 5.0 (0.10 of a core)" in text
    assert "- batch on 2 hosts: worker hosts 49.0, the rest 6.5 (0.26 of a core)" in text
    assert "the Ray head on the bridge address, unpinned." in text
    pinned = bench.section(
        argparse.Namespace(**{**vars(ARGS), "control_cpus": "0"}), batch, [], "test machine"
    )
    assert "the Ray head on the bridge address, pinned to core 0." in pinned
