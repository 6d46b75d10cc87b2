"""The benchmark command runs end to end (tiny sizes; the figures themselves are for `python -m bench`)."""

import json

from bench.__main__ import main


def test_the_benchmark_prints_its_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["--repeat", "1", "--faults", "8", "--rounds", "1000", "--no-suite", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    for row in ("throughput, no budget", "throughput, with a budget", "fault: BPF extable fixup", "JIT of 1,000",
                "arena loop, JITed bytecode", "BPF object load",
                "fault: scratch recovery",
                "fault: generic extable", "machine + load + call", "alloc all 4 GiB of pages", "stepi, Python API"):
        assert row in table
    doc = json.loads(out.read_text())
    assert doc["throughput"]["ratio"]["median"] > 0 and doc["faults"]["scratch"]["ratio_to_bare"]["median"] > 0
    assert doc["scale"]["rss_growth_of_4gib"] < 0.02
