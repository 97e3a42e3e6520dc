"""Fixtures of the inventory tests; the helpers live in ``fleet_env`` (tests/support)."""

from fleet_env import agents, db_url, inventory, make_inventory, pg_url, shared_agent

__all__ = ["agents", "db_url", "inventory", "make_inventory", "pg_url", "shared_agent"]
