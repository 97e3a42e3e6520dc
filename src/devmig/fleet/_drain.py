"""Drains: empty a host through journalled migrations (work in progress)."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["drains_router"]

drains_router = APIRouter(tags=["drains"])
