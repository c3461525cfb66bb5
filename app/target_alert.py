"""The email every organiser gets when a target address is suspended (see :mod:`app.states.targets`).

Rendered in the campaign's default language (the one organisers are assumed
to read) and queued through the outbox in the transaction that suspends the
target. It names the target's address, the last bounce and the commands to
run; never a supporter.
"""

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _

from .delivery import queue_organiser_emails


def alert_organisers(campaign_slug: str, target_key: str, last_bounce: str, bounces: int) -> int:
    """Queue the suspension email about ``target_key`` to every organiser (not committed); return how many.

    ``last_bounce``: the provider's text of the bounce that suspended it,
    with supporters' addresses redacted already.
    """
    config = current_app.config
    campaign = current_app.extensions["clamor"].campaigns.get(campaign_slug)
    language = campaign.default_language if campaign is not None else config["BABEL_DEFAULT_LOCALE"]
    dashboard = f"{config['BASE_URL'].rstrip('/')}/admin/{campaign_slug}/"
    with force_locale(language):
        subject = _("Letters to %(address)s are on hold: its mailbox refused them", address=target_key)
        body = "\n\n".join((
            _("The mailbox of %(address)s refused %(num)s letters in a row, with no delivery in between, so "
              "Clamor has stopped sending to it. Its waiting letters, and new ones, are held: none is lost.",
              address=target_key, num=bounces),
            _("Last bounce: %(bounce)s", bounce=last_bounce),
            _("When the address works again: %(command)s", command=f"clamor targets resume {target_key}"),
            _("When it has changed (correct the campaign file first): %(command)s",
              command=f"clamor targets reroute {target_key} NEW-ADDRESS"),
            _("To give up on the letters waiting for it: %(command)s",
              command=f"clamor targets cancel {target_key}"),
            _("The campaign's dashboard has the same actions as buttons: %(url)s", url=dashboard),
        ))
    return queue_organiser_emails(campaign_slug, config, subject, body)
