"""``goa serve``: GoA pools as an OpenAI-compatible endpoint (the ``serve`` extra).

Each ``--pool`` is the model ``goa/<pool>``. fastapi and uvicorn are imported
inside the command, so ``goa --help`` stays light; without them the command
names the extra to install. A host other than loopback needs a bearer token
(``--token-env VAR`` or ``--token``) unless ``--allow-no-token`` says otherwise.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Annotated, Any

import typer

from cli import goa_options as opt
from cli.errors import fail, reports_errors


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _token(token: str | None, token_env: str | None) -> str | None:
    if token is not None and token_env is not None:
        raise fail("give --token or --token-env, not both")
    if token_env is not None:
        value = os.environ.get(token_env, "")
        if not value.strip():
            raise fail(f"--token-env {token_env}: the environment variable is not set or empty")
        return value.strip()
    if token is not None and not token.strip():
        raise fail("--token is empty")
    return token.strip() if token is not None else None


@reports_errors
def serve_command(
    pool: Annotated[
        list[str] | None,
        typer.Option(
            help="A pool to serve as the model goa/POOL (repeatable; default: the "
            "configured default pool)."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    token_env: Annotated[
        str | None,
        typer.Option(help="Environment variable holding the bearer token clients must send."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help="The bearer token (visible to other users in ps; prefer --token-env)."),
    ] = None,
    allow_no_token: Annotated[
        bool, typer.Option(help="Serve on a non-loopback host without a token.")
    ] = False,
    max_concurrency: Annotated[
        int, typer.Option(min=1, help="GoA runs at once; more requests wait in the queue.")
    ] = 4,
    max_queue: Annotated[
        int, typer.Option(min=0, help="Requests that may wait; beyond them: 503 + Retry-After.")
    ] = 16,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Largest request body.")] = 1 << 20,
    max_messages: Annotated[int, typer.Option(min=1, help="Most messages in a request.")] = 64,
    drain_timeout: Annotated[
        float,
        typer.Option(min=0.0, help="Seconds a shutdown waits for runs in progress to finish."),
    ] = 30.0,
    cache: Annotated[
        bool,
        typer.Option(help="Answer repeated deterministic calls from the shared response cache."),
    ] = True,
    k: opt.KOption = 3,
    pooling: opt.PoolingOption = opt.PoolingChoice.max,
    selector: opt.SelectorOption = opt.SelectorChoice.llm,
    judge: opt.JudgeOption = opt.JudgeChoice.prompt,
    rounds: opt.RoundsOption = 1,
    early_exit: opt.EarlyExitOption = False,
    structured: opt.StructuredOption = False,
    max_tokens: Annotated[
        int, typer.Option(min=1, help="Most tokens per call (a request's max_tokens overrides).")
    ] = 512,
    timeout: opt.TimeoutOption = None,
    budget: opt.BudgetOption = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve pools as an OpenAI-compatible endpoint: /v1/models, /v1/chat/completions
    (streaming too) and /healthz. SIGTERM or Ctrl-C drains (new requests get 503) and stops."""
    bearer = _token(token, token_env)
    if bearer is None and not is_loopback(host) and not allow_no_token:
        raise fail(
            f"refusing to serve on {host} without a token: set --token-env VAR "
            "(or pass --allow-no-token)"
        )
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise fail(
            f"goa serve needs the 'serve' extra ({exc.name} is missing): pip install 'goa[serve]'"
        ) from None
    from goa import paths
    from goa.inference.cache import ResponseCache
    from goa.pools import default_pool_name, load_pool
    from goa.serve import ServedPool, create_app, model_id, serve

    if selector is opt.SelectorChoice.embedding:
        from goa.embedding import ensure_embedding_model

        ensure_embedding_model(progress=True)
    options: dict[str, Any] = {
        "k": k,
        "pooling": pooling.value,
        "selector": selector.value,
        "judge": judge.value,
        "rounds": rounds,
        "early_exit": early_exit,
        "structured": structured,
        "max_tokens": max_tokens,
        "timeout_s": timeout,
        "budget_usd": budget,
    }
    names = list(dict.fromkeys(pool or [default_pool_name()]))
    served = {name: ServedPool(load_pool(name), options=options) for name in names}
    app = create_app(
        served,
        token=bearer,
        max_concurrency=max_concurrency,
        max_queue=max_queue,
        max_body_bytes=max_body_bytes,
        max_messages=max_messages,
        cache=ResponseCache(paths.cache_path()) if cache else None,
    )
    shown = f"[{host}]" if ":" in host else host
    print(
        f"goa serve: {', '.join(model_id(n) for n in names)} at http://{shown}:{port}/v1 "
        f"({'bearer token required' if bearer else 'no token'}); "
        "SIGTERM or Ctrl-C drains and stops",
        file=sys.stderr,
    )
    serve(app, host=host, port=port, drain_timeout_s=drain_timeout, log_level=log_level)
