"""The benchmark at a tiny size: every method runs and agrees with gmmkernels, and the
JSON it writes holds the fields the README's table is read from. (No timings are asserted.)"""
import json

import numpy as np

from benchmarks import cli as bench
from benchmarks import datafiles


def test_core_suite_runs_and_methods_agree(tmp_path, capsys):
    path = tmp_path / "bench.json"
    bench.main(["--n", "1500", "--d", "40", "--repeat", "1", "--gemm-size", "200", "--dtype", "both",
                "--dir", str(tmp_path), "--json", str(path)])
    printed = capsys.readouterr().out
    result = json.loads(path.read_text())
    assert "float32 quadform %.3f s vs float64" % next(
        r["seconds"] for r in result["results"]
        if r["kernel"] == "quadform" and r["method"] == "gmmkernels" and r["dtype"] == "float32") in printed
    for dtype in ("float64", "float32"):
        check_records([r for r in result["results"] if "skipped" not in r and r["dtype"] == dtype], dtype, printed)


def check_records(records, dtype, printed):
    methods = {(r["kernel"], r["method"]) for r in records}
    for kernel in ("quadform", "weighted_gram"):
        assert (kernel, "gmmkernels") in methods
        assert (kernel, "blocked numpy") in methods
        assert (kernel, "naive numpy") in methods
    tolerance = 1e-12 if dtype == "float64" else 1e-5
    for r in records:
        assert r["seconds"] > 0 and r["peak_bytes"] >= 0
        if r["method"] != "gmmkernels":
            assert r["max_rel_diff"] < tolerance, r
    for r in records:
        # The share of the limit is taken against the GEMM timed beside each call.
        assert len(r["paired_gemm_gflops"]) == 1 and r["paired_gemm_gflops"][0] > 0
        flops = r["gflops"] * r["seconds"]
        np.testing.assert_allclose(r["percent_of_gemm"],
                                   100 * flops / r["paired_gemm_gflops"][0] / r["paired_seconds"][0], rtol=1e-9)
    for kernel in ("quadform", "weighted_gram"):
        assert "%s %s:" % (dtype, kernel) in printed
    # weighted_gram's necessary work counts only the rows of nonzero weight.
    wg = next(r for r in records if r["kernel"] == "weighted_gram" and r["method"] == "gmmkernels")
    qf = next(r for r in records if r["kernel"] == "quadform" and r["method"] == "gmmkernels")
    nonzero = 1500 - int(round(0.3 * 1500))
    np.testing.assert_allclose(wg["gflops"] * wg["seconds"], nonzero * 40 * 40 / 1e9, rtol=1e-9)
    np.testing.assert_allclose(qf["gflops"] * qf["seconds"], 1500 * 40 * 40 / 1e9, rtol=1e-9)


def test_out_of_core_suite_checks_its_results_and_removes_its_file(tmp_path, capsys):
    path = tmp_path / "bench.json"
    bench.main(["--kernels", "out-of-core", "--n", "3000", "--d", "48", "--dtype", "float64", "--gemm-size", "200",
                "--dir", str(tmp_path), "--json", str(path)])
    printed = capsys.readouterr().out
    records = json.loads(path.read_text())["results"]
    assert [r["kernel"] for r in records] == ["out-of-core quadform", "out-of-core weighted_gram"]
    for r in records:
        assert r["max_rel_diff"] < 1e-12, r
        assert r["sequential_read_gb_per_s"] > 0 and r["paired_gemm_gflops"] > 0
        np.testing.assert_allclose(r["compute_seconds"], 3000 * 48 * 48 / (r["paired_gemm_gflops"] * 1e9), rtol=1e-9)
        np.testing.assert_allclose(r["percent_of_limit"],
                                   100 * max(r["compute_seconds"], r["read_seconds"]) / r["seconds"], rtol=1e-9)
    assert "ok" in printed.split("results: quadform on")[1].splitlines()[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]


def test_out_of_core_suite_refuses_a_file_the_disk_cannot_hold(tmp_path, monkeypatch):
    monkeypatch.setattr(datafiles, "free_bytes", lambda directory: 1 << 20)
    try:
        bench.main(["--kernels", "out-of-core", "--n", "3000", "--d", "48", "--dir", str(tmp_path), "--json", ""])
    except SystemExit as e:
        assert "not enough disk space" in str(e) and "--n" in str(e)
    else:
        raise AssertionError("no error for a disk that cannot hold X")
    assert list(tmp_path.iterdir()) == []


def test_precisions_suite_agrees_with_single_calls_and_numpy(tmp_path, capsys):
    path = tmp_path / "bench.json"
    bench.main(["--kernels", "precisions", "--n", "2000", "--d", "30", "--components", "7", "--gemm-size", "200",
                "--dir", str(tmp_path), "--json", str(path)])
    printed = capsys.readouterr().out
    records = {r["kernel"]: r for r in json.loads(path.read_text())["results"]}
    assert set(records) == {"precisions quadform_many", "precisions K quadform calls",
                            "precisions blocked numpy, one Q"}
    assert records["precisions K quadform calls"]["max_rel_diff"] < 1e-12
    assert records["precisions blocked numpy, one Q"]["max_rel_diff"] < 1e-12
    blocked = records["precisions blocked numpy, one Q"]
    np.testing.assert_allclose(blocked["stated_seconds_for_all"], 7 * blocked["seconds"], rtol=1e-12)
    assert all(r["components"] == 7 for r in records.values())
    assert "MISMATCH" not in printed and sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]
