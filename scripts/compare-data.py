#!/usr/bin/env python3
"""Tabular files for `driftwatch compare`, written by tools of another origin than driftwatch.

Ten numeric columns (n0..n9) and five categorical ones (c0..c4), drawn with numpy from a fixed
seed; n1 has about 1 % missing values. `--drift` shifts n0 by half a standard deviation and
moves c0's shares from 50/30/20 % to 20/30/50 %: every other column keeps its distribution.

Each --out gets the same rows, in the format its extension names:
  .csv      pyarrow's CSV writer (quoted strings and header, shortest float text)
  .jsonl    Python's json module, one object a line, null for a missing value
  .parquet  pyarrow (snappy, the default codec)
  .avro     an Avro object container file written here from the specification (null codec,
            blocks of 10 000 records), so no Avro library of either side is involved

Examples:
  scripts/compare-data.py --rows 1000000 --seed 1 --out /tmp/ref.csv --out /tmp/ref.parquet
  scripts/compare-data.py --rows 1000000 --seed 2 --drift --out /tmp/cur.csv
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

NUMERIC = [f"n{i}" for i in range(10)]
CATEGORICAL = [f"c{i}" for i in range(5)]


def columns(rows, seed, drift):
    rng = np.random.default_rng(seed)
    n = {
        "n0": rng.normal(0.0, 1.0, rows) + (0.5 if drift else 0.0),
        "n1": rng.normal(50.0, 10.0, rows),
        "n2": rng.lognormal(0.0, 0.75, rows),
        "n3": rng.uniform(0.0, 1.0, rows),
        "n4": rng.exponential(2.0, rows),
        # Few distinct values: a count.
        "n5": rng.poisson(3.0, rows).astype(np.float64),
        "n6": rng.normal(1000.0, 200.0, rows),
        "n7": rng.gamma(2.0, 2.0, rows),
        "n8": rng.beta(2.0, 5.0, rows),
        "n9": rng.integers(0, 100, rows).astype(np.float64),
    }
    missing_n1 = rng.random(rows) < 0.01
    c0_p = [0.2, 0.3, 0.5] if drift else [0.5, 0.3, 0.2]
    c3 = [f"item_{k}" for k in range(50)]
    c4 = [f"user_{k}" for k in range(200)]
    zipf = 1.0 / np.arange(1, 201)
    c = {
        "c0": rng.choice(np.array(["a", "b", "c"]), rows, p=c0_p),
        "c1": rng.choice(np.array(["red", "green", "blue", "black", "white"]), rows),
        "c2": rng.choice(
            np.array(["FR", "DE", "US", "GB", "ES", "IT", "NL", "BE", "PL", "SE"]), rows
        ),
        "c3": rng.choice(np.array(c3), rows),
        "c4": rng.choice(np.array(c4), rows, p=zipf / zipf.sum()),
    }
    return n, missing_n1, c


def table(rows, seed, drift):
    n, missing_n1, c = columns(rows, seed, drift)
    arrays, names = [], []
    for name in NUMERIC:
        mask = missing_n1 if name == "n1" else None
        arrays.append(pa.array(n[name], type=pa.float64(), mask=mask))
        names.append(name)
    for name in CATEGORICAL:
        arrays.append(pa.array(c[name], type=pa.string()))
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def write_jsonl(t, path):
    cols = t.to_pydict()
    names = t.column_names
    with open(path, "w", encoding="utf-8") as f:
        for row in zip(*(cols[k] for k in names)):
            f.write(json.dumps(dict(zip(names, row)), separators=(",", ":")))
            f.write("\n")


def _long(x):
    """Avro long: zig-zag, then base-128 varint."""
    z = (x << 1) ^ (x >> 63)
    out = bytearray()
    while z & ~0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _bytes(b):
    return _long(len(b)) + b


def write_avro(t, path):
    fields = []
    for name in t.column_names:
        if name == "n1":
            fields.append({"name": name, "type": ["null", "double"]})
        elif name in NUMERIC:
            fields.append({"name": name, "type": "double"})
        else:
            fields.append({"name": name, "type": "string"})
    schema = json.dumps({"type": "record", "name": "Row", "fields": fields}).encode()
    sync = os.urandom(16)
    cols = t.to_pydict()
    names = t.column_names
    with open(path, "wb") as f:
        f.write(b"Obj\x01")
        # File metadata: a map of two entries, then the end-of-map zero.
        f.write(_long(2))
        f.write(_bytes(b"avro.schema") + _bytes(schema))
        f.write(_bytes(b"avro.codec") + _bytes(b"null"))
        f.write(_long(0))
        f.write(sync)
        rows = list(zip(*(cols[k] for k in names)))
        for start in range(0, len(rows), 10_000):
            block = bytearray()
            chunk = rows[start : start + 10_000]
            for row in chunk:
                for name, v in zip(names, row):
                    if name == "n1":
                        if v is None:
                            block += _long(0)
                        else:
                            block += _long(1) + struct.pack("<d", v)
                    elif name in NUMERIC:
                        block += struct.pack("<d", v)
                    else:
                        block += _bytes(v.encode())
            f.write(_long(len(chunk)) + _long(len(block)) + bytes(block) + sync)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--drift", action="store_true")
    p.add_argument("--out", action="append", required=True)
    a = p.parse_args()
    t = table(a.rows, a.seed, a.drift)
    for out in a.out:
        ext = os.path.splitext(out)[1].lower()
        if ext == ".csv":
            pacsv.write_csv(t, out)
        elif ext == ".jsonl":
            write_jsonl(t, out)
        elif ext == ".parquet":
            pq.write_table(t, out)
        elif ext == ".avro":
            write_avro(t, out)
        else:
            sys.exit(f"compare-data.py: unknown extension of {out}")


if __name__ == "__main__":
    main()
