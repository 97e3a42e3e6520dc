"""Fixtures of the agent tests; the helpers live in ``agent_processes`` (a unique module name)."""

from agent_processes import agents, module_agents

__all__ = ["agents", "module_agents"]
