"""Liveness, readiness and metrics."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import MetricsDep, SettingsDep, StoreDep
from api.errors import redact_paths, without_userinfo
from rag.generate import check_generator
from rag.index.store import Store

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


# /readyz is open to anyone (load balancers call it without a key): it names no file,
# directory or model path of this machine, and no credentials inside a URL.
def _store_status(store: Store) -> dict[str, object]:
    kind = "server" if "://" in store.location else "embedded"
    try:
        store.heartbeat()
        return {
            "ok": True,
            "kind": kind,
            "collection": store.name,
            "papers": store.paper_count(),
            "chunks": store.count(),
        }
    except Exception as exc:  # a store that answers heartbeat but fails reads is not ready
        error = str(exc).replace(store.location, f"the {kind} store")
        return {"ok": False, "kind": kind, "error": redact_paths(error)}


def _llm_status(status: dict[str, object]) -> dict[str, object]:
    out = {k: v for k, v in status.items() if k != "model_path"}
    if "model_path" in status:
        out["model"] = os.path.basename(str(status["model_path"]))
    if isinstance(out.get("base_url"), str):
        out["base_url"] = without_userinfo(str(out["base_url"]))
    if isinstance(out.get("error"), str):
        out["error"] = redact_paths(str(out["error"]))
    return out


@router.get(
    "/readyz",
    summary="The store answers (503 if not); the configured LLM's reachability",
    description="`status` is `ready`, `degraded` (the LLM is unreachable: answers fall "
    "back to the extractive generator) or `unavailable` (the store is down: 503).",
)
async def readyz(request: Request, store: StoreDep, settings: SettingsDep) -> JSONResponse:
    store_status = await run_in_threadpool(_store_status, store)
    llm = _llm_status(
        await run_in_threadpool(
            check_generator, settings.llm, settings, min(3.0, settings.request_timeout)
        )
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
            "log_seq": current.position.seq if current and current.position else None,
            "rebuilding": lexical.rebuilding,  # the current view answers meanwhile
        }
    return JSONResponse(body, status_code=code)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(m: MetricsDep) -> Response:
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
