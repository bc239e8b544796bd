#!/usr/bin/env python3
"""Local stand-in for the SQS event source mapping (`make dev` with several replicas).

moto cannot invoke Lambda functions. As in AWS, each replica's SQS queue is subscribed to the
shared topic with the template's filter policy (it never receives its own messages); this relay
long-polls every replica's queue (20 s waits, up to 10 messages) and hands each batch to that
replica's `integrate` function as the event source mapping does: an SQS event, whose answer's
`batchItemFailures` (ReportBatchItemFailures) names the records to deliver again. The others are
deleted; a failed invocation deletes none. A record not deleted becomes visible again after the
visibility timeout, as in AWS (there, after maxReceiveCount receives, it moves to the dead-letter
queue). Every 30 seconds it also invokes each replica's outbox sweep, as the schedule does.

Usage: relay.py <endpoint_url> <topic_arn> <queue_url>=<invoke_url> [...]
"""

import hashlib
import json
import sys
import threading
import time
import urllib.request

import boto3

VISIBILITY_TIMEOUT = 10  # seconds; short locally so that a retried record comes back soon


def queue_arn(queue_url):
    # http://host:port/<account>/<name> -> arn:aws:sqs:us-east-1:<account>:<name>
    account, name = queue_url.rstrip("/").split("/")[-2:]
    return f"arn:aws:sqs:us-east-1:{account}:{name}"


def sqs_event(queue_url, messages):
    arn = queue_arn(queue_url)
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody") or hashlib.md5(m["Body"].encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def invoke(url, payload):
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        body = resp.read().decode()
        if resp.status >= 300 or '"errorType"' in body:
            raise RuntimeError(f"{resp.status} {body[:300]}")
        return body


def pump(sqs, topic_arn, queue_url, invoke_url):
    while True:
        try:
            got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=20,
                                      VisibilityTimeout=VISIBILITY_TIMEOUT, AttributeNames=["All"])
        except Exception as e:  # moto restarting, network hiccup: try again
            print(f"[relay] receive from {queue_url} failed: {e}", file=sys.stderr, flush=True)
            time.sleep(1)
            continue
        messages = got.get("Messages", [])
        if not messages:
            continue
        try:
            answer = json.loads(invoke(invoke_url, sqs_event(queue_url, messages)))
        except Exception as e:
            print(f"[relay] {invoke_url} failed, the batch will be retried: {e}", file=sys.stderr, flush=True)
            continue
        retry = {f["itemIdentifier"] for f in answer.get("batchItemFailures") or []}
        done = [m for m in messages if m["MessageId"] not in retry]
        if retry:
            print(f"[relay] {len(retry)} record(s) to retry at {invoke_url}", file=sys.stderr, flush=True)
        if done:
            try:
                sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
            except Exception as e:  # they come back and integrate again, harmlessly
                print(f"[relay] delete at {queue_url} failed: {e}", file=sys.stderr, flush=True)


def sweeper(invoke_urls):
    while True:
        time.sleep(30)
        for url in invoke_urls:
            try:
                invoke(url, {"task": "sweep"})
            except Exception as e:
                print(f"[relay] sweep at {url} failed: {e}", file=sys.stderr, flush=True)


def main():
    endpoint, topic_arn, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    urls = []
    for pair in pairs:
        queue_url, invoke_url = pair.split("=", 1)
        urls.append(invoke_url)
        threading.Thread(target=pump, args=(sqs, topic_arn, queue_url, invoke_url), daemon=True).start()
    threading.Thread(target=sweeper, args=(urls,), daemon=True).start()
    print(f"[relay] delivering to {len(pairs)} replica(s)", file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
