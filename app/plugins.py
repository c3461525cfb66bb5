"""Build the plugin manager and the delivery backend registry.

Built-in plugins in ``plugins/`` are registered exactly like third-party ones:
from :data:`DEFAULT_PLUGINS`, then installed packages through the entry-point
group ``clamor.plugins`` (limited by config ``PLUGINS``), then single-file
plugins dropped into ``instance/plugins/``. A plugin that fails to import stops
start-up, and so does a misspelt hook implementation (``check_pending``).
"""

import importlib
import importlib.metadata
import importlib.util
import logging
from pathlib import Path

import pluggy

from . import hookspecs
from .delivery import PermanentFailure

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "clamor.plugins"

#: The built-in plugins, by module. The registered name is the last part.
DEFAULT_PLUGINS = (
    "plugins.outbox_files",
    "plugins.smtp",
    "plugins.mailgun",
    "plugins.fax_email",
    "plugins.number_question",
    "plugins.honeypot",
    "plugins.fill_time",
    "plugins.duplicate_signer",
    "plugins.links",
    "plugins.disposable_email",
)

#: Hooks through which a spam filter acts; only filters named in config
#: ``SPAM_FILTERS`` are called for them.
FILTER_HOOKS = ("extend_action_form", "check_submission")


class PluginError(RuntimeError):
    """A plugin or the configuration that names plugins is wrong; start-up stops."""


def create_plugin_manager(app):
    """Return a pluggy manager with every plugin this deployment loads registered."""
    pm = pluggy.PluginManager("clamor")
    pm.add_hookspecs(hookspecs)
    for dotted in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(dotted), name=dotted.rsplit(".", 1)[1])
    _load_entry_points(pm, app.config["PLUGINS"])
    _load_instance_plugins(pm, Path(app.instance_path) / "plugins")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        # A misspelt hook name: the organiser needs its name and where it is.
        raise PluginError(f"plugin {exc.plugin!r} implements a hook that does not exist: {exc}") from exc
    return pm


def _load_entry_points(pm, allowed):
    installed = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    # A misspelt name in PLUGINS would otherwise leave a plugin out without a word.
    missing = sorted(set(allowed or ()) - set(installed.names))
    if missing:
        raise PluginError(
            f"PLUGINS names {', '.join(map(repr, missing))}, which no installed package provides "
            f"(installed: {', '.join(sorted(installed.names)) or 'none'})"
        )
    for ep in installed:
        if allowed is not None and ep.name not in allowed:
            log.info("plugin %s is installed but not in PLUGINS; not loaded", ep.name)
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        if pm.get_plugin(ep.name) is plugin:
            continue  # the same package found twice on the path
        _register(pm, plugin, ep.name, f"the entry point {ep.name!r} of {ep.dist.name if ep.dist else ep.value}")


def _load_instance_plugins(pm, folder):
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"clamor_instance_plugins.{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise PluginError(f"plugin file {path} failed to load: {exc}") from exc
        _register(pm, module, path.stem, f"the plugin file {path}")


def _register(pm, plugin, name, source):
    # Two plugins under one name would leave one of them out (or pluggy
    # would stop with a bare ValueError): say which, and what to do.
    taken = pm.get_plugin(name)
    if taken is not None:
        raise PluginError(
            f"{source} is called {name!r}, like the plugin already loaded from "
            f"{getattr(taken, '__name__', taken)!s}; give it another name"
        )
    pm.register(plugin, name=name)


def collect_backends(pm):
    """Return ``{name: backend class}`` from every ``register_delivery_backends``.

    Raises :class:`PluginError` on a duplicate or missing name.
    """
    registry = {}
    for classes in pm.hook.register_delivery_backends():
        for cls in classes or ():
            name = getattr(cls, "name", None)
            if not name:
                raise PluginError(f"delivery backend {cls!r} has no name")
            if name in registry and registry[name] is not cls:
                raise PluginError(
                    f"two delivery backends are called {name!r}: "
                    f"{registry[name].__module__} and {cls.__module__}"
                )
            registry[name] = cls
    return registry


def check_delivery_config(config, registry, channels=None):
    """Raise :class:`PluginError` unless every channel in ``DELIVERY`` names a
    registered backend, and each of ``channels`` (default: all) one that can
    be made with these settings.

    Each such backend is made once and closed: a backend's ``__init__``
    raises :class:`~app.delivery.PermanentFailure` when its settings are
    missing or wrong (``MAILGUN_API_KEY``), and that stops start-up here
    rather than failing every letter of the first batch. A channel no
    campaign uses (fax, by default) is not made: its settings may be unset.
    """
    for channel, name in config["DELIVERY"].items():
        if name not in registry:
            known = ", ".join(sorted(registry)) or "none"
            raise PluginError(
                f"DELIVERY[{channel!r}] names the backend {name!r}, which no plugin "
                f"registers. Known backends: {known}."
            )
        if channels is not None and channel not in channels:
            continue
        try:
            registry[name](config).close()
        except PermanentFailure as exc:
            raise PluginError(f"DELIVERY[{channel!r}] = {name!r} cannot work: {exc}") from exc


def campaign_channel_problems(campaign, config, registry):
    """Why ``campaign``'s targets cannot be reached with these settings: a list of messages, [] when they can.

    Every channel its targets use needs a ``DELIVERY`` entry naming a
    registered backend that can be made with the settings (a ``fax`` target
    and no ``FAX_ADDRESS_TEMPLATE``, say).
    """
    problems = []
    for channel in sorted({target.channel for target in campaign.targets}):
        names = ", ".join(repr(t.name) for t in campaign.targets if t.channel == channel)
        name = config["DELIVERY"].get(channel)
        if name is None:
            problems.append(f"{campaign.path}: targets {names} are reached by {channel}, "
                            f"but DELIVERY has no backend for {channel!r}.")
            continue
        if name not in registry:
            continue  # check_delivery_config says so
        try:
            registry[name](config).close()
        except PermanentFailure as exc:
            problems.append(f"{campaign.path}: targets {names} are reached by {channel}, "
                            f"but DELIVERY[{channel!r}] = {name!r} cannot send them: {exc}")
    return problems


def filter_callers(pm, enabled):
    """Return ``{hook name: caller}`` that call only the enabled spam filters.

    A filter is any plugin implementing one of :data:`FILTER_HOOKS`. Raises
    :class:`PluginError` when ``enabled`` names a plugin that is not a filter.
    """
    filters = {
        impl.plugin_name
        for hook in FILTER_HOOKS
        for impl in getattr(pm.hook, hook).get_hookimpls()
    }
    unknown = [name for name in enabled if name not in filters]
    if unknown:
        raise PluginError(
            f"SPAM_FILTERS names {', '.join(map(repr, unknown))}, which no plugin provides. "
            f"Known filters: {', '.join(sorted(filters)) or 'none'}."
        )
    disabled = [pm.get_plugin(name) for name in filters - set(enabled)]
    return {hook: pm.subset_hook_caller(hook, remove_plugins=disabled) for hook in FILTER_HOOKS}
