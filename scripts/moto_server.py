"""moto's server with bounded state, for `make dev`, the tests and the soak.

moto keeps, for its dashboard and inspection API, every model instance it ever made
(`BaseModel.instances_tracked`: every SQS message, deleted or not), every message ever published
to a topic (`Topic.sent_notifications`) and every receipt handle ever deleted from a queue
(`Queue.deleted_messages`). Under a long run that is memory without bound (about 500 MB after
40,000 messages through two queues), and the more Python objects a process holds the longer each
of its full garbage collections takes, so every request gets slower the longer the server runs.
Nothing here reads those records: instances are not tracked, and the other two keep a recent
window (the published messages for moto's inspection API, the deleted receipt handles so that
deleting a message twice stays harmless).

Each SNS notification to an SQS subscription is signed, as AWS signs it: moto makes an RSA key
per subscription object (`Subscription.private_key`, cached per instance, and generated again
whenever moto rebuilds the subscription), builds and signs a certificate per message, and keeps
every certificate it ever made (`SNSBackend._message_public_keys`). Under load the key
generations alone held the server's CPU. Here one key and one certificate serve the process;
each notification is still signed (signature version 2, as AWS sends it).

Two costs grow with load, not with state, and are cut here too. Every request picks its service
under one server-wide lock, and the pick lists moto's package directories from disk and tries
every service's URL patterns: with many concurrent requests most of the server's time went to
waiting for that lock; the pick is remembered per host. And every SQS send checks the message's
retention through the queue's whole attribute set, which counts the messages several times over:
a send cost grew with the queue; it reads the one attribute now.

Usage: the same arguments as `moto_server`.
"""

import base64
import collections
import datetime
import faulthandler
import signal
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from moto import backends as moto_backends
from moto.core import common_models
from moto.core.utils import iso_8601_datetime_with_milliseconds, unix_time
from moto.moto_server import werkzeug_app
from moto.server import main
from moto.sns import models as sns
from moto.sqs import models as sqs

RECENT = 1000


class RecentSet:
    """A set that forgets its oldest members beyond `limit` (insertion order)."""

    def __init__(self, limit):
        self.items = collections.OrderedDict()
        self.limit = limit

    def __contains__(self, item):
        return item in self.items

    def add(self, item):
        self.items[item] = None
        self.items.move_to_end(item)
        while len(self.items) > self.limit:
            self.items.popitem(last=False)

    def update(self, items):
        for item in items:
            self.add(item)

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        return iter(self.items)


_topic_init = sns.Topic.__init__


def _bounded_topic(self, *args, **kwargs):
    _topic_init(self, *args, **kwargs)
    self.sent_notifications = collections.deque(maxlen=RECENT)


_queue_init = sqs.Queue.__init__


def _bounded_queue(self, *args, **kwargs):
    _queue_init(self, *args, **kwargs)
    self.deleted_messages = RecentSet(100 * RECENT)


def _untracked(cls, *args, **kwargs):
    return object.__new__(cls)


_SIGNING = []


def _signing():
    """One RSA key and one certificate for the process, made on first use."""
    if not _SIGNING:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                       .public_key(key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=365))
                       .sign(key, hashes.SHA256()))
        _SIGNING.append((key, certificate.public_bytes(serialization.Encoding.PEM)))
    return _SIGNING[0]


def _one_key(self):
    return _signing()[0]


def _notification(self, message, message_id, subject, message_attributes=None):
    """The SQS body of a notification, as SNS sends it (signature version 2), signed with the
    process's key and certificate instead of a certificate made for every message."""
    key, pem = _signing()
    region = self.topic.sns_backend.region_name
    sns.sns_backends[sns.DEFAULT_ACCOUNT_ID][region]._message_public_keys[_CERTIFICATE] = pem
    timestamp = iso_8601_datetime_with_milliseconds()
    signed = "".join(f"{k}\n{v}\n" for k, v in [
        ("Message", message), ("MessageId", message_id), ("Timestamp", timestamp),
        ("TopicArn", self.topic.arn), ("Type", "Notification")])
    signature = key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    data = {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": self.topic.arn,
        "Message": message,
        "Timestamp": timestamp,
        "SignatureVersion": "2",
        "Signature": base64.b64encode(signature).decode(),
        "SigningCertURL": f"https://sns.{region}.amazonaws.com/{_CERTIFICATE}",
        "UnsubscribeURL": f"https://sns.{region}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={self.arn}",
    }
    if subject:
        data["Subject"] = subject
    if message_attributes:
        data["MessageAttributes"] = message_attributes
    return data


_CERTIFICATE = "SimpleNotificationService-local.pem"
_MODULES = tuple(moto_backends.list_of_moto_modules())
_backend_for_host = werkzeug_app.DomainDispatcherApplication.get_backend_for_host
_HOSTS = {}


def _remembered_backend_for_host(self, host):
    if host not in _HOSTS:
        if len(_HOSTS) > RECENT:
            _HOSTS.clear()
        _HOSTS[host] = _backend_for_host(self, host)
    return _HOSTS[host]


def _retained(self, queue_name, message):
    queue = self.get_queue(queue_name)
    return int(queue.message_retention_period) + message.sent_timestamp / 1000 > unix_time()


common_models.BaseModel.__new__ = staticmethod(_untracked)
moto_backends.list_of_moto_modules = lambda: _MODULES
werkzeug_app.DomainDispatcherApplication.get_backend_for_host = _remembered_backend_for_host
sqs.SQSBackend.is_message_valid_based_on_retention_period = _retained
sns.Subscription.private_key = _one_key
sns.Subscription.get_post_data = _notification
sns.Topic.__init__ = _bounded_topic
sqs.Queue.__init__ = _bounded_queue

if __name__ == "__main__":
    # `kill -USR1 <pid>` prints every thread's stack to stderr (the fault test does, when a
    # check fails, to show what the server was doing).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    sys.argv[0] = "moto_server"
    sys.exit(main())
