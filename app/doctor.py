"""The checks of ``clamor doctor``: is this deployment ready to launch?

Each check is a function returning ``(ok, line)``: True and what was found,
or False and what to fix. They read the deployment's settings and files the
way ``clamor campaign check`` does, without building the app, so a
deployment that cannot start is still examined; nothing is sent, and no
database is touched. The backends' own checks are their
:meth:`~app.delivery.DeliveryBackend.check`: this module names no backend.
"""

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from .bounce_mailbox import login_check
from .campaigns import Campaign, CampaignError, load_campaign
from .plugins import campaign_channel_problems

if TYPE_CHECKING:
    from .delivery import DeliveryBackend

Check = tuple[bool, str]
Registry = Mapping[str, type["DeliveryBackend"]]


def run_checks(
    settings: Mapping[str, Any], instance: str | os.PathLike[str], backends: Registry | None,
) -> Iterator[Check]:
    """Every check, in the order printed: the config, the campaign files, the backends, the bounce mailbox, DNS.

    ``backends`` is the deployment's registry, or None when its plugins cannot load.
    """
    yield secret_key_check(settings)
    yield base_url_check(settings)
    yield sender_check(settings)
    campaigns = []
    for path in sorted((Path(instance) / "campaigns").glob("*.toml")):
        campaign, problems = check_campaign_file(path, settings, backends)
        if problems:
            yield from ((False, f"campaign file {problem}") for problem in problems)
        else:
            campaigns.append(campaign)
            yield True, f"campaign file {path}: {campaign.slug}, {len(campaign.targets)} targets"
    if not campaigns:
        yield False, f"campaign files: none valid in {Path(instance) / 'campaigns'} (clamor init installs an example)"
    used = {"email"} | {target.channel for campaign in campaigns for target in campaign.targets}
    yield from backend_checks(settings, backends, used)
    yield bounce_mailbox_check(settings)
    yield from dns_checks(settings)


def secret_key_check(settings: Mapping[str, Any]) -> Check:
    """SECRET_KEY is set (the app refuses to start without one outside debug)."""
    if settings.get("SECRET_KEY"):
        return True, "config: SECRET_KEY is set"
    return False, "config: SECRET_KEY is not set: run `clamor init` (it writes one) or set CLAMOR_SECRET_KEY"


def base_url_check(settings: Mapping[str, Any]) -> Check:
    """BASE_URL is an absolute https address (http only with DEBUG): every link in an email is built from it."""
    base = settings.get("BASE_URL")
    if not base:
        return False, 'config: BASE_URL is not set: set it to the site\'s address, e.g. "https://act.example.org"'
    parts = urlsplit(str(base))
    if parts.scheme == "https" and parts.netloc:
        return True, f"config: BASE_URL is {base}"
    if parts.scheme == "http" and parts.netloc and settings.get("DEBUG"):
        return True, f"config: BASE_URL is {base} (http: for DEBUG only)"
    return False, f"config: BASE_URL {base!r} must be an absolute https address, e.g. \"https://act.example.org\""


def sender_check(settings: Mapping[str, Any]) -> Check:
    """SENDER_ADDRESS is an email address a receiving server accepts (no special-use domain such as localhost)."""
    sender = settings.get("SENDER_ADDRESS") or ""
    try:
        validate_email(sender, check_deliverability=False)
    except EmailNotValidError as exc:
        return False, f"config: SENDER_ADDRESS {sender!r} is not a usable address ({exc}): set the union's own"
    return True, f"config: SENDER_ADDRESS is {sender}"


def check_campaign_file(
    path: str | os.PathLike[str], settings: Mapping[str, Any], backends: Registry | None,
) -> tuple[Campaign | None, list[str]]:
    """Load one campaign file as the app would: ``(campaign, [])``, or ``(None, [what is wrong, …])``.

    The campaign's targets must be reachable with these settings (their
    channels' backends, when ``backends`` is known). ``clamor campaign
    check`` prints the same.
    """
    try:
        campaign = load_campaign(path, settings["LANGUAGES"])
        problems = campaign_channel_problems(campaign, settings, backends) if backends is not None else []
        if problems:
            raise CampaignError(problems)
    except CampaignError as exc:
        return None, list(exc.errors)
    return campaign, []


def backend_checks(settings: Mapping[str, Any], backends: Registry | None, used: set[str]) -> Iterator[Check]:
    """One line per channel in DELIVERY: its backend constructs from the settings and its server answers."""
    if backends is None:
        yield False, "backends: not checked, the plugins cannot load (see the warning above)"
        return
    for channel, name in sorted(settings["DELIVERY"].items()):
        label = f"backend {name} (DELIVERY[{channel!r}])"
        if channel not in used:
            yield True, f"{label}: not checked, no campaign has {channel} targets"
        elif name not in backends:
            yield False, f"{label}: no plugin registers it; known: {', '.join(sorted(backends)) or 'none'}"
        else:
            yield backend_check(label, backends[name], settings)


def backend_check(label: str, cls: type["DeliveryBackend"], settings: Mapping[str, Any]) -> Check:
    """Make one backend from ``settings`` and run its :meth:`~app.delivery.DeliveryBackend.check`."""
    try:
        backend = cls(settings)
    except Exception as exc:  # ConfigError, mostly: the backend's own settings
        return False, f"{label}: {exc}"
    try:
        answer = backend.check()
    except Exception as exc:  # TemporaryFailure, PermanentFailure: say what the server said
        return False, f"{label}: {exc}"
    finally:
        backend.close()
    return True, f"{label}: {answer or 'settings ok (nothing to try on a server)'}"


def bounce_mailbox_check(settings: Mapping[str, Any]) -> Check:
    """The bounce mailbox (BOUNCE_IMAP_URL) lets Clamor log in."""
    url = settings.get("BOUNCE_IMAP_URL")
    if not url:
        return True, "bounce mailbox: not configured (BOUNCE_IMAP_URL)"
    problem = login_check(url)
    return problem is None, f"bounce mailbox: {problem or 'logged in, its folder opens'}"


#: Seconds the DNS checks wait for an answer, in all.
DNS_TIMEOUT = 2.0


def dns_checks(settings: Mapping[str, Any]) -> list[Check]:
    """The sender domain's SPF and DMARC records, from DOCTOR_NAMESERVERS (None: the system's resolver).

    Receiving servers (a ministry's, Gmail) check both: without them the
    letters land in spam or are refused. "skipped" when no resolver answers.
    """
    # Imported here: dnspython's resolver is needed by this command only.
    import dns.exception
    import dns.resolver

    domain = (settings.get("SENDER_ADDRESS") or "").rpartition("@")[2]
    if not domain:
        return [(False, "DNS: no SENDER_ADDRESS domain to look up")]
    try:
        resolver = _resolver(settings.get("DOCTOR_NAMESERVERS"))
    except ValueError as exc:
        return [(False, f"DNS: DOCTOR_NAMESERVERS: {exc}")]
    except dns.resolver.NoResolverConfiguration:
        return [(True, f"DNS of {domain}: skipped: no resolver configured on this machine")]
    checks = []
    for label, name, tag, advice in (
        ("SPF", domain, "v=spf1", f'publish a TXT record at {domain} such as "v=spf1 include:<your provider> -all"'),
        ("DMARC", f"_dmarc.{domain}", "v=dmarc1",
         f'publish a TXT record at _dmarc.{domain} such as "v=DMARC1; p=quarantine; rua=mailto:dmarc@{domain}"'),
    ):
        try:
            answer = resolver.resolve(name, "TXT", lifetime=DNS_TIMEOUT)
            texts = [b"".join(record.strings).decode(errors="replace") for record in answer]
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            texts = []
        except (dns.exception.Timeout, dns.resolver.NoNameservers):
            checks.append((True, f"DNS {label} of {domain}: skipped: no resolver answered"))
            continue
        found = [text for text in texts if text.lower().startswith(tag)]
        if len(found) == 1:
            checks.append((True, f"DNS {label} of {domain}: {found[0]}"))
        elif found:
            checks.append((False, f"DNS {label} of {domain}: {len(found)} records, which receivers treat as none: "
                                  "keep one"))
        else:
            checks.append((False, f"DNS {label} of {domain}: no record ({tag} at {name}): {advice}"))
    return checks


def _resolver(nameservers):
    """A dnspython resolver asking ``nameservers`` ("host", "host:port", "[v6]:port"), or the system's."""
    import dns.nameserver
    import dns.resolver

    if not nameservers:
        return dns.resolver.Resolver()
    resolver = dns.resolver.Resolver(configure=False)
    servers = []
    for entry in nameservers:
        host, port = str(entry), 53
        if host.startswith("["):
            host, _, rest = host[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 53
        elif host.count(":") == 1:
            host, _, number = host.partition(":")
            port = int(number)
        servers.append(dns.nameserver.Do53Nameserver(host, port))
    resolver.nameservers = servers
    return resolver
