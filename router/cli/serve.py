"""``domicile serve``: the HTTP API."""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import click

from domicile.router.cli.common import config_option, fail, settings_from
from domicile.router.cli.logs import application_log


@click.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--access-log/--no-access-log", default=False, help="log every request")
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="serve HTTPS with this PEM certificate (chain)",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="the certificate's private key (PEM)",
)
def serve(
    config: Path | None,
    host: str,
    port: int,
    access_log: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    """Run the HTTP API (HTTPS with --tls-cert and --tls-key)."""
    import uvicorn

    from domicile.router.app import create_app

    if (tls_cert is None) != (tls_key is None):
        fail("--tls-cert and --tls-key go together")
    settings = settings_from(config)
    application_log()
    if access_log:
        logging.getLogger("domicile.access").setLevel(logging.INFO)
    # uvicorn's start and stop lines (the address it listens on) are the operator's business.
    logging.getLogger("uvicorn.error").setLevel(logging.INFO)
    app = create_app(settings)
    # What is imported and built by now lives as long as the process: frozen, the cyclic
    # collector stops rescanning it on every full collection (a quarter of a read's CPU in
    # bench/RESULTS.md).
    gc.freeze()
    # uvicorn's own access log prints raw paths (subject ids): ours prints route templates.
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        ssl_certfile=None if tls_cert is None else str(tls_cert),
        ssl_keyfile=None if tls_key is None else str(tls_key),
    )
