#!/usr/bin/env python3
"""Turns a capture of collector samples into the fixture of the store's codec benchmark.

Usage:
    scripts/store-bench-fixture.py CAPTURE.jsonl [OUT.jsonl.gz] [--calls N]

CAPTURE has one sample per line, as the capture of the `system` collector writes them:
    {"call":N,"labels":{...},"name":"...","timestamp_ms":...,"type":"sample","value":...}
OUT (default engine/store/benches/data/system-1s.jsonl.gz) is gzipped JSON lines: a first
line naming the format, then one line per series, in the order the series first appear:
    {"name":"...","labels":{...},"t":[first timestamp, delta, delta, ...],"v":["value", ...]}
Values are kept as the text the capture wrote them in, so the benchmark (which parses them
with Rust's correctly rounded parser) sees the collector's exact bits. A column per series
compresses about 40 times better than the capture itself. `--calls N` keeps the first N
calls only (3600: one hour at 1 s). The output is the same bytes for the same input.

Then: cargo bench -p telltale-store --bench codec
"""

import argparse
import gzip
import io
import json
import os
import sys

DEFAULT_OUT = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..", "engine", "store", "benches", "data", "system-1s.jsonl.gz",
))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture")
    ap.add_argument("out", nargs="?", default=DEFAULT_OUT)
    ap.add_argument("--calls", type=int, default=None, help="keep the first N calls only")
    args = ap.parse_args()

    series = {}  # (name, labels as sorted JSON) -> [name, labels, [(t, value text)]]
    calls = set()
    with open(args.capture, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                # Floats stay text: no round trip through Python's float.
                d = json.loads(line, parse_float=str)
            except json.JSONDecodeError as e:
                # The capture may still be growing: its last line can be cut short.
                print(f"{args.capture}:{n}: skipped ({e})", file=sys.stderr)
                continue
            if d.get("type") != "sample":
                continue
            call = d.get("call")
            if args.calls is not None and call is not None and call > args.calls:
                continue
            calls.add(call)
            labels = d.get("labels") or {}
            key = (d["name"], json.dumps(labels, sort_keys=True))
            entry = series.setdefault(key, [d["name"], labels, []])
            entry[2].append((int(d["timestamp_ms"]), str(d["value"])))

    lines = [json.dumps({
        "fixture": "telltale-store-bench",
        "version": 1,
        "source": os.path.basename(args.capture),
        "calls": len(calls),
        "series": len(series),
        "samples": sum(len(e[2]) for e in series.values()),
    })]
    for name, labels, points in series.values():
        points.sort(key=lambda p: p[0])
        deltas = [points[0][0]] + [b[0] - a[0] for a, b in zip(points, points[1:])]
        lines.append(json.dumps(
            {"name": name, "labels": labels, "t": deltas, "v": [p[1] for p in points]},
            separators=(",", ":"),
        ))
    data = ("\n".join(lines) + "\n").encode("utf-8")

    buf = io.BytesIO()
    # mtime 0 and no file name: the same capture gives the same bytes.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(buf.getvalue())
    print(f"{args.out}: {len(series)} series, {len(calls)} calls, "
          f"{len(buf.getvalue()) / 1e6:.2f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
