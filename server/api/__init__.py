"""The FastAPI front end: REST under /v1, the WebSocket stream, health, metrics, web player.

from server.api import create_app
app = create_app(settings, broker)                  # `rollcast api`
app = create_app(settings, broker, worker=worker)   # `rollcast serve` (worker in-process)
"""

from server.api.app import create_app

__all__ = ["create_app"]
