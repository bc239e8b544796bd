"""Checks that scripts/moto_server.py bounds moto's state: messages published through a topic to
two filtered queues and deleted leave nothing behind but a recent window (in-process moto, the
same models the server runs), and SNS signs with one key. Fails if a moto upgrade brings back an
unbounded record."""

import gc
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import moto_server  # noqa: E402,F401  (applies the bounds)
import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto.sns import models as sns_models  # noqa: E402
from moto.sqs import models as sqs_models  # noqa: E402

MESSAGES = 3000


def main():
    # In-process moto: requests to an endpoint override would go to a real server instead.
    for name in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]
    with mock_aws():
        sns, sqs = boto3.client("sns", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
        topic = sns.create_topic(Name="collab-ops")["TopicArn"]
        queues = []
        for replica in ("1", "2"):
            url = sqs.create_queue(QueueName=f"replication-{replica}")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            policy = json.dumps({"replica_id": [{"anything-but": [replica]}]})
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"FilterPolicy": policy})
            queues.append(url)
        body = json.dumps({"origin": 3, "type": "ops", "ops": ["x" * 200]})
        attrs = {"replica_id": {"DataType": "String", "StringValue": "3"}}
        for _ in range(MESSAGES // 10):
            sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=[
                {"Id": str(k), "Message": body, "MessageAttributes": attrs} for k in range(10)])
            for url in queues:
                while ms := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
                    sqs.delete_message_batch(QueueUrl=url, Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(ms)])
        gc.collect()
        kept = sum(1 for o in gc.get_objects() if isinstance(o, sqs_models.Message))
        topics = [o for o in gc.get_objects() if isinstance(o, sns_models.Topic)]
        queues_ = [o for o in gc.get_objects() if isinstance(o, sqs_models.Queue)]
        if not topics or len(queues_) < 2:
            sys.exit("the in-process moto holds no topic or queues: the check measured nothing")
        sent = max(len(t.sent_notifications) for t in topics)
        backends = [o for o in gc.get_objects() if isinstance(o, sns_models.SNSBackend)]
        certificates = max(len(b._message_public_keys) for b in backends)
        subscriptions = [o for o in gc.get_objects() if isinstance(o, sns_models.Subscription)]
        keys = {id(s.private_key()) for s in subscriptions}
        deleted = max(len(q.deleted_messages) for q in queues_)
        problems = []
        if kept:
            problems.append(f"{kept} deleted SQS messages are still held")
        if sent > moto_server.RECENT:
            problems.append(f"a topic holds {sent} published messages")
        if deleted > 100 * moto_server.RECENT:
            problems.append(f"a queue holds {deleted} deleted receipt handles")
        if certificates > moto_server.RECENT:
            problems.append(f"SNS holds {certificates} signing certificates")
        if len(keys) != 1:
            problems.append(f"{len(keys)} signing keys for {len(subscriptions)} subscriptions (one key generation each)")
        if problems:
            sys.exit("moto's state grows: " + "; ".join(problems))
        print(f"moto's state stays bounded after {MESSAGES} messages through two queues "
              f"(SQS messages held: {kept}, topic record: {sent}, deleted handles: {deleted}, "
              f"certificates: {certificates}, signing keys: {len(keys)})")


if __name__ == "__main__":
    main()
