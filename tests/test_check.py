"""podnet check: expectations a CI job relies on, and its exit code."""

from pathlib import Path


from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
SHOP = str(ROOT / "examples" / "shop")


run = run_cli


def test_the_shop_expectations_hold(capsys):
    code, out, err = run(capsys, "check", "-f", SHOP, "--expect", str(ROOT / "examples" / "shop-expectations.yaml"))
    assert code == 0, out + err
    assert "FAIL" not in out and "7 expectations hold, 0 fail" in out


def test_a_failing_expectation_exits_1_and_says_which_pairs(tmp_path, capsys):
    expect = tmp_path / "e.yaml"
    expect.write_text("expectations:\n- {from: data/redis-0, to: backend.shop:80, reachable: true}\n")
    code, out, _ = run(capsys, "check", "-f", SHOP, "--expect", str(expect))
    assert code == 1
    assert f"FAIL  {expect}:2  data/redis-0 can reach backend.shop:80" in out
    assert "isolated by" in out


def test_unknown_field_in_expectations_is_one_clear_error(tmp_path, capsys):
    expect = tmp_path / "e.yaml"
    expect.write_text("expectations:\n- {form: x, to: y, reachable: true}\n")
    code, _, err = run(capsys, "check", "-f", SHOP, "--expect", str(expect))
    assert code == 1 and f"{expect}:2: expectation 1: unknown field 'form'" in err


def test_json_report(tmp_path, capsys):
    import json

    expect = tmp_path / "e.yaml"
    expect.write_text("expectations:\n- {resolves: nosuch.shop, from: shop/frontend}\n")
    code, out, _ = run(capsys, "check", "-f", SHOP, "--expect", str(expect), "-o", "json")
    report = json.loads(out)
    assert code == 1 and report["failed"] == 1 and report["results"][0]["passed"] is False
