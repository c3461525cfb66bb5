"""Build the plugin manager and the delivery backend registry.

Built-in plugins in ``plugins/`` are registered exactly like third-party ones:
from :data:`DEFAULT_PLUGINS`, then installed packages through the entry-point
group ``clamor.plugins`` (limited by config ``PLUGINS``), then single-file
plugins dropped into ``instance/plugins/``, then the plugin objects passed to
:func:`app.create_app`. A plugin that fails to import stops start-up, and so
does a misspelt hook implementation (``check_pending``). Then every plugin's
``register_settings`` fills in the defaults of the settings it reads.
"""

import importlib
import importlib.metadata
import importlib.util
import logging
from collections.abc import Collection, Iterable, Mapping, MutableMapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

from . import config as core_config
from . import hookspecs
from .delivery import DeliveryBackend, PermanentFailure
from .extensions import csrf, limiter

if TYPE_CHECKING:
    from flask import Flask

    from .campaigns import Campaign

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


class AppLike(Protocol):
    """What :func:`create_plugin_manager` reads of an app: a Flask app, or a stand-in (``clamor campaign check``)."""

    config: MutableMapping[str, Any]
    instance_path: str


class PluginError(RuntimeError):
    """A plugin or the configuration that names plugins is wrong; start-up stops."""


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, remembering where each plugin came from (for ``clamor plugins``)."""

    def __init__(self) -> None:
        super().__init__("clamor")
        #: plugin name -> ``{"kind": "built-in" | "entry point" | "instance file" | "create_app", …}``
        #: with ``module``, ``distribution`` and ``version``, or ``path`` as the kind has them.
        self.sources: dict[str, dict[str, Any]] = {}


def create_plugin_manager(app: AppLike, plugins: Iterable[object] | None = None) -> PluginManager:
    """Return a pluggy manager with every plugin this deployment loads registered.

    ``app`` needs only ``config`` and ``instance_path``; ``plugins`` are plugin
    objects (modules, classes or instances with ``@hookimpl`` functions)
    registered after the configured ones, each under the last part of its
    ``__name__`` (an instance: its class's). The defaults the plugins declare
    (``register_settings``) are then written into ``app.config``.
    """
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    for dotted in DEFAULT_PLUGINS:
        name = dotted.rsplit(".", 1)[1]
        pm.register(importlib.import_module(dotted), name=name)
        pm.sources[name] = {"kind": "built-in", "module": dotted}
    _load_entry_points(pm, app.config["PLUGINS"])
    _load_instance_plugins(pm, Path(app.instance_path) / "plugins")
    for plugin in plugins or ():
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        name = name.rsplit(".", 1)[-1]
        _register(pm, plugin, name, f"the plugin {name!r} passed to create_app",
                  {"kind": "create_app", "module": getattr(plugin, "__module__", None) or name})
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        # A misspelt hook name: the organiser needs its name and where it is.
        raise PluginError(f"plugin {exc.plugin!r} implements a hook that does not exist: {exc}") from exc
    apply_settings(pm, app.config, str(app.instance_path))
    return pm


def apply_settings(pm: pluggy.PluginManager, config: MutableMapping[str, Any], instance_path: str) -> dict[str, Any]:
    """Give every setting a plugin declares (``register_settings``) its default where ``config`` leaves it unset
    or None.

    None counts as unset because it always meant "the default" in these
    settings (``OUTBOX_DIR = None``: instance/outbox). Raises
    :class:`PluginError` when two plugins disagree on a default or one
    declares a core setting: either would make a default depend on which
    plugin loaded.
    """
    declared = {}
    for impl in pm.hook.register_settings.get_hookimpls():  # in load order
        # One call per plugin, to name the plugin in an error.
        settings = impl.function(*[{"instance_path": instance_path}[arg] for arg in impl.argnames]) or {}
        for key, default in settings.items():
            if hasattr(core_config, key):
                raise PluginError(f"plugin {impl.plugin_name!r} declares {key}, a core setting (app/config.py)")
            if key in declared and declared[key][1] != default:
                raise PluginError(f"plugins {declared[key][0]!r} and {impl.plugin_name!r} give {key} "
                                  f"different defaults ({declared[key][1]!r}, {default!r})")
            declared[key] = (impl.plugin_name, default)
            if config.get(key) is None:
                config[key] = default
    return {key: default for key, (_, default) in declared.items()}


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
        _register(pm, plugin, ep.name, f"the entry point {ep.name!r} of {ep.dist.name if ep.dist else ep.value}",
                  {"kind": "entry point", "module": ep.value, "distribution": ep.dist.name if ep.dist else None,
                   "version": ep.dist.version if ep.dist else None})


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
        _register(pm, module, path.stem, f"the plugin file {path}", {"kind": "instance file", "path": str(path)})


def _register(pm, plugin, name, source, origin):
    # Two plugins under one name would leave one of them out (or pluggy
    # would stop with a bare ValueError): say which, and what to do.
    taken = pm.get_plugin(name)
    if taken is not None:
        raise PluginError(
            f"{source} is called {name!r}, like the plugin already loaded from "
            f"{getattr(taken, '__name__', taken)!s}; give it another name"
        )
    pm.register(plugin, name=name)
    pm.sources[name] = origin


def collect_backends(pm: pluggy.PluginManager) -> dict[str, type[DeliveryBackend]]:
    """Return ``{name: backend class}`` from every ``register_delivery_backends``.

    A class with ``needs_backends`` is registered as a subclass made for this
    registry, whose ``backends`` is the registry itself (read-only): that is
    how ``fax_email`` finds the email backend it sends through, without
    reaching into the app. Raises :class:`PluginError` on a duplicate or
    missing name.
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
    view = MappingProxyType(registry)
    for name, cls in list(registry.items()):
        if getattr(cls, "needs_backends", False):
            # A subclass per registry, never the shared class: two apps in
            # one process (the tests) register different backends.
            registry[name] = type(cls.__name__, (cls,), {
                "backends": view, "__module__": cls.__module__, "__qualname__": cls.__qualname__})
    return registry


def _try_backend(cls, config):
    """Make one ``cls`` and close it; the reason it cannot work, or None.

    A backend raises :class:`app.ConfigError` for its own settings;
    ``PermanentFailure`` is still accepted from backends written before that.
    """
    from . import ConfigError

    try:
        cls(config).close()
    except (ConfigError, PermanentFailure) as exc:
        return exc
    return None


def check_delivery_config(
    config: Mapping[str, Any], registry: Mapping[str, type[DeliveryBackend]],
    channels: Collection[str] | None = None,
) -> None:
    """Raise :class:`PluginError` (or :class:`app.ConfigError`) unless every
    channel in ``DELIVERY`` names a registered backend, and each of
    ``channels`` (default: all) one that can be made with these settings.

    Each such backend is made once and closed: a backend's ``__init__``
    raises :class:`app.ConfigError` when its settings are missing or wrong
    (``MAILGUN_API_KEY``), and that stops start-up here, as a ``ConfigError``
    (a :class:`PluginError` for a backend still raising ``PermanentFailure``),
    rather than failing every letter of the first batch. A channel no
    campaign uses (fax, by default) is not made: its settings may be unset.
    """
    from . import ConfigError

    for channel, name in config["DELIVERY"].items():
        if name not in registry:
            known = ", ".join(sorted(registry)) or "none"
            raise PluginError(
                f"DELIVERY[{channel!r}] names the backend {name!r}, which no plugin "
                f"registers. Known backends: {known}."
            )
        if channels is not None and channel not in channels:
            continue
        problem = _try_backend(registry[name], config)
        if problem is not None:
            error = ConfigError if isinstance(problem, ConfigError) else PluginError
            raise error(f"DELIVERY[{channel!r}] = {name!r} cannot work: {problem}") from problem


def campaign_channel_problems(
    campaign: "Campaign", config: Mapping[str, Any], registry: Mapping[str, type[DeliveryBackend]],
) -> list[str]:
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
        problem = _try_backend(registry[name], config)
        if problem is not None:
            problems.append(f"{campaign.path}: targets {names} are reached by {channel}, "
                            f"but DELIVERY[{channel!r}] = {name!r} cannot send them: {problem}")
    return problems


def filter_callers(pm: pluggy.PluginManager, enabled: Collection[str]) -> dict[str, pluggy.HookCaller]:
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


def register_blueprints(app: "Flask", pm: pluggy.PluginManager) -> None:
    """Register every plugin's ``register_blueprints`` on ``app``, after the core's own blueprints.

    Raises :class:`PluginError` naming the plugin when a blueprint's name is
    taken, or one of its URL rules answers a path and method that an earlier
    rule answers already: Werkzeug would route such a request to whichever
    came first, without a word.
    """
    for impl in pm.hook.register_blueprints.get_hookimpls():  # in load order
        for blueprint in impl.function() or ():
            if blueprint.name in app.blueprints:
                raise PluginError(f"plugin {impl.plugin_name!r} registers the blueprint {blueprint.name!r}, "
                                  "a name already taken; give it another name")
            taken = {(rule.rule, method) for rule in app.url_map.iter_rules() for method in rule.methods}
            app.register_blueprint(blueprint)
            ours = [rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith(f"{blueprint.name}.")]
            clashes = sorted({f"{method} {rule.rule}" for rule in ours for method in rule.methods
                              if method not in ("HEAD", "OPTIONS") and (rule.rule, method) in taken})
            if clashes:
                raise PluginError(f"plugin {impl.plugin_name!r} serves {', '.join(clashes)}, "
                                  "which another blueprint serves already")


def csrf_exempt(view_or_blueprint: Any) -> Any:
    """Turn Clamor's CSRF check off for a plugin's view or blueprint, and return it.

    For a provider's webhook, which proves itself with its own signature and
    has no form to carry a token; a page with a form keeps the check.
    """
    return csrf.exempt(view_or_blueprint)


def rate_limit(limit: str) -> Any:
    """A view decorator: at most ``limit`` requests per client (``"600 per minute"``); beyond that, 429.

    Flask-Limiter's notation, counted like Clamor's own limits: by a keyed
    hash of the client's address, never the address itself.
    """
    return limiter.limit(limit)
