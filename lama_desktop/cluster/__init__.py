"""Cluster: protocol, scheduler, agent, workers, journal (asyncio + ZeroMQ, no Qt)."""
