"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import StoreDep
from rag.store import StoreUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The store answers; how many papers it holds")
def readyz(store: StoreDep) -> JSONResponse:
    try:
        store.heartbeat()
        papers = store.paper_count()
        chunks = store.count()
    except StoreUnavailable as exc:
        return JSONResponse(
            {"status": "unavailable", "store": {"ok": False, "error": str(exc)}}, status_code=503
        )
    except Exception as exc:  # a store that answers heartbeat but fails reads is not ready
        return JSONResponse(
            {"status": "unavailable", "store": {"ok": False, "error": str(exc)}}, status_code=503
        )
    return JSONResponse(
        {
            "status": "ready",
            "store": {
                "ok": True,
                "location": store.location,
                "collection": store.name,
                "papers": papers,
                "chunks": chunks,
            },
        }
    )
