"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import MetricsDep, SettingsDep, StoreDep
from rag.generate import check_generator
from rag.store import Store

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _store_status(store: Store) -> dict[str, object]:
    try:
        store.heartbeat()
        return {
            "ok": True,
            "location": store.location,
            "collection": store.name,
            "papers": store.paper_count(),
            "chunks": store.count(),
        }
    except Exception as exc:  # a store that answers heartbeat but fails reads is not ready
        return {"ok": False, "location": store.location, "error": str(exc)}


@router.get(
    "/readyz",
    summary="The store answers (503 if not); the configured LLM's reachability",
    description="`status` is `ready`, `degraded` (the LLM is unreachable: answers fall "
    "back to the extractive generator) or `unavailable` (the store is down: 503).",
)
async def readyz(request: Request, store: StoreDep, settings: SettingsDep) -> JSONResponse:
    store_status = await run_in_threadpool(_store_status, store)
    llm = await run_in_threadpool(
        check_generator, settings.llm, settings, min(3.0, settings.request_timeout)
    )
    if not store_status["ok"]:
        status, code = "unavailable", 503
    elif not llm["ok"]:
        status, code = "degraded", 200
    else:
        status, code = "ready", 200
    warmup = getattr(request.app.state, "warmup", {"running": False, "sentences": 0})
    body = {"status": status, "store": store_status, "llm": llm, "warmup": dict(warmup)}
    chain = getattr(request.app.state, "chain", None)
    if chain is not None:
        lexical = chain.retriever.lexical
        current = lexical.current
        body["bm25"] = {
            "chunks": len(current) if current is not None else 0,
            "version": current.version if current is not None else None,
            "rebuilding": lexical.rebuilding,  # the old index answers meanwhile
        }
    return JSONResponse(body, status_code=code)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(m: MetricsDep) -> Response:
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
