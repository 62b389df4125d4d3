"""Find agents on the local network: zeroconf announce (agent side) and browse (desktop side)."""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from dataclasses import dataclass

from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceListener, Zeroconf
from zeroconf.asyncio import AsyncZeroconf

from lama_desktop.cluster.keys import is_z85_key

log = logging.getLogger(__name__)

SERVICE_TYPE = "_lama-agent._tcp.local."


@dataclass(frozen=True)
class DiscoveredAgent:
    """An agent seen on the network; pairing still needs its one-time code."""

    name: str
    host: str
    port: int
    server_key: str
    addresses: tuple[str, ...] = ()  # every address announced, preferred (host) first


def _instance_label(name: str) -> str:
    # DNS-SD instance labels are at most 63 bytes and must not contain dots.
    return name.replace(".", "-")[:63] or "lama-agent"


def service_info(name: str, port: int, server_key: str, addresses: list[str]) -> ServiceInfo:
    """The DNS-SD record an agent announces: its name, port, addresses and Curve server key.

    The server key is public (it only lets a desktop check it talks to the right agent);
    the one-time pairing code is never announced.
    """
    return ServiceInfo(
        SERVICE_TYPE,
        f"{_instance_label(name)}.{SERVICE_TYPE}",
        port=port,
        properties={"name": name, "key": server_key, "v": "1"},
        parsed_addresses=addresses,
        server=f"{_instance_label(socket.gethostname())}.local.",
    )


def agent_from_info(info: ServiceInfo) -> DiscoveredAgent | None:
    """The agent a resolved record describes, or None for a record that is not one of ours."""
    props = {
        (k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)): (
            v.decode("utf-8", "replace") if isinstance(v, bytes) else ""
        )
        for k, v in info.properties.items()
    }
    key = props.get("key", "")
    addresses = info.parsed_addresses()
    if not is_z85_key(key) or not addresses or not info.port:
        return None
    # Prefer IPv4: it is what users see in their router and what most LANs route.
    addresses.sort(key=lambda a: ipaddress.ip_address(a).version)
    name = props.get("name") or info.name.removesuffix("." + SERVICE_TYPE)
    return DiscoveredAgent(name, addresses[0], info.port, key, tuple(addresses))


def lan_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses (what an announce should carry)."""
    import psutil

    found = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                found.append(addr.address)
    return found


class Announcer:
    """Announces one agent on the LAN while started (agents run it unless --no-announce).

    `interfaces` limits where (tests use ["127.0.0.1"] so nothing reaches the real network).
    """

    def __init__(
        self, name: str, port: int, server_key: str, interfaces: list[str] | None = None
    ) -> None:
        self.interfaces = interfaces
        addresses = interfaces if interfaces is not None else lan_addresses()
        self.info = service_info(name, port, server_key, addresses)
        self._zeroconf: AsyncZeroconf | None = None

    async def start(self) -> None:
        """Register the record; failure to announce is logged, never fatal."""
        try:
            if self.interfaces is None:
                self._zeroconf = AsyncZeroconf()
            else:
                self._zeroconf = AsyncZeroconf(
                    interfaces=self.interfaces, ip_version=IPVersion.V4Only
                )
            await self._zeroconf.async_register_service(self.info, allow_name_change=True)
            log.info("announced %s on the local network", self.info.name)
        except Exception as exc:
            log.warning("could not announce on the local network: %s", exc)
            await self.stop()

    async def stop(self) -> None:
        """Withdraw the record and close the sockets."""
        if self._zeroconf is None:
            return
        zc, self._zeroconf = self._zeroconf, None
        try:
            await zc.async_unregister_all_services()
        finally:
            await zc.async_close()


class _Collector(ServiceListener):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.names.add(name)

    def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.names.add(name)

    def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.names.discard(name)


def browse(timeout: float = 2.0, interfaces: list[str] | None = None) -> list[DiscoveredAgent]:
    """Agents announcing on the LAN within `timeout` seconds (blocking: not on the GUI thread)."""
    if interfaces is None:
        zc = Zeroconf()
    else:
        zc = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
    try:
        collector = _Collector()
        browser = ServiceBrowser(zc, SERVICE_TYPE, collector)
        time.sleep(timeout)
        browser.cancel()
        found: dict[tuple[str, int], DiscoveredAgent] = {}
        for name in sorted(collector.names):
            info = zc.get_service_info(SERVICE_TYPE, name, timeout=int(timeout * 1000))
            agent = agent_from_info(info) if info is not None else None
            if agent is not None:
                found[(agent.host, agent.port)] = agent
        return list(found.values())
    finally:
        zc.close()


def advertised_host(bind_host: str) -> str:
    """The host a pairing link should name: the bind address, or this machine's LAN address."""
    if bind_host not in ("*", "0.0.0.0", "::", ""):
        return bind_host
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))  # UDP connect sends nothing; it picks a route
        return str(probe.getsockname()[0])
    except OSError:
        return socket.gethostname()
    finally:
        probe.close()
