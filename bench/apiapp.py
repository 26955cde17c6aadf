"""The API as a uvicorn factory, for running it with several worker processes (diagnostics only:
`pysvc serve` runs one process)."""

from __future__ import annotations

from fastapi import FastAPI

from pysvc.api import configure_logging, create_app
from pysvc.settings import load_settings


def create() -> FastAPI:
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
