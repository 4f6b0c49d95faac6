"""The route table follows the swarm: when an instance's task moves to
another node (its node was lost) or stops running, its launcher rewrites
its placement, and the runtime daemon, which looks at every pass, publishes
the route table again so the router proxies to where it runs now.

Meanwhile the router's own retries keep requests on the instances that
answer: a connection refused by a lost node's address is tried on another.
"""
from dotcloud import logs, placement, routes
from dotcloud.state import Store

log = logs.get("runtime")


class RouteFollower:
    """Remembers the addresses last published (mutable)."""

    def __init__(self, settings, store: Store):
        self.settings = settings
        self.store = store
        self.published: tuple | None = None

    def addresses(self) -> tuple:
        return tuple(sorted((inst.id, placement.address(self.settings.data, inst.spec) or "")
                            for inst in self.store.instances(live_only=True)
                            if inst.desired == "run"))

    def follow(self) -> bool:
        """Publish the routes when an address changed; True if it did."""
        now = self.addresses()
        if now == self.published:
            return False
        if self.published is not None:
            moved = sorted(set(now) - set(self.published))
            log.info("routes_follow_placements", changed=[f"#{i} {a or 'nowhere'}"
                                                          for i, a in moved])
        routes.publish(self.settings, self.store)
        self.published = now
        return True
