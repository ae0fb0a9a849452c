"""The demo at a tiny size: both parts run, the results agree, and its files are removed."""
from benchmarks import demo


def test_demo_runs_agrees_and_cleans_up(tmp_path, capsys):
    demo.main(["--n", "3000", "--d", "24", "--dir", str(tmp_path), "--mixture-n", "2000", "--mixture-d", "4",
               "--components", "3", "--mixture-iter", "3"])
    printed = capsys.readouterr().out
    agreement = printed.split("results agree")[1].splitlines()[1:3]
    assert [line.split()[0] for line in agreement] == ["quadform", "weighted_gram"]
    assert all(line.endswith("ok") for line in agreement), agreement
    assert "GB/s" in printed and "demo finished in" in printed
    assert list(tmp_path.iterdir()) == []


def test_demo_says_when_x_is_larger_than_ram(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo, "total_ram", lambda: 1 << 16)
    demo.main(["--n", "2000", "--d", "16", "--dir", str(tmp_path), "--skip-mixture"])
    printed = capsys.readouterr().out
    assert "X is larger than RAM" in printed and "read X once into the page cache" not in printed
    assert all(line.endswith("ok") for line in printed.split("results agree")[1].splitlines()[1:3])
