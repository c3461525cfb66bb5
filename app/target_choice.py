"""Supporters choose the targets of their letter (campaign key ``targets_selectable``).

With the key on, the action form has a ``targets`` field: one checkbox per
target, all ticked, whose value is the target's key (:attr:`Target.key`). At
least one must stay ticked, and a value that is not one of the campaign's
targets is refused the same way: a posted value is only ever compared with
the campaign's own keys, never used as an address. Without the key there is no
field and every target gets a letter, as before.
"""

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from flask_babel import lazy_gettext as _l
from wtforms import Form, SelectChoice, SelectMultipleField
from wtforms.validators import ValidationError
from wtforms.widgets import CheckboxInput

if TYPE_CHECKING:
    from .campaigns import Campaign, Target
    from .models import Signature

#: The error shown when no target, or a target the campaign does not have, was chosen.
NO_TARGET_CHOSEN = _l("Please choose at least one recipient.")


class TargetsField(SelectMultipleField):
    """One checkbox per target of the campaign; its data is the list of ticked keys."""

    option_widget = CheckboxInput()

    def pre_validate(self, form: Form) -> None:
        # One message for both refusals: WTForms' own would repeat the forged value back.
        keys = {choice.value for choice in self.choices}
        if not self.data or any(value not in keys for value in self.data):
            raise ValidationError(NO_TARGET_CHOSEN)


def targets_field(campaign: "Campaign") -> TargetsField:
    """The unbound ``targets`` field for ``campaign``'s form: every target listed and ticked."""
    keys = [target.key for target in campaign.targets]
    return TargetsField(
        _l("Send my letter to"),
        choices=[SelectChoice(target.key, target.name) for target in campaign.targets],
        default=keys,
    )


def chosen_targets(campaign: "Campaign", form: Any) -> tuple[str, ...]:
    """The keys of the targets a validated ``form`` sends its letter to, in the campaign's order.

    Every target's when the campaign does not let supporters choose.
    """
    field = getattr(form, "targets", None) if campaign.targets_selectable else None
    ticked = set(field.data) if field is not None else None
    return tuple(t.key for t in campaign.targets if ticked is None or t.key in ticked)


def written_to(signature: "Signature", campaign: "Campaign") -> "list[Target]":
    """The campaign's targets that ``signature`` has a letter to, in the campaign's order."""
    keys: Collection[str] = {d.target_key for d in signature.deliveries if d.kind == "letter"}
    return [target for target in campaign.targets if target.key in keys]
