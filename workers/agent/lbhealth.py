"""What the agent measures of its load balancers between and during syncs: haproxy's
stats per load balancer, and its own UDP-CONNECT probes of UDP members with their
rise/fall counting (max_retries successes bring a member back, max_retries_down failures
in a row take it out of the DNAT rules)."""

from __future__ import annotations

from workers.agent import drivers, names
from workers.agent.desired import Desired


class LbHealth:
    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        # UDP member id -> (failures in a row, successes in a row, up)
        self._udp: dict[str, tuple[int, int, bool]] = {}

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
        """One UDP-CONNECT round over the monitored UDP pools' members."""
        seen = set()
        for lb_id, lb in desired.lbs.items():
            for pool in lb.pools:
                mon = pool.monitor
                if pool.protocol != "UDP" or mon is None or not mon.admin_state_up:
                    continue
                members = [m for m in pool.members if m.admin_state_up]
                try:
                    ups = drivers.udp_probe(
                        desired.lb_netns[lb_id],
                        [(m.address, m.protocol_port) for m in members],
                        mon.timeout,
                    )
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
