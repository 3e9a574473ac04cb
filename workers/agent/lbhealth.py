"""What the agent measures of its load balancers between and during syncs: haproxy's
stats per load balancer, and its own UDP-CONNECT or PING probes of UDP members with their
rise/fall counting (max_retries successes bring a member back, max_retries_down failures
in a row take it out of the DNAT rules).

The service measures at the pace of the shortest monitor delay (`pace`), not the
heartbeat's; each pool is probed only once its own monitor's delay has passed."""

from __future__ import annotations

import time
from collections.abc import Callable

from workers.agent import drivers, names
from workers.agent.desired import Desired

IDLE = 5.0  # the measuring pace with no monitor to follow (the heartbeat's)
FASTEST = 0.5  # never faster than this, whatever a monitor asks


class LbHealth:
    def __init__(self, state_dir: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.state_dir = state_dir
        self.clock = clock
        # UDP member id -> (failures in a row, successes in a row, up)
        self._udp: dict[str, tuple[int, int, bool]] = {}
        self._probed: dict[str, float] = {}  # UDP pool id -> when it was last probed

    @staticmethod
    def pace(desired: Desired | None) -> float:
        """Seconds between measurements: the shortest delay of any enabled monitor."""
        delays = [
            pool.monitor.delay
            for lb in (desired.lbs.values() if desired is not None else ())
            for pool in lb.pools
            if pool.monitor is not None and pool.monitor.admin_state_up
        ]
        return max(FASTEST, min(delays)) if delays else IDLE

    def down(self) -> frozenset[str]:
        return frozenset(m for m, (_, _, up) in self._udp.items() if not up)

    def up(self) -> dict[str, bool]:
        return {m: up for m, (_, _, up) in self._udp.items()}

    def stats(self, desired: Desired) -> dict[str, str]:
        """`show stat` of each load balancer's haproxy ("" where none answers)."""
        return {
            lb_id: drivers.haproxy.show_stat(
                str(drivers.haproxy.files(self.state_dir, names.lb_token(lb_id))[1])
            )
            for lb_id in desired.lbs
        }

    def probe(self, desired: Desired) -> None:
        """One UDP-CONNECT (or PING) round over the monitored UDP pools' members."""
        seen: set[str] = set()
        now = self.clock()
        for lb_id, lb in desired.lbs.items():
            for pool in lb.pools:
                mon = pool.monitor
                if pool.protocol != "UDP" or mon is None or not mon.admin_state_up:
                    continue
                members = [m for m in pool.members if m.admin_state_up]
                last = self._probed.get(pool.id)
                if last is not None and now - last < mon.delay - FASTEST / 2:
                    seen.update(m.id for m in members)  # not its turn: keep its counts
                    continue
                self._probed[pool.id] = now
                netns = desired.lb_netns[lb_id]
                try:
                    if mon.type == "PING":
                        ups = drivers.icmp_probe(netns, [m.address for m in members], mon.timeout)
                    else:
                        targets = [(m.address, m.protocol_port) for m in members]
                        ups = drivers.udp_probe(netns, targets, mon.timeout)
                except Exception:  # the namespace is not there yet: nothing to learn
                    continue
                for m, ok in zip(members, ups, strict=True):
                    seen.add(m.id)
                    fails, oks, up = self._udp.get(m.id, (0, 0, True))
                    fails, oks = (0, oks + 1) if ok else (fails + 1, 0)
                    if up and fails >= mon.max_retries_down:
                        up = False
                    elif not up and oks >= mon.max_retries:
                        up = True
                    self._udp[m.id] = (fails, oks, up)
        self._udp = {m: v for m, v in self._udp.items() if m in seen}
        pools = {p.id for lb in desired.lbs.values() for p in lb.pools}
        self._probed = {p: t for p, t in self._probed.items() if p in pools}
