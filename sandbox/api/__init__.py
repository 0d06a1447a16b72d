"""The HTTP gateway: FastAPI app factory, routes, authentication dependencies, error handlers."""

from sandbox.api.app import create_app

__all__ = ["create_app"]
