"""ORM models, one module per aggregate; importing this registers every table."""

from models.base import Base
from models.host import Host
from models.hoststate import HostStateRow, Realisation
from models.idempotency import IdempotencyRecord
from models.loadbalancer import HealthMonitor, Listener, LoadBalancer, Member, Pool
from models.nacl import NetworkAcl, NetworkAclEntry
from models.nettypes import AddressScope, PhysicalNetwork, PhysicalNetworkGrant
from models.network import DnsName, Port, PortSecurityGroup, Subnet, Vpc
from models.routing import ExternalIp, ExternalNetwork, FloatingIp, Router, RouterInterface
from models.security import SecurityGroup, SecurityGroupRule
from models.tenant import ApiToken, Quota, Tenant

__all__ = [
    "AddressScope",
    "ApiToken",
    "Base",
    "DnsName",
    "ExternalIp",
    "ExternalNetwork",
    "FloatingIp",
    "HealthMonitor",
    "Host",
    "HostStateRow",
    "IdempotencyRecord",
    "Listener",
    "LoadBalancer",
    "Member",
    "NetworkAcl",
    "NetworkAclEntry",
    "PhysicalNetwork",
    "PhysicalNetworkGrant",
    "Pool",
    "Port",
    "PortSecurityGroup",
    "Quota",
    "Realisation",
    "Router",
    "RouterInterface",
    "SecurityGroup",
    "SecurityGroupRule",
    "Subnet",
    "Tenant",
    "Vpc",
]
