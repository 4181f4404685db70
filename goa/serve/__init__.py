"""``goa serve``: GoA pools as an OpenAI-compatible endpoint.

Needs the ``serve`` extra (``pip install 'goa[serve]'``: fastapi and uvicorn).
:func:`create_app` builds the app over pools (each served as the model
``goa/<pool>``); :func:`serve` runs it until SIGTERM, draining first;
:class:`BackgroundServer` runs it in a thread (tests, notebooks).
"""

from goa.serve.app import create_app
from goa.serve.served import ServedPool, model_id
from goa.serve.server import BackgroundServer, GoaServer, make_server, serve

__all__ = [
    "BackgroundServer",
    "GoaServer",
    "ServedPool",
    "create_app",
    "make_server",
    "model_id",
    "serve",
]
