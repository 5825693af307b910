#!/usr/bin/env python3
"""Produces keyed records the way a label source on librdkafka's defaults does.

Used by tests/misrouted.rs: confluent-kafka (librdkafka) with no `partitioner` set, so
records are placed by `consistent_random` (CRC32 of the key), not by the Java client's
murmur2 that driftwatch's contract asks for.

Usage: default_partitioner_producer.py BOOTSTRAP TOPIC FILE [hex]
FILE holds one record per line: the key, a tab, the payload (UTF-8, or hexadecimal bytes
with `hex`, for binary payloads such as Avro).
Prints the number of records the broker acknowledged.
"""

import sys

from confluent_kafka import Producer


def main() -> int:
    bootstrap, topic, path = sys.argv[1:4]
    hex_payloads = sys.argv[4:5] == ["hex"]
    # No "partitioner": librdkafka's default, consistent_random.
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    failed = []
    acked = 0

    def delivered(err, _msg):
        nonlocal acked
        if err is not None:
            failed.append(str(err))
        else:
            acked += 1

    with open(path, encoding="utf-8") as f:
        for line in f:
            key, payload = line.rstrip("\n").split("\t", 1)
            value = bytes.fromhex(payload) if hex_payloads else payload
            while True:
                try:
                    producer.produce(topic, key=key, value=value, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
    producer.flush(60)
    if failed:
        print(f"delivery failed: {failed[:3]}", file=sys.stderr)
        return 1
    print(acked)
    return 0


if __name__ == "__main__":
    sys.exit(main())
