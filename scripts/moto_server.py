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

Usage: the same arguments as `moto_server`.
"""

import collections
import faulthandler
import signal
import sys

from moto.core import common_models
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


common_models.BaseModel.__new__ = staticmethod(_untracked)
sns.Topic.__init__ = _bounded_topic
sqs.Queue.__init__ = _bounded_queue

if __name__ == "__main__":
    # `kill -USR1 <pid>` prints every thread's stack to stderr (the fault test does, when a
    # check fails, to show what the server was doing).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    sys.argv[0] = "moto_server"
    sys.exit(main())
