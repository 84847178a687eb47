"""Injected dependencies of the routes: the worker's service, its store, the admin check."""

from __future__ import annotations

from fastapi import HTTPException, Request
from ja3svc.api.auth import check_admin
from ja3svc.api.service import PolicyService
from ja3svc.store.policy_store import PolicyStore


def get_service(request: Request) -> PolicyService:
    return request.app.state.service  # type: ignore[no-any-return]


def get_store(request: Request) -> PolicyStore:
    return get_service(request).store


def require_admin(request: Request) -> None:
    reason = check_admin(request.headers, get_service(request).settings.admin_token)
    if reason is not None:
        raise HTTPException(
            status_code=401,
            detail={"error": "unauthorized", "reason": reason},
            headers={"WWW-Authenticate": "Bearer"},
        )
