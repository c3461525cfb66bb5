"""What several ``clamor`` commands share: building the app with a one-line error, reading the settings."""

import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..campaigns import CampaignError

if TYPE_CHECKING:
    from flask import Config, Flask

    from ..delivery import DeliveryBackend


def create_app_or_fail(instance_path: str | os.PathLike[str] | None = None) -> "Flask":
    """The app, as :func:`app.create_app` builds it.

    A deployment that cannot start raises :class:`click.ClickException`.
    A mistake in the settings, a plugin or a campaign file is the organiser's
    to fix: they need the one-line message (``Error: …``, exit 1), not a traceback.
    """
    from .. import ConfigError, create_app
    from ..plugins import PluginError

    try:
        return create_app(instance_path=instance_path)
    except (ConfigError, PluginError, CampaignError) as exc:
        raise click.ClickException(str(exc)) from exc


def read_settings() -> "tuple[Config, Path]":
    """The deployment's settings without building the app (defaults, instance/config.py, CLAMOR_*), and instance/."""
    from flask import Config

    from .. import default_instance_path
    from ..config import load_settings

    instance = default_instance_path()
    return load_settings(Config(instance)), instance


def backend_registry(
    settings: MutableMapping[str, Any], instance: str | os.PathLike[str],
) -> "dict[str, type[DeliveryBackend]] | None":
    """The delivery backends this deployment's plugins register, or None (with a warning) if they cannot load."""
    from types import SimpleNamespace

    from ..plugins import PluginError, collect_backends, create_plugin_manager

    try:
        return collect_backends(create_plugin_manager(SimpleNamespace(config=settings, instance_path=str(instance))))
    except PluginError as exc:
        click.echo(f"warning: plugins cannot load, so delivery settings are not checked: {exc}", err=True)
        return None
