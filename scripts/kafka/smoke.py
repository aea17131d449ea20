#!/usr/bin/env python3
"""Smoke test for the broker started by scripts/kafka.sh: transactions on one node.

Needs confluent-kafka (manylinux wheel bundles librdkafka) and/or kafka-python:
    python3 -m venv .cache/kafka/venv
    .cache/kafka/venv/bin/pip install confluent-kafka kafka-python
    .cache/kafka/venv/bin/python scripts/kafka/smoke.py [127.0.0.1:19092]

For each client library found: commit one transaction and abort another, then check
that a read_committed consumer sees exactly the committed messages.
"""
import json
import sys
import time
import uuid

BOOTSTRAP = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:19092"


def check_confluent():
    from confluent_kafka import Consumer, Producer

    topic = f"smoke-txn-ck-{uuid.uuid4().hex[:8]}"
    p = Producer({
        "bootstrap.servers": BOOTSTRAP,
        "transactional.id": f"smoke-ck-{uuid.uuid4().hex[:8]}",
        "enable.idempotence": True,
    })
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, key=str(i), value=json.dumps({"n": i, "state": "committed"}))
    p.commit_transaction(30)
    p.begin_transaction()
    p.produce(topic, key="x", value=json.dumps({"state": "aborted"}))
    p.flush(10)
    p.abort_transaction(30)

    c = Consumer({
        "bootstrap.servers": BOOTSTRAP,
        "group.id": f"smoke-ck-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
    })
    c.subscribe([topic])
    got, deadline = [], time.time() + 30
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                break
            raise RuntimeError(m.error())
        got.append(json.loads(m.value()))
    c.close()
    assert [g["n"] for g in got] == [0, 1, 2], got
    import confluent_kafka
    ver = confluent_kafka.version()
    ver = ver[0] if isinstance(ver, tuple) else ver
    lib = confluent_kafka.libversion()[0]
    return f"confluent-kafka {ver} (librdkafka {lib}): committed 3, aborted 1, read_committed saw {len(got)}"


def check_kafka_python():
    import kafka
    from kafka import KafkaConsumer, KafkaProducer

    topic = f"smoke-txn-kp-{uuid.uuid4().hex[:8]}"
    p = KafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        transactional_id=f"smoke-kp-{uuid.uuid4().hex[:8]}",
    )
    p.init_transactions()
    p.begin_transaction()
    for i in range(3):
        p.send(topic, json.dumps({"n": i, "state": "committed"}).encode())
    p.commit_transaction()
    p.begin_transaction()
    p.send(topic, json.dumps({"state": "aborted"}).encode())
    p.flush()
    p.abort_transaction()
    p.close()

    c = KafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=f"smoke-kp-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        consumer_timeout_ms=5000,
    )
    got = [json.loads(m.value) for m in c]
    c.close()
    assert [g["n"] for g in got] == [0, 1, 2], got
    return f"kafka-python {kafka.__version__}: committed 3, aborted 1, read_committed saw {len(got)}"


def main():
    failed = False
    for name, check in (("confluent-kafka", check_confluent), ("kafka-python", check_kafka_python)):
        try:
            print("ok  ", check())
        except ImportError:
            print("skip", name, "not installed")
        except Exception as e:  # noqa: BLE001 - report and go on to the next client
            failed = True
            print("FAIL", name, repr(e))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
