"""`persotool ingest` on real and hand-made logs: values, counts, formats, privacy rules."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest
import zstandard

from persotool.stages.ingest.config import IngestConfig
from persotool.stages.ingest.run import ingest
from tests.conftest import MOVIELENS, run_cli

SPEC = {"columns": {"user": "u", "item": "i", "time": "t"}}


def _spec(**extra) -> IngestConfig:
    merged = json.loads(json.dumps(SPEC))
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] |= value
        else:
            merged[key] = value
    return IngestConfig.model_validate(merged)


def _interactions(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "interactions.parquet")


def test_movielens_preset_counts_and_features(tmp_path: Path) -> None:
    out = tmp_path / "ml"
    result = run_cli("ingest", MOVIELENS / "ratings.csv", "--preset", "movielens", "-o", out, "--no-track", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows_read"] == 100_004 and summary["rows_kept"] == 100_004
    assert summary["n_users"] == 671 and summary["n_items"] == 9066
    assert summary["time_min"] == "1995-01-09T11:46:49+00:00"
    assert summary["rejected_by_reason"] == {} and summary["duplicates_removed"] == 0
    assert summary["output"] == str(out)
    frame = _interactions(out)
    assert frame.schema["user_idx"] == pl.Int32 and frame.schema["item_idx"] == pl.Int32
    assert frame["user_idx"].max() == 670 and frame["item_idx"].max() == 9065
    first = frame.filter((pl.col("user_id") == "1") & (pl.col("item_id") == "31")).row(0, named=True)
    assert first["value"] == 2.5 and first["user_idx"] == 0
    assert first["timestamp"].isoformat() == "2009-12-14T02:52:24+00:00"
    items = pl.read_parquet(out / "items.parquet")
    toy = items.filter(pl.col("item_id") == "1").row(0, named=True)
    assert toy["title"] == "Toy Story (1995)"
    assert "genres=Animation" in toy["features"] and len(toy["features"]) == 5
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "dataset" and manifest["schema_version"] == 1
    assert (
        manifest["sources"][0]["sha256"]
        == __import__("hashlib").sha256((MOVIELENS / "ratings.csv").read_bytes()).hexdigest()
    )
    assert len(manifest["config_hash"]) == 16


def test_same_input_gives_same_digest(tmp_path: Path) -> None:
    a = ingest(_spec(), [str(_write(tmp_path / "a.csv", "u,i,t\nx,1,5\ny,2,6\n"))], tmp_path / "A")
    b = ingest(_spec(), [str(_write(tmp_path / "b.csv", "u,i,t\ny,2,6\nx,1,5\n"))], tmp_path / "B")
    assert a["dataset_digest"] == b["dataset_digest"]
    c = ingest(_spec(), [str(_write(tmp_path / "c.csv", "u,i,t\ny,2,7\nx,1,5\n"))], tmp_path / "C")
    assert c["dataset_digest"] != a["dataset_digest"]


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_multichar_delimiter_without_header(tmp_path: Path) -> None:
    src = _write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    result = run_cli("ingest", src, "--preset", "movielens", "-o", tmp_path / "o", "--no-track", "--json")
    assert result.exit_code == 0, result.stderr
    frame = _interactions(tmp_path / "o")
    assert frame.sort("user_idx", "timestamp")["item_id"].to_list() == ["1193", "661", "1193"]
    assert frame["value"].sort().to_list() == [3.0, 4.0, 5.0]


def test_flags_any_column_names_and_tsv(tmp_path: Path) -> None:
    src = _write(tmp_path / "inter.tsv", "user_id:token\titem_id:token\ttimestamp:float\n7\t9\t1700000000\n")
    result = run_cli(
        "ingest",
        src,
        "--user-col",
        "user_id:token",
        "--item-col",
        "item_id:token",
        "--time-col",
        "timestamp:float",
        "-o",
        tmp_path / "o",
        "--no-track",
    )
    assert result.exit_code == 0, result.stderr
    assert _interactions(tmp_path / "o")["user_id"].to_list() == ["7"]


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_jsonl_compressed_iso_with_zones(tmp_path: Path, compression: str) -> None:
    lines = [
        {"u": "a", "i": 1, "t": "2024-03-01T10:00:00+02:00"},
        {"u": "a", "i": 2, "t": "2024-03-01 09:00:00"},
        {"u": "b", "i": 1, "t": "2024-03-01T08:00:00Z"},
        {"u": "b", "i": 3, "t": "2024-03-01"},
    ]
    text = "".join(json.dumps(x) + "\n" for x in lines).encode()
    data = gzip.compress(text) if compression == "gzip" else zstandard.ZstdCompressor().compress(text)
    src = _write(tmp_path / ("log.jsonl" + (".gz" if compression == "gzip" else ".zst")), data)
    manifest = ingest(_spec(), [str(src)], tmp_path / "o")
    assert manifest["sources"][0]["compression"] == compression
    got = {(r["user_id"], r["item_id"]): r["timestamp"].isoformat() for r in _interactions(tmp_path / "o").to_dicts()}
    assert got == {
        ("a", "1"): "2024-03-01T08:00:00+00:00",
        ("a", "2"): "2024-03-01T09:00:00+00:00",
        ("b", "1"): "2024-03-01T08:00:00+00:00",
        ("b", "3"): "2024-03-01T00:00:00+00:00",
    }


def test_naive_times_in_given_timezone_and_strftime(tmp_path: Path) -> None:
    src = _write(tmp_path / "l.csv", "u,i,t\na,1,01/07/2024 12:30\n")
    ingest(_spec(columns={"time_format": "%d/%m/%Y %H:%M", "timezone": "Europe/Paris"}), [str(src)], tmp_path / "o")
    assert _interactions(tmp_path / "o")["timestamp"][0].isoformat() == "2024-07-01T10:30:00+00:00"


def test_parquet_glob_and_directory(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    pl.DataFrame({"u": [1, 2], "i": [10, 11], "t": [1_700_000_000_000, 1_700_000_100_000]}).write_parquet(
        folder / "a.parquet"
    )
    _write(folder / "b.csv", "u,i,t\n3,12,1700000200000\n")
    by_dir = ingest(_spec(), [str(folder)], tmp_path / "o1")
    by_glob = ingest(_spec(), [str(folder / "*")], tmp_path / "o2")
    assert by_dir["counts"]["rows_kept"] == by_glob["counts"]["rows_kept"] == 3
    assert by_dir["dataset_digest"] == by_glob["dataset_digest"]
    assert _interactions(tmp_path / "o1")["timestamp"].min().isoformat() == "2023-11-14T22:13:20+00:00"

    # a Parquet reject shows the row's mapped fields as JSON, under its row number as its line
    pl.DataFrame(
        {"u": [4, 5, 6], "i": [13, None, 15], "t": [1_700_000_300_000, 1_700_000_400_000, None]}
    ).write_parquet(folder / "c.parquet")
    ingest(_spec(max_reject_rate=1.0), [str(folder)], tmp_path / "o3")
    rejects = pl.read_parquet(tmp_path / "o3" / "rejects.parquet").sort("line")
    assert rejects.select("source", "line", "reason").rows() == [
        (str(folder / "c.parquet"), 2, "item_missing"),
        (str(folder / "c.parquet"), 3, "timestamp_missing"),
    ]
    assert [json.loads(r) for r in rejects["raw"]] == [
        {"user": 5, "item": None, "time": 1_700_000_400_000},
        {"user": 6, "item": 15, "time": None},
    ]


def test_rejects_have_line_reason_and_raw_text(tmp_path: Path) -> None:
    rows = ["u,i,t", "a,1,100", ",2,100", "b,,100", "c,3,", "d,4,yesterday", "a,1,100", "e,5,200"]
    src = _write(tmp_path / "l.csv", "\n".join(rows) + "\n")
    m = ingest(_spec(max_reject_rate=1.0), [str(src)], tmp_path / "o")
    rejects = pl.read_parquet(tmp_path / "o" / "rejects.parquet")
    assert rejects.select("line", "reason", "raw").rows() == [
        (3, "user_missing", ",2,100"),
        (4, "item_missing", "b,,100"),
        (5, "timestamp_missing", "c,3,"),
        (6, "timestamp_unparseable", "d,4,yesterday"),
    ]
    assert rejects["source"].to_list() == [str(src)] * 4
    c = m["counts"]
    assert (c["rows_read"], c["rows_kept"], c["rows_rejected"], c["duplicates_removed"]) == (7, 2, 4, 1)


def test_reject_lines_count_blank_lines_and_epoch_text_falls_back(tmp_path: Path) -> None:
    # "1.5e12" is no whole number: the integer read of the epoch column fails and the text read
    # takes over; blank lines are skipped but still count in the line numbers rejects report
    rows = ["u,i,t", "a,1,1700000000000", "", "b,2,1.5e12", "c,3,soon", "", "", "d,4,", "e,5,1700000000001"]
    src = _write(tmp_path / "l.csv", "\n".join(rows) + "\n")
    spec = _spec(columns={"time_format": "ms"}, max_reject_rate=1.0)
    m = ingest(spec, [str(src)], tmp_path / "o")
    rejects = pl.read_parquet(tmp_path / "o" / "rejects.parquet")
    assert rejects.select("line", "reason", "raw").rows() == [
        (5, "timestamp_unparseable", "c,3,soon"),
        (8, "timestamp_missing", "d,4,"),
    ]
    assert m["counts"]["blank_lines"] == 3
    frame = _interactions(tmp_path / "o")
    assert frame["user_id"].to_list() == ["a", "b", "e"]
    assert [t.isoformat() for t in frame["timestamp"]] == [
        "2023-11-14T22:13:20+00:00",
        "2017-07-14T02:40:00+00:00",
        "2023-11-14T22:13:20.001000+00:00",
    ]


def test_files_whose_epoch_columns_read_differently_combine(tmp_path: Path) -> None:
    # the first file's times read as integers, the second's as text (one is no whole number, one
    # is no number): they combine, and each reject names its own file and line
    first = _write(tmp_path / "a.csv", "u,i,t\na,1,1700000000000\nb,2,1700000060000\n")
    second = _write(tmp_path / "b.csv", "u,i,t\nc,3,1.7e12\nd,4,later\ne,5,1700000120000\n")
    m = ingest(_spec(columns={"time_format": "ms"}, max_reject_rate=1.0), [str(first), str(second)], tmp_path / "o")
    assert m["counts"]["rows_kept"] == 4 and m["counts"]["rejected_by_reason"] == {"timestamp_unparseable": 1}
    rejects = pl.read_parquet(tmp_path / "o" / "rejects.parquet")
    assert rejects.select("source", "line", "raw").rows() == [(str(second), 3, "d,4,later")]
    assert "'later'" in rejects["detail"][0]
    frame = _interactions(tmp_path / "o")
    assert frame.sort("user_id")["timestamp"].dt.epoch("ms").to_list() == [
        1700000000000,
        1700000060000,
        1700000000000,
        1700000120000,
    ]


def test_sessions_split_by_gap(tmp_path: Path) -> None:
    minutes = [0, 10, 39, 80, 81, 200]  # gaps 10, 29, 41, 1, 119 -> sessions {0,10,39} {80,81} {200}
    src = _write(
        tmp_path / "l.csv",
        "u,i,t\n" + "".join(f"a,{k},{1_700_000_000 + m * 60}\n" for k, m in enumerate(minutes)) + "b,1,1700000000\n",
    )
    ingest(_spec(), [str(src)], tmp_path / "o")
    frame = _interactions(tmp_path / "o").sort("user_idx", "timestamp")
    assert frame["session_id"].to_list() == [0, 0, 0, 1, 1, 2, 3]
    ingest(_spec(session_gap_minutes=5), [str(src)], tmp_path / "o5")
    assert _interactions(tmp_path / "o5").sort("user_idx", "timestamp")["session_id"].to_list() == [0, 1, 2, 3, 3, 4, 5]


def test_event_weights_and_relevance_threshold(tmp_path: Path) -> None:
    src = _write(tmp_path / "l.csv", "u,i,t,e,r\na,1,1,view,5\na,2,2,purchase,2\nb,1,3,view,4\n")
    spec = _spec(columns={"event": "e", "value": "r"}, events={"view": 1, "purchase": 5}, relevance_threshold=4)
    m = ingest(spec, [str(src)], tmp_path / "o")
    frame = _interactions(tmp_path / "o").sort("user_idx", "timestamp")
    assert frame["weight"].to_list() == [1.0, 0.0, 1.0]
    assert m["counts"]["below_threshold"] == 1


def test_missing_event_is_rejected_and_values_compare_as_numbers(tmp_path: Path) -> None:
    # "4" and "4.0" are the same rating, so the second row is a duplicate of the first; an empty
    # event is a reject even without an event-weight map (it used to borrow another row's event)
    rows = ["u,i,t,e,r", "a,1,1,view,4", "a,1,1,view,4.0", "a,2,2,,3", "a,3,3,click,", "b,1,1,click,-0.5"]
    src = _write(tmp_path / "l.csv", "\n".join(rows) + "\n")
    m = ingest(_spec(columns={"event": "e", "value": "r"}, max_reject_rate=1.0), [str(src)], tmp_path / "o")
    assert m["counts"]["rejected_by_reason"] == {"event_missing": 1}
    assert m["counts"]["duplicates_removed"] == 1
    frame = _interactions(tmp_path / "o")
    assert frame.select("user_id", "item_id", "event", "value").rows() == [
        ("a", "1", "view", 4.0),
        ("a", "3", "click", None),
        ("b", "1", "click", -0.5),
    ]
    assert frame["weight"].to_list() == [1.0, 1.0, 1.0]


def test_pseudonymize_keeps_raw_ids_out_of_every_output(tmp_path: Path) -> None:
    raw_ids = ["alice@example.com", "bob@example.com"]
    src = _write(
        tmp_path / "l.csv",
        "u,i,t\n" + "".join(f"{u},{k},{100 + k}\n" for k, u in enumerate(raw_ids)) + "alice@example.com,9,notatime\n",
    )
    users = _write(tmp_path / "users.csv", "uid,country\nalice@example.com,FR\nbob@example.com,DE\n")
    out = tmp_path / "o"
    env = {"PERSOTOOL_PSEUDONYM_KEY": "s3cret-key-of-32-bytes-for-hmac"}
    result = run_cli(
        "ingest",
        src,
        "--user-col",
        "u",
        "--item-col",
        "i",
        "--time-col",
        "t",
        "--pseudonymize",
        "--users",
        users,
        "--user-key",
        "uid",
        "--user-features",
        "country",
        "--max-reject-rate",
        "0.5",
        "-o",
        out,
        "--json",
        env=env,
    )
    assert result.exit_code == 0, result.stderr
    for path in out.iterdir():
        blob = path.read_bytes()
        for raw in raw_ids:
            assert raw.encode() not in blob, f"{raw} leaked into {path.name}"
            assert b"s3cret-key" not in blob
    frame = _interactions(out)
    assert all(len(u) == 32 for u in frame["user_id"].to_list())
    users_out = pl.read_parquet(out / "users.parquet")
    assert sorted(users_out["country"].to_list()) == ["DE", "FR"]
    reject = pl.read_parquet(out / "rejects.parquet").row(0, named=True)
    assert reject["reason"] == "timestamp_unparseable"
    assert reject["raw"].split(",")[0] in set(frame["user_id"]) and reject["raw"].endswith(",9,notatime")
    again = run_cli(
        "ingest",
        src,
        "--user-col",
        "u",
        "--item-col",
        "i",
        "--time-col",
        "t",
        "--pseudonymize",
        "--max-reject-rate",
        "0.5",
        "-o",
        tmp_path / "o2",
        "--no-track",
        env=env,
    )
    assert again.exit_code == 0
    assert set(_interactions(tmp_path / "o2")["user_id"]) == set(frame["user_id"])
    missing = run_cli(
        "ingest",
        src,
        "--user-col",
        "u",
        "--item-col",
        "i",
        "--time-col",
        "t",
        "--pseudonymize",
        "-o",
        tmp_path / "o3",
        "--no-track",
        env={"PERSOTOOL_PSEUDONYM_KEY": ""},
    )
    assert missing.exit_code == 3 and "PERSOTOOL_PSEUDONYM_KEY" in missing.stderr
    assert not (tmp_path / "o3").exists()


def test_consent_removes_opted_out_users_everywhere(tmp_path: Path) -> None:
    src = _write(tmp_path / "l.csv", "u,i,t,ok\na,1,1,yes\na,2,2,no\na,3,bad,yes\nb,1,3,true\nb,2,4,1\n")
    m = ingest(_spec(columns={"consent": "ok"}), [str(src)], tmp_path / "o")
    assert set(_interactions(tmp_path / "o")["user_id"]) == {"b"}
    c = m["counts"]
    assert (c["opted_out_users"], c["opted_out_rows"], c["rows_rejected"]) == (1, 3, 0)
    assert pl.read_parquet(tmp_path / "o" / "rejects.parquet").is_empty()


def test_synthetic_log_counts_match_ground_truth(tmp_path: Path) -> None:
    synth = run_cli(
        "datasets",
        "synth",
        "-o",
        tmp_path / "s",
        "--events",
        "20000",
        "--dirty",
        "0.02",
        "--opted-out",
        "0.05",
        "--format",
        "jsonl",
        "--compression",
        "gzip",
        "--no-track",
        "--json",
    )
    assert synth.exit_code == 0, synth.stderr
    truth = json.loads(synth.stdout)["truth"]
    result = run_cli(
        "ingest",
        tmp_path / "s" / "events.jsonl.gz",
        "--schema",
        tmp_path / "s" / "schema.toml",
        "-o",
        tmp_path / "d",
        "--no-track",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    got = json.loads(result.stdout)
    injected = truth["injected"]
    assert got["duplicates_removed"] == injected["duplicates"]
    assert got["rejected_by_reason"] == {k: v for k, v in injected.items() if k != "duplicates" and v}
    assert got["opted_out_users"] == truth["opted_out_users_with_events"]
    assert got["n_users"] == truth["users_with_events"] - truth["opted_out_users_with_events"]
    frame = _interactions(tmp_path / "d")
    assert set(frame["event"].unique()) == {"view", "click", "add_to_cart", "purchase"}
    assert frame.filter(pl.col("event") == "purchase")["weight"].unique().to_list() == [5.0]


@pytest.mark.parametrize(("wide", "sizes", "alias"), [(False, False, False), (False, True, True), (True, True, False)])
def test_sort_unique_matches_numpy_unique_rows(wide: bool, sizes: bool, alias: bool, monkeypatch) -> None:
    # wide: codes too large to pack into 64 bits, so the multi-column fallback runs;
    # alias: the packing buffer is the uint64 time-rank column itself
    import numpy as np

    from persotool.stages.ingest import _columns as ingest_module

    monkeypatch.setattr(ingest_module, "BLOCK", 1000)  # several blocks, and a partial last one
    rng = np.random.default_rng(7 + wide)
    n = 5000
    spread = 1 << 24 if wide else 1
    columns = [
        (rng.integers(0, 40, n) * spread).astype(np.int32),  # users
        rng.integers(0, 300, n).astype(np.uint64),  # time ranks
        (rng.integers(0, 30, n) * spread).astype(np.int32),  # items
        rng.integers(0, 3, n).astype(np.int32),  # event codes
        np.zeros(n, dtype=np.uint32),  # no values: one code, no bits
        rng.integers(0, 11, n).astype(np.uint32),  # rating levels
    ]
    again = rng.integers(0, n, 700)
    columns = [np.concatenate([c, c[again]]) for c in columns]  # exact duplicates
    dtypes = [c.dtype for c in columns]
    expected = np.unique(np.stack([c.astype(np.int64) for c in columns], axis=1), axis=0)
    bounds = [int(c.max()) + 1 + 5 for c in columns] if sizes else None
    m = ingest_module.sort_unique(columns, bounds, columns[1] if alias else None)
    assert m == len(expected) < len(columns[0])  # the draw has duplicates
    assert [c.dtype for c in columns] == dtypes
    assert np.array_equal(np.stack([c[:m].astype(np.int64) for c in columns], axis=1), expected)


@pytest.mark.parametrize("ordered", [True, False])
def test_time_ranks_index_the_sorted_distinct_timestamps(ordered: bool, monkeypatch) -> None:
    import numpy as np

    from persotool.stages.ingest import _columns as ingest_module

    monkeypatch.setattr(ingest_module, "BLOCK", 1000)  # the running count carries across blocks
    rng = np.random.default_rng(3)
    stamps = rng.integers(-5, 200, 4500) * 1_000_000  # repeats, and times before 1970
    if ordered:
        stamps.sort()  # a log written in time order takes the running-count rank
    original = stamps.copy()
    rank, distinct = ingest_module.time_ranks(stamps)
    assert np.shares_memory(rank, stamps)  # written in place
    assert np.array_equal(distinct, np.unique(original))
    assert np.array_equal(distinct[rank.astype(np.int64)], original)
