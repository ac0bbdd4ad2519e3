"""Logs as users bring them: fixtures built in code that copy the layouts of public logs (extra
unmapped columns, no header, `::`, tabs, quoted separators, list-valued cells, JSON with nested
fields, CRLF, BOMs), each ingested the way the README tells a user to."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import run_cli


def ingest(tmp_path: Path, *args) -> tuple[dict, Path]:
    out = tmp_path / "ds"
    result = run_cli("ingest", *args, "-o", out, "--no-track", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), out


def table(out: Path, name: str = "interactions") -> pl.DataFrame:
    return pl.read_parquet(out / f"{name}.parquet")


def test_retailrocket_events_with_unmapped_transaction_column(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1433221332117,257597,view,355908,\n"
        "1433224214164,992329,view,248676,\n"
        "1433221999827,111016,view,318965,\n"
        "1433222276276,483717,addtocart,253185,\n"
        "1433193500981,111016,transaction,318965,12057\n"
    )
    summary, out = ingest(
        tmp_path, path, "--user-col", "visitorid", "--item-col", "itemid", "--time-col", "timestamp",
        "--event-col", "event", "--event-weight", "view=1", "--event-weight", "addtocart=3",
        "--event-weight", "transaction=5",
    )  # fmt: skip
    assert summary["rows_kept"] == 5 and summary["n_users"] == 4 and summary["n_items"] == 4
    rows = table(out).filter(pl.col("user_id") == "111016").sort("timestamp")
    assert rows["event"].to_list() == ["transaction", "view"]
    assert rows["weight"].to_list() == [5.0, 1.0]
    assert str(rows["timestamp"][0]) == "2015-06-01 21:18:20.981000+00:00"  # ms detected by magnitude


def test_yoochoose_clicks_without_header_and_category_column(tmp_path: Path) -> None:
    path = tmp_path / "yoochoose-clicks.dat"
    path.write_text(
        "1,2014-04-07T10:51:09.277Z,214536502,0\n"
        "1,2014-04-07T10:54:09.868Z,214536500,0\n"
        "2,2014-04-07T13:56:37.614Z,214662742,S\n"
        "2,2014-04-07T13:57:19.373Z,214825110,S\n"
        "2,2014-04-07T13:58:37.446Z,214757390,2058\n"
    )
    summary, out = ingest(
        tmp_path, path, "--no-header", "--columns", "session,ts,item,category", "--delimiter", ",",
        "--user-col", "session", "--item-col", "item", "--time-col", "ts",
    )  # fmt: skip
    assert summary["rows_kept"] == 5 and summary["n_users"] == 2
    first = table(out).sort("timestamp")["timestamp"][0]
    assert str(first) == "2014-04-07 10:51:09.277000+00:00"


def test_lastfm_listening_history_tsv_with_stray_quotes(tmp_path: Path) -> None:
    # Last.fm 1K: tab-separated, no header, empty MusicBrainz ids, names with unbalanced quotes.
    path = tmp_path / "userid-timestamp-artid-artname-traid-traname.tsv"
    path.write_text(
        "user_000001\t2009-05-04T23:08:57Z\tf1b1cf71-bd35-4e99-8624-24a6e15f133a\tDeep Dish\t\tFuck Me Im Famous\n"
        'user_000001\t2009-05-04T13:54:10Z\ta7f7df4a-77d8\t"Weird Al" Yankovic\t\tAmish Paradise\n'
        "user_000002\t2009-05-04T13:52:04Z\t\tTommy Guerrero\t\tAlways 12 inches\n"
    )
    summary, out = ingest(
        tmp_path, path, "--no-header", "--columns", "user,ts,artist_id,artist,track_id,track", "--quote", "",
        "--user-col", "user", "--item-col", "artist", "--time-col", "ts",
    )  # fmt: skip
    assert summary["rows_kept"] == 3 and summary["n_items"] == 3
    assert '"Weird Al" Yankovic' in table(out, "items")["item_id"].to_list()


def test_amazon_reviews_jsonl_with_nested_unmapped_fields_and_leading_zeros(tmp_path: Path) -> None:
    path = tmp_path / "reviews_Books_5.json"
    reviews = [
        {"reviewerID": "A2SUAM1J3GNN3B", "asin": "0000013714", "reviewerName": "J. McDonald",
         "helpful": [2, 3], "reviewText": "I bought this, \"great\".", "overall": 5.0,
         "summary": "Heavenly", "unixReviewTime": 1252800000, "reviewTime": "09 13, 2009"},
        {"reviewerID": "A1D2C0WDCSHUWZ", "asin": "0000013714", "style": {"Format:": " Hardcover"},
         "helpful": [0, 0], "overall": 4.0, "unixReviewTime": 1354320000, "reviewTime": "12 1, 2012"},
        {"reviewerID": "A2SUAM1J3GNN3B", "asin": "0000031909", "overall": 3.0, "unixReviewTime": 1262304000},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in reviews))
    summary, out = ingest(
        tmp_path, path, "--format", "jsonl", "--user-col", "reviewerID", "--item-col", "asin",
        "--time-col", "unixReviewTime", "--value-col", "overall",
    )  # fmt: skip
    assert summary["rows_kept"] == 3 and summary["rows_rejected"] == 0
    assert sorted(table(out, "items")["item_id"].to_list()) == ["0000013714", "0000031909"]
    assert sorted(table(out)["value"].to_list()) == [3.0, 4.0, 5.0]


def test_nested_json_ids_are_rejected_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "nested.jsonl"
    path.write_text(
        '{"u": {"id": "u1"}, "i": "i1", "t": 1260759144}\n'
        '{"u": "u2", "i": ["i2"], "t": 1260759145}\n'
        '{"u": "[u3]", "i": "i3", "t": 1260759146}\n'  # a text id that only looks like a list
        + "".join(f'{{"u": "u{k}", "i": "i1", "t": 1260759150}}\n' for k in range(10, 30))
    )
    summary, out = ingest(tmp_path, path, "--user-col", "u", "--item-col", "i", "--time-col", "t")
    assert summary["rejected_by_reason"] == {"field_nested": 2}
    rejects = table(out, "rejects")
    assert rejects["line"].to_list() == [1, 2]
    assert "[u3]" in table(out, "users")["user_id"].to_list()


def test_movielens_1m_dat_with_preset(tmp_path: Path) -> None:
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    (folder / "movies.dat").write_text(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)::"
        "Animation|Children's|Musical\n"
    )
    summary, out = ingest(tmp_path, folder / "ratings.dat", "--preset", "movielens")
    assert summary["rows_kept"] == 3
    items = table(out, "items").sort("item_id")
    assert items["features"].to_list() == [
        ["genres=Drama"],
        ["genres=Animation", "genres=Children's", "genres=Musical"],
    ]


def test_movielens_20m_ratings_without_value_column_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_bytes(b"userId,movieId,rating,timestamp\r\n1,2,3.5,1112486027\r\n1,29,3.5,1112484676\r\n")
    summary, out = ingest(tmp_path, path, "--user-col", "userId", "--item-col", "movieId", "--time-col", "timestamp")
    assert summary["rows_kept"] == 2
    assert table(out)["value"].null_count() == 2


def test_header_with_duplicate_and_empty_names(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("id,user,,item,ts,id\n1,u1,x,i1,1260759144,9\n2,u2,y,i2,1260759145,8\n")
    summary, _ = ingest(tmp_path, path, "--user-col", "user", "--item-col", "item", "--time-col", "ts")
    assert summary["rows_kept"] == 2
    mapped_twice = run_cli(
        "ingest", path, "--user-col", "id", "--item-col", "item", "--time-col", "ts", "-o", tmp_path / "x", "--no-track"
    )
    assert mapped_twice.exit_code == 4
    assert "column 'id' appears 2 times in the header (fields 1, 6)" in mapped_twice.stderr


def test_quoted_separators_and_bom_in_attribute_file(tmp_path: Path) -> None:
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n2,2,3.0,964981247\n")
    (tmp_path / "movies.csv").write_bytes(
        b'\xef\xbb\xbfmovieId,title,genres\n1,"Toy Story (1995)",Adventure|Animation\n'
        b'2,"American President, The (1995)",Comedy|Drama|Romance\n'
    )
    _, out = ingest(tmp_path, ratings, "--preset", "movielens")
    items = table(out, "items").sort("item_id")
    assert items["title"].to_list() == ["Toy Story (1995)", "American President, The (1995)"]
    assert items["features"][1].to_list() == ["genres=Comedy", "genres=Drama", "genres=Romance"]


def test_jsonl_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"u": "u1", "i": "i1", "t": 1260759144}\n{"u": "u2", "i": "i1", "t": 1260759145}\n')
    summary, _ = ingest(tmp_path, path, "--user-col", "u", "--item-col", "i", "--time-col", "t")
    assert summary["rows_kept"] == 2


def test_cr_only_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "mac.csv"
    path.write_bytes(b"u,i,t\r1,a,1260759144\r2,b,1260759145\r3,c,1260759146")
    summary, out = ingest(tmp_path, path, "--user-col", "u", "--item-col", "i", "--time-col", "t")
    assert summary["rows_kept"] == 3
    assert sorted(table(out, "items")["item_id"].to_list()) == ["a", "b", "c"]


def test_mixed_epoch_seconds_and_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text("u,i,t\nu1,a,1260759144\nu2,b,1260759145000\nu3,c,1260759146\n")
    summary, out = ingest(tmp_path, path, "--user-col", "u", "--item-col", "i", "--time-col", "t")
    assert summary["time_min"] == "2009-12-14T02:52:24+00:00"
    assert summary["time_max"] == "2009-12-14T02:52:26+00:00"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["time_format_detected"] == {str(path): "epoch (mixed units)"}


def test_mixed_epochs_that_fit_no_unit_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text("u,i,t\nu1,a,1260759144\nu2,b,1260759145000\nu3,c,1260759146\nu4,d,5000000000\n")
    result = run_cli("ingest", path, "--user-col", "u", "--item-col", "i", "--time-col", "t", "-o", tmp_path / "o")
    assert result.exit_code == 4
    assert "epoch timestamps mix units (2 in seconds, 1 in milliseconds) and 1 fit no unit" in result.stderr


def test_unclosed_quote_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    path.write_text('u,i,t\n1,a,1260759144\n2,"b,1260759145\n3,c,1260759146\n4,d,1260759147\n')
    result = run_cli("ingest", path, "--user-col", "u", "--item-col", "i", "--time-col", "t", "-o", tmp_path / "o")
    assert result.exit_code == 4, result.stderr
    assert f"{path}:3: a quoted field opens here" in result.stderr


def test_recbole_atomic_files_with_shipped_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t4\t881251000\n"
    )
    (folder / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "242\tKolya\t1996\tComedy\n302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller\n"
    )
    (folder / "ml-100k.user").write_text(
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
        "196\t49\tM\twriter\t55105\n186\t39\tF\texecutive\t00000\n"
    )
    monkeypatch.chdir(tmp_path)
    schema = "recbole-atomic"
    summary, out = ingest(tmp_path, folder / "ml-100k.inter", "--schema", schema)
    assert summary["rows_kept"] == 3
    items = table(out, "items").sort("item_id")
    assert items["features"][1].to_list() == [
        "class:token_seq=Crime",
        "class:token_seq=Film-Noir",
        "class:token_seq=Mystery",
        "class:token_seq=Thriller",
        "release_year:token=1997",
    ]
    users = table(out, "users").sort("user_id")
    assert users["features"][0].to_list() == ["age:token=39", "gender:token=F", "occupation:token=executive"]


def test_list_separator_flag_splits_space_separated_genres(tmp_path: Path) -> None:
    ratings = tmp_path / "r.csv"
    ratings.write_text("u,i,t\n1,10,1260759144\n2,20,1260759145\n")
    items = tmp_path / "items.csv"
    items.write_text("item,genres\n10,Animation Children's Comedy\n20,Drama\n")
    base = ["--user-col", "u", "--item-col", "i", "--time-col", "t", "--items", items, "--item-key", "item"]
    _, out = ingest(tmp_path, ratings, *base, "--item-features", "genres", "--list-separator", " ")
    features = table(out, "items").sort("item_id")["features"].to_list()
    assert features == [["genres=Animation", "genres=Children's", "genres=Comedy"], ["genres=Drama"]]
    no_tables = run_cli("ingest", ratings, *base[:6], "--list-separator", " ", "-o", tmp_path / "o", "--no-track")
    assert no_tables.exit_code == 3 and "--list-separator" in no_tables.stderr


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: __import__("os").mkfifo(p), "is a named pipe (FIFO), not a regular file"),
        (lambda p: (p.symlink_to(p.with_name("b")), p.with_name("b").symlink_to(p)), "symbolic link loop"),
    ],
    ids=["fifo", "symlink-loop"],
)
def test_special_files_say_what_they_are(tmp_path: Path, make, expected: str) -> None:
    path = tmp_path / "log.csv"
    make(path)
    result = run_cli("ingest", path, "--preset", "movielens", "-o", tmp_path / "o", "--no-track")
    assert result.exit_code == 4
    assert expected in result.stderr


def test_unknown_timezone_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("u,i,t\n1,10,2020-01-01T10:00:00\n")
    args = ["--user-col", "u", "--item-col", "i", "--time-col", "t", "-o", tmp_path / "o", "--no-track"]
    result = run_cli("ingest", path, *args, "--timezone", "Mars/Olympus")
    assert result.exit_code == 3
    assert "unknown time zone 'Mars/Olympus'" in result.stderr
    summary, _ = ingest(tmp_path, path, *args[:6], "--timezone", "Europe/Paris")
    assert summary["time_min"] == "2020-01-01T09:00:00+00:00"


def test_parquet_struct_timestamp_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pl.DataFrame({"u": ["a"], "i": ["x"], "t": [{"s": 1}]}).write_parquet(path)
    result = run_cli("ingest", path, "--user-col", "u", "--item-col", "i", "--time-col", "t", "-o", tmp_path / "o")
    assert result.exit_code == 4
    assert "column 't' holds Struct" in result.stderr


def test_rejects_keep_only_mapped_fields_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    rows = [{"u": "u1", "i": "i1", "t": 1260759144, "email": "alice@example.com", "address": "1 Main St"}]
    rows += [{"u": f"u{k}", "i": "i2", "t": 1260759145} for k in range(2, 22)]
    rows.append({"u": "u9", "i": "i3", "t": "not a time", "email": "bob@example.com"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["--user-col", "u", "--item-col", "i", "--time-col", "t"]
    _, out = ingest(tmp_path, path, *args)
    (raw,) = table(out, "rejects")["raw"].to_list()
    assert json.loads(raw) == {"u": "u9", "i": "i3", "t": "not a time"}
    assert b"bob@example.com" not in (out / "rejects.parquet").read_bytes()
    kept = run_cli("ingest", path, *args, "--keep-raw-rejects", "-o", tmp_path / "raw", "--no-track")
    assert kept.exit_code == 0, kept.stderr
    assert "bob@example.com" in table(tmp_path / "raw", "rejects")["raw"][0]
    csv_path = tmp_path / "events.csv"
    csv_path.write_text(
        "u,email,i,t\nu1,a@x.org,i1,1260759144\n" + "".join(f"u{k},,i2,1260759145\n" for k in range(20))
    )
    csv_path.write_text(csv_path.read_text() + 'u9,"bob@example.com, home",i3,never\n')
    (tmp_path / "c").mkdir()
    _, out = ingest(tmp_path / "c", csv_path, *args)
    assert table(out, "rejects")["raw"].to_list() == ["u9,i3,never"]


def test_short_pseudonym_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("u,i,t\n1,10,1260759144\n")
    args = ["--user-col", "u", "--item-col", "i", "--time-col", "t", "--pseudonymize", "-o", tmp_path / "o"]
    short = run_cli("ingest", path, *args, "--no-track", env={"PERSOTOOL_PSEUDONYM_KEY": "k" * 15})
    assert short.exit_code == 3 and "is 15 bytes; use at least 16" in short.stderr
    long_enough = run_cli("ingest", path, *args, "--no-track", env={"PERSOTOOL_PSEUDONYM_KEY": "k" * 16})
    assert long_enough.exit_code == 0, long_enough.stderr


def test_times_with_a_zone_name_after_them_are_read(tmp_path: Path) -> None:
    """`2019-12-01 00:00:00 UTC` (BigQuery, Snowplow and many warehouse exports), a named IANA
    zone, or an offset after a space: auto and iso read them all, each in its own zone."""
    log = tmp_path / "events.csv"
    log.write_text(
        "event_time,user_id,product_id\n"
        "2019-12-01 00:00:00 UTC,u1,p1\n"
        "2019-12-01 01:30:00 UTC,u2,p2\n"
        "2019-12-01 00:00:00 Europe/Paris,u3,p3\n"
        "2019-12-01 00:00:00 +01:00,u4,p4\n"
    )
    for fmt in ("auto", "iso"):
        out = tmp_path / f"ds-{fmt}"
        made = run_cli(
            "ingest", log, "--user-col", "user_id", "--item-col", "product_id", "--time-col", "event_time",
            "--time-format", fmt, "-o", out, "--no-track", "--json",
        )  # fmt: skip
        assert made.exit_code == 0, made.stderr
        frame = pl.read_parquet(out / "interactions.parquet").sort("user_id")
        hours = [(t.day, t.hour, t.minute) for t in frame["timestamp"].to_list()]
        assert hours == [(1, 0, 0), (1, 1, 30), (30, 23, 0), (30, 23, 0)]


def test_an_hour_with_only_a_header_is_counted_and_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "hourly"
    folder.mkdir()
    (folder / "2024-01-01T00.csv").write_text("u,i,t\na,1,1700000000\nb,2,1700000100\n")
    (folder / "2024-01-01T01.csv").write_text("u,i,t\n")  # a quiet hour
    (folder / "2024-01-01T02.csv").write_text("u,i,t\nc,3,1700007200\n")
    args = ("--user-col", "u", "--item-col", "i", "--time-col", "t", "--no-track", "--json")
    made = run_cli("ingest", folder, "-o", tmp_path / "ds", *args)
    assert made.exit_code == 0, made.stderr
    summary = json.loads(made.stdout)
    assert summary["rows_kept"] == 3 and summary["files_empty"] == 1 and summary["files_read"] == 2
    assert "1 of 3 files had no data rows" in made.stderr
    alone = run_cli("ingest", folder / "2024-01-01T01.csv", "-o", tmp_path / "one", *args)
    assert alone.exit_code == 4 and "has a header but no data rows" in alone.stderr  # a single file: still an error


def test_extensionless_json_lines_day_files_are_read_with_an_explicit_format(tmp_path: Path) -> None:
    folder = tmp_path / "days"
    folder.mkdir()
    (folder / "2024-01-01").write_text('{"u": "a", "i": "1", "t": 1700000000}\n')
    (folder / "2024-01-02").write_text('{"u": "b", "i": "2", "t": 1700086400}\n')
    (folder / "._2024-01-01").write_bytes(b"\x00\x05\x16\x07macOS metadata")  # AppleDouble
    args = ("--user-col", "u", "--item-col", "i", "--time-col", "t", "--no-track", "--json")
    refused = run_cli("ingest", folder, "-o", tmp_path / "auto", *args)
    assert refused.exit_code == 4 and "--format" in refused.stderr
    made = run_cli("ingest", folder, "--format", "jsonl", "-o", tmp_path / "ds", *args)
    assert made.exit_code == 0, made.stderr
    summary = json.loads(made.stdout)
    assert summary["rows_kept"] == 2 and summary["files_hidden_skipped"] == 1
    assert "1 hidden files" in made.stderr
