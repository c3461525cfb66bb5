"""``clamor plugins``: what this deployment loaded, and from where (as datasette's ``/-/plugins``)."""

import json
from typing import TYPE_CHECKING, Any

import click
from flask import current_app
from flask.cli import with_appcontext

from ..plugins import FILTER_HOOKS

if TYPE_CHECKING:
    from .. import Clamor


def plugin_report(state: "Clamor") -> list[dict[str, Any]]:
    """One dict per loaded plugin, in load order: its name, where it came from, its hooks, backends and filters.

    ``source`` is the plugin manager's record (``kind``: built-in, entry
    point, instance file or create_app; with ``module``, ``distribution`` and
    ``version``, or ``path``). ``backends`` lists ``{name, verbose_name}`` of
    the classes its ``register_delivery_backends`` returns; ``filters`` is
    ``[{name, enabled}]`` when it implements a spam-filter hook.
    """
    pm, enabled = state.plugin_manager, set(state.config["SPAM_FILTERS"])
    report = []
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
        report.append({
            "name": name,
            "source": getattr(pm, "sources", {}).get(name, {"kind": "unknown"}),
            "hooks": hooks,
            "backends": [{"name": cls.name, "verbose_name": cls.verbose_name} for cls in _backends_of(pm, plugin)],
            "filters": [{"name": name, "enabled": name in enabled}] if set(hooks) & set(FILTER_HOOKS) else [],
        })
    return report


def _backends_of(pm, plugin):
    # Asked of this plugin alone: the hook's combined answer does not say who gave what.
    for impl in pm.hook.register_delivery_backends.get_hookimpls():
        if impl.plugin is plugin:
            return list(impl.function() or ())
    return []


def describe_source(source: dict[str, Any]) -> str:
    """The one-line "where from" of a plugin, for people."""
    kind = source.get("kind")
    if kind == "built-in":
        return f"built-in ({source['module']})"
    if kind == "entry point":
        return f"entry point {source['module']} of {source.get('distribution')} {source.get('version')}"
    if kind == "instance file":
        return f"instance file {source['path']}"
    if kind == "create_app":
        return f"passed to create_app ({source['module']})"
    return str(kind)


def format_report(report: list[dict[str, Any]]) -> str:
    """The report as text: one block per plugin."""
    lines = []
    for entry in report:
        lines.append(f"{entry['name']}: {describe_source(entry['source'])}")
        lines.append(f"  hooks: {', '.join(entry['hooks']) or 'none'}")
        for backend in entry["backends"]:
            lines.append(f"  delivery backend: {backend['name']} ({backend['verbose_name']})")
        for spam_filter in entry["filters"]:
            state = "enabled" if spam_filter["enabled"] else "not in SPAM_FILTERS"
            lines.append(f"  spam filter: {spam_filter['name']} ({state})")
    return "\n".join(lines)


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as a list of plugins.")
@with_appcontext
def plugins_command(as_json: bool) -> None:
    """List the loaded plugins: where each came from, its hooks, backends and spam filters."""
    report = plugin_report(current_app.extensions["clamor"])
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))
