"""The refund request form (customer's payment page, vendor's sales list): quantities of
the items (``qty-<order item id>``, one input per item, outside WTForms since the items vary)
or an amount, a reason and notes."""

import uuid

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from .models import FORM_REASONS


class RefundRequestForm(FlaskForm):
    amount = StringField("Amount to refund", validators=[Optional(), Length(max=20)])
    reason = SelectField("Reason", default="customer_request",
                         choices=[SelectChoice(value, label)
                                  for value, label in FORM_REASONS.items()])
    notes = TextAreaField("Notes", validators=[Optional(), Length(max=1000)])


def quantity_name(item_id: uuid.UUID) -> str:
    return f"qty-{item_id}"


def quantities_from(data, item_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The quantities typed for ``item_ids`` (blank and 0: none); ValueError when one is not
    a whole number of at most 6 digits."""
    found = {}
    for item_id in item_ids:
        text = (data.get(quantity_name(item_id)) or "").strip()
        if not text:
            continue
        if not (text.isascii() and text.isdigit() and len(text) <= 6):
            raise ValueError("Quantities are whole numbers, such as 1 or 2.")
        if int(text):
            found[item_id] = int(text)
    return found
