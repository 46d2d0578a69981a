"""The refund request form (customer's payment page, vendor's sales list)."""

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from .models import REASONS


class RefundRequestForm(FlaskForm):
    amount = StringField("Amount to refund", validators=[DataRequired(), Length(max=20)])
    reason = SelectField("Reason", default="customer_request",
                         choices=[SelectChoice(value, label) for value, label in REASONS.items()])
    notes = TextAreaField("Notes", validators=[Optional(), Length(max=1000)])
