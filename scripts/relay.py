#!/usr/bin/env python3
"""Local stand-in for SNS -> Lambda delivery (`make dev` with several replicas).

moto cannot invoke Lambda functions, so each replica subscribes an SQS queue to the shared topic,
with the same filter policy as template.yaml (it never receives its own messages). This relay
long-polls every replica's queue and hands each notification to that replica's `integrate`
function as a real SNS event, through cargo lambda's invoke endpoint. A message is deleted only
after the function succeeded, so a failure is retried when the queue makes it visible again, as
SNS would. Every 30 seconds it also invokes each replica's outbox sweep, as the schedule does in
AWS.

Usage: relay.py <endpoint_url> <topic_arn> <queue_url>=<invoke_url> [...]
"""

import json
import sys
import threading
import time
import urllib.request

import boto3


def sns_event(topic_arn, notification):
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": topic_arn + ":relay",
                "Sns": {
                    "Type": notification.get("Type", "Notification"),
                    "MessageId": notification["MessageId"],
                    "TopicArn": notification["TopicArn"],
                    "Subject": notification.get("Subject"),
                    "Message": notification["Message"],
                    "Timestamp": notification["Timestamp"],
                    "SignatureVersion": notification.get("SignatureVersion", "1"),
                    "Signature": notification.get("Signature", "local"),
                    "SigningCertUrl": notification.get("SigningCertURL", "https://localhost/cert.pem"),
                    "UnsubscribeUrl": notification.get("UnsubscribeURL", "https://localhost/unsubscribe"),
                    "MessageAttributes": notification.get("MessageAttributes", {}),
                },
            }
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
            got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=10)
        except Exception as e:  # moto restarting, network hiccup: try again
            print(f"[relay] receive from {queue_url} failed: {e}", file=sys.stderr, flush=True)
            time.sleep(1)
            continue
        for m in got.get("Messages", []):
            try:
                invoke(invoke_url, sns_event(topic_arn, json.loads(m["Body"])))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
            except Exception as e:
                print(f"[relay] {invoke_url} failed, will retry: {e}", file=sys.stderr, flush=True)


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
