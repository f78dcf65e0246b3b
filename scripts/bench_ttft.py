#!/usr/bin/env python3
"""Time to first content token of a streamed chat request (used by scripts/bench-proxy).

    bench_ttft.py BASE_URL KEY BODY_FILE N

Sends the body N times, one at a time, over one kept-alive connection, and prints the p50 and
p99 time from the request's first byte sent to the first SSE event that carries a non-empty
content delta. Standard library only.
"""
import http.client
import json
import socket
import statistics
import sys
import time
import urllib.parse


def first_token(conn, path, body, headers):
    t0 = time.perf_counter()
    conn.request("POST", path, body=body, headers=headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"status {resp.status}: {resp.read()[:300]!r}")
    seen = None
    while True:
        line = resp.readline()
        if not line:
            break
        if seen is None and line.startswith(b"data: {"):
            event = json.loads(line[6:])
            for choice in event.get("choices", []):
                if (choice.get("delta") or {}).get("content"):
                    seen = time.perf_counter() - t0
        if line.startswith(b"data: [DONE]"):
            resp.read()
            break
    if seen is None:
        raise SystemExit("the stream carried no content")
    return seen


def main():
    base, key, body_file, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    url = urllib.parse.urlparse(base)
    body = open(body_file, "rb").read()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.connect()
    # Headers and body go out in two writes: without this, Nagle's algorithm holds the body
    # until the server's delayed ACK (40 ms on Linux), which would swamp what is measured.
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(20):  # warm the connection and the caches
        first_token(conn, "/v1/chat/completions", body, headers)
    times = sorted(first_token(conn, "/v1/chat/completions", body, headers) for _ in range(n))
    p50 = statistics.median(times) * 1e6
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))] * 1e6
    print(f"p50 {p50:.0f} µs, p99 {p99:.0f} µs ({n} requests)")


if __name__ == "__main__":
    main()
