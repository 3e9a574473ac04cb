"""Firewall state as whole rulesets: the model, the normaliser and the differ (pure).

vpcd owns the chains named `vpcd-*` and, in builtin chains, only the rules that jump to
them (its hooks); of ipsets, those named `vpcd-*`. A table's state is exactly that:
`parse_save` reduces an `iptables-save` dump to it, so foreign chains and rules never
enter a comparison, and `restore_text` turns a difference into one
`iptables-restore --noflush` input that re-declares (which flushes) and refills only our
chains, deletes stale or duplicated hooks, inserts missing ones once and removes our
stale chains. Sets are rebuilt under a temporary name and swapped in, so a rule never
matches a half-filled set. Rules are rendered in the canonical form iptables-save
prints, so that an unchanged kernel compares equal and costs no restore.

Shared by observe (parsing) and the firewall planner (diffing); it imports neither.
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

PREFIX = "vpcd-"
BUILTIN_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})
IPSET_NAME_MAX = 31
# Per-namespace sysctls the firewall depends on (observe reads them in the host's).
BRIDGE_NF = "net.bridge.bridge-nf-call-iptables"
TCP_LOOSE = "net.netfilter.nf_conntrack_tcp_loose"
SYSCTL_KEYS = (BRIDGE_NF, TCP_LOOSE)
_TMP = "-tmp"


EB = "eb:"  # a table name with this prefix is ebtables' (the bridge family), e.g. "eb:filter"


def owned(name: str) -> bool:
    return name.startswith(PREFIX)


@dataclass(frozen=True)
class Ruleset:
    """Our part of one table: our chains' rules in order, and our hooks in order."""

    chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    hooks: tuple[tuple[str, str], ...] = ()  # (builtin chain, rule spec)


@dataclass(frozen=True)
class IpsetState:
    name: str
    type: str  # e.g. "hash:ip"
    members: frozenset[str] = frozenset()


@dataclass(frozen=True)
class NetnsFirewall:
    """Our tables and sets in one namespace: rendered (desired) or parsed (observed),
    and the namespace's sysctls the firewall depends on (rendered: the values it needs;
    observed: the values of every key the firewall may need)."""

    tables: Mapping[str, Ruleset] = field(default_factory=dict)
    sets: Mapping[str, IpsetState] = field(default_factory=dict)
    sysctls: Mapping[str, str] = field(default_factory=dict)


def _jump_target(spec: str) -> str | None:
    try:
        words = shlex.split(spec)
    except ValueError:
        return None
    for flag, target in itertools.pairwise(words):
        if flag in ("-j", "--jump", "-g", "--goto"):
            return target
    return None


def parse_save(text: str, table: str) -> Ruleset:
    """Our chains and hooks in `table` of an iptables-save dump; the rest is ignored."""
    chains: dict[str, list[str]] = {}
    hooks: list[tuple[str, str]] = []
    current: str | None = None
    for raw in text.splitlines():
        line = " ".join(raw.split())
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = line[1:]
        elif line == "COMMIT":
            current = None
        elif current != table:
            continue
        elif line.startswith(":"):
            name = line[1:].split(" ", 1)[0]
            if owned(name):
                chains.setdefault(name, [])
        elif line.startswith("-A "):
            chain, _, spec = line[3:].partition(" ")
            if owned(chain):
                chains.setdefault(chain, []).append(spec)
            elif chain in BUILTIN_CHAINS and owned(_jump_target(spec) or ""):
                hooks.append((chain, spec))
    return Ruleset({c: tuple(r) for c, r in chains.items()}, tuple(hooks))


def restore_text(table: str, want: Ruleset, have: Ruleset) -> str | None:
    """One `iptables-restore --noflush` input taking `have` to `want`; None if equal.

    Only chains whose rules differ are re-declared (which flushes them) and refilled: at
    1000 ports a change touches two chains, and restoring all thousand was what a one
    port change cost (seconds, under load past the 30 s restore timeout)."""
    if want == have:
        return None
    stale = sorted(set(have.chains) - set(want.chains))
    changed = sorted(c for c, rules in want.chains.items() if have.chains.get(c) != rules)
    edits = {c: e for c in changed if (e := chain_edits(c, want.chains[c], have.chains.get(c)))}
    refill = [c for c in changed if c not in edits]
    policy = "RETURN" if table.startswith(EB) else "- [0:0]"  # ebtables chains have one
    lines = [f"*{table.removeprefix(EB)}"]
    lines += [f":{chain} {policy}" for chain in [*refill, *stale]]
    redo = _misordered(want.hooks, have.hooks)
    kept: set[tuple[str, str]] = set()
    for hook in have.hooks:  # the first copy of a wanted hook stays; every other goes
        if hook in want.hooks and hook not in kept and hook[0] not in redo:
            kept.add(hook)
        else:
            lines.append(f"-D {hook[0]} {hook[1]}")
    for chain in changed:
        lines += edits.get(chain) or [f"-A {chain} {spec}" for spec in want.chains[chain]]
    for hook in reversed(want.hooks):
        if hook not in kept:
            lines.append(f"-I {hook[0]} 1 {hook[1]}")
            kept.add(hook)
    lines += [f"-X {chain}" for chain in stale]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _misordered(want: tuple[tuple[str, str], ...], have: tuple[tuple[str, str], ...]) -> set[str]:
    """Built-in chains whose hooks, kept in place with the missing ones inserted on top,
    would not come out in `want`'s order (an ACL hook must come before the groups' hook
    added earlier): there every hook of ours is deleted and inserted again, in order, in
    the same atomic restore. Elsewhere hooks stay put, counters and all."""
    redo = set()
    for chain in {c for c, _ in (*want, *have)}:
        wanted = [h for h in want if h[0] == chain]
        kept = list(dict.fromkeys(h for h in have if h[0] == chain and h in wanted))
        if [h for h in wanted if h not in kept] + kept != wanted:
            redo.add(chain)
    return redo


# Bucket chains of per-port jumps, and the chains jumping to the buckets
# (planners/secgroups.py). A port's change edits at most two lines of each: always in
# place, even in a chain of two, so no other port's jump is ever rewritten (its counters
# reset).
BUCKET_OUT, BUCKET_IN, BUCKET_ARP = "vpcd-sgo-", "vpcd-sgi-", "vpcd-arp-"
_EDITED_IN_PLACE = (BUCKET_OUT, BUCKET_IN, BUCKET_ARP, "vpcd-sg-FORWARD", "vpcd-ARP")
_FEW_EDITS = 4


def chain_edits(chain: str, want: tuple[str, ...], have: tuple[str, ...] | None) -> list[str]:
    """Rule deletes and inserts, by position, taking chain `have` to `want` when only a
    few rules came or went around an unchanged order (a port added to the 2000 jumps of
    vpcd-sg-FORWARD); [] when a flush and refill is the answer. The rules outside the
    edit are never rewritten, so their counters and the kernel's work stay put."""
    if not have or len(set(have)) != len(have) or len(set(want)) != len(want):
        return []
    kept_have, kept_want = set(have), set(want)
    gone = [i for i, spec in enumerate(have) if spec not in kept_want]
    new = [i for i, spec in enumerate(want) if spec not in kept_have]
    few = chain.startswith(_EDITED_IN_PLACE) and len(gone) + len(new) <= _FEW_EDITS
    if not few and (len(gone) + len(new)) * 4 > len(want):
        return []
    if [r for r in have if r in kept_want] != [r for r in want if r in kept_have]:
        return []  # the kept rules moved: order matters in a chain
    lines = [f"-D {chain} {i + 1}" for i in reversed(gone)]  # from the end: numbers hold
    return lines + [f"-I {chain} {i + 1} {want[i]}" for i in new]  # ascending: likewise


# ------------------------------------------------------------------------ ipsets


def tmp_set_name(name: str) -> str:
    tmp = name + _TMP
    if len(tmp) > IPSET_NAME_MAX:
        raise ValueError(f"ipset name {name!r} too long for its temporary twin")
    return tmp


def parse_ipset_save(text: str) -> dict[str, IpsetState]:
    """Our sets in an `ipset save` dump (a leftover temporary set included: it is stale)."""
    types: dict[str, str] = {}
    members: dict[str, set[str]] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "create" and owned(words[1]):
            types[words[1]] = words[2]
            members.setdefault(words[1], set())
        elif len(words) >= 3 and words[0] == "add" and owned(words[1]):
            members.setdefault(words[1], set()).add(words[2])
    return {n: IpsetState(n, t, frozenset(members[n])) for n, t in types.items()}


def ipset_swap_text(sets: Iterable[IpsetState]) -> str:
    """`ipset restore` input that rebuilds each set under a temporary name and swaps it in."""
    lines: list[str] = []
    for s in sorted(sets, key=lambda s: s.name):
        tmp = tmp_set_name(s.name)
        lines += [f"create {tmp} {s.type} -exist", f"flush {tmp}"]
        lines += [f"add {tmp} {m}" for m in sorted(s.members)]
        lines += [f"create {s.name} {s.type} -exist", f"swap {tmp} {s.name}", f"destroy {tmp}"]
    return "\n".join(lines) + "\n"


def ipset_update_text(sets: Iterable[IpsetState], have: Mapping[str, IpsetState]) -> str:
    """`ipset restore` input taking each set from `have` to its wanted members: a few
    members come or go as single adds and deletes (each atomic, and the set is never
    half-filled: a port joining a 1000-member group is one line, not 1000); a new set,
    a changed type or a large change is rebuilt and swapped in (`ipset_swap_text`)."""
    lines: list[str] = []
    rebuild = []
    for s in sorted(sets, key=lambda s: s.name):
        old = have.get(s.name)
        if old is None or old.type != s.type or len(old.members ^ s.members) * 4 > len(s.members):
            rebuild.append(s)
            continue
        lines += [f"del {s.name} {m} -exist" for m in sorted(old.members - s.members)]
        lines += [f"add {s.name} {m} -exist" for m in sorted(s.members - old.members)]
    text = "\n".join(lines) + "\n" if lines else ""
    return text + (ipset_swap_text(rebuild) if rebuild else "")


def changed_sets(want: Mapping[str, IpsetState], have: Mapping[str, IpsetState]) -> list[str]:
    return sorted(n for n, s in want.items() if have.get(n) != s)


def stale_sets(want: Mapping[str, IpsetState], have: Mapping[str, IpsetState]) -> list[str]:
    return sorted(set(have) - set(want))
