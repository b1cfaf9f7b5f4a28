"""``domicile serve``: the HTTP API."""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import click

from domicile.router.cli.common import config_option, settings_from


@click.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--access-log/--no-access-log", default=False, help="log every request")
def serve(config: Path | None, host: str, port: int, access_log: bool) -> None:
    """Run the HTTP API."""
    import uvicorn

    from domicile.router.app import create_app

    settings = settings_from(config)
    if access_log:
        logging.getLogger("domicile.access").setLevel(logging.INFO)
    app = create_app(settings)
    # What is imported and built by now lives as long as the process: frozen, the cyclic
    # collector stops rescanning it on every full collection (a quarter of a read's CPU in
    # bench/RESULTS.md).
    gc.freeze()
    # uvicorn's own access log prints raw paths (subject ids): ours prints route templates.
    uvicorn.run(app, host=host, port=port, access_log=False, log_config=None)
