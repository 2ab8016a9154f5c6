"""Call control: the asyncio glue around the queue machine, in parts that own one job.

- ``desk``: the door the edge and the HTTP API use; assembles the others.
- ``commit``: group commit, the queue's timers, the lock.
- ``follower``: other nodes' journal entries, the node heartbeat, presence kept for later.
- ``router``: events to wire messages, by a table of small handlers.
- ``estimates``: wait ranges, cached per service, and what each kiosk was told.
- ``views``: messages built from the queue's state (catalogues, status, offers).
- ``metrics_tap``: what the events of this node count in the metrics.
"""

from .desk import Desk
from .follower import NodeRegistry

__all__ = ["Desk", "NodeRegistry"]
