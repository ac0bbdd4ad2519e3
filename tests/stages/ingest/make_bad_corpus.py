"""Regenerate tests/stages/ingest/bad/: each file is one way real logs go wrong. cases.toml says what
`persotool ingest` must answer for it (exit status and a fragment of the one error line)."""

import gzip
import io
from pathlib import Path

import polars as pl
import zstandard

HERE = Path(__file__).parent / "bad"
HEAD = "userId,movieId,rating,timestamp\n"
ROWS = "1,31,2.5,1260759144\n1,1029,3.0,1260759179\n2,10,4.0,835355493\n"


def write(name: str, data: bytes | str) -> None:
    (HERE / name).write_bytes(data.encode() if isinstance(data, str) else data)


def main() -> None:
    HERE.mkdir(exist_ok=True)
    write("empty.csv", b"")
    write("header_only.csv", HEAD)
    write("blank_only.csv", "\n\n\n")
    write("wrong_delimiter.csv", (HEAD + ROWS).replace(",", ";"))
    write("missing_column.csv", "userId,movieId,rating\n1,31,2.5\n")
    write("latin1.csv", (HEAD + "1,31,2.5,1260759144\n").encode() + b"2,caf\xe9,3.0,1260759179\n")
    write("utf16.csv", (HEAD + ROWS).encode("utf-16"))
    write("nul_bytes.csv", (HEAD + "1,31,2.5,1260759144\n1,10\x0029,3.0,1260759179\n").encode())
    write("ragged_long.csv", HEAD + ROWS + "3,5,1.0,835355493,extra\n")
    write("ragged_short.csv", HEAD + "1,31,2.5,1260759144\n1,1029,3.0\n")
    write("truncated.csv.gz", gzip.compress((HEAD + ROWS * 200).encode())[:-40])
    write("corrupt.csv.gz", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"this is not deflate data" * 20)
    write("truncated.csv.zst", zstandard.ZstdCompressor().compress((HEAD + ROWS * 200).encode())[:-30])
    write("not_gzip.csv.gz", HEAD + ROWS)
    write("not_parquet.parquet", HEAD + ROWS)
    buf = io.BytesIO()
    pl.DataFrame({"userId": [1], "movieId": [2], "rating": [3.0], "timestamp": [1260759144]}).write_parquet(buf)
    write("parquet_named.csv", buf.getvalue())
    write("overflow_timestamps.csv", HEAD + "".join(f"{u},31,2.5,99999999999999999999{u}\n" for u in range(1, 6)))
    write("overflow_values.csv", HEAD + "".join(f"{u},31,1e999,1260759144\n" for u in range(1, 6)))
    write("impossible_dates.csv", "user,item,ts\n" + "".join(f"u{d},i1,2024-02-{d}T10:00:00\n" for d in (29, 30, 31)))
    write("missing_ids.csv", HEAD + ",31,2.5,1260759144\n,1029,3.0,1260759179\n")
    write("bad_json.jsonl", '{"u": 1, "i": 2, "t": 3}\n{"u": 1, "i": 3, "t": 4}\n{"u": 1, "i": \n')
    write("json_array.jsonl", '{"u": 1, "i": 2, "t": 3}\n[1, 2, 3]\n')
    write("unknown_events.csv", "user,item,ts,kind\n" + "".join(f"u{k},i1,1260759144,purchase\n" for k in range(4)))
    write("unknown_key.toml", '[columns]\nuser = "userId"\nitem = "movieId"\ntime = "timestamp"\ncolour = "x"\n')
    write("unclosed_quote.csv", HEAD + '1,31,2.5,1260759144\n1,"1029,3.0,1260759179\n2,10,4.0,835355493\n')
    write("mixed_epoch_units.csv", HEAD + "1,31,2.5,1260759144\n1,1029,3.0,1260759179000\n2,10,4.0,5000000000\n")
    write("duplicate_mapped_header.csv", "userId,movieId,rating,timestamp,userId\n1,31,2.5,1260759144,7\n")
    buf = io.BytesIO()
    pl.DataFrame({"userId": [1], "movieId": [2], "rating": [3.0], "timestamp": [{"s": 1}]}).write_parquet(buf)
    write("struct_timestamp.parquet", buf.getvalue())
    write("bad_toml.toml", '[columns\nuser = "userId"\n')


if __name__ == "__main__":
    main()
