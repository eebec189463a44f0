from django import forms

from inference.models import Verdict
from projects.forms import IdListField
from projects.models import Split


class TrialForm(forms.Form):
    """A new trial: a trained version, and photos uploaded with it (`files`) or the project's own."""

    model_version = forms.TypedChoiceField(coerce=int, label="Model version")
    name = forms.CharField(
        required=False,
        max_length=255,
        widget=forms.TextInput(attrs={"placeholder": "For example: line 2, Monday morning"}),
    )
    image_ids = IdListField(required=False)

    def __init__(self, *args, versions, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model_version"].choices = [
            (mv.version, f"Version {mv.version}" + (f" — {mv.description[:60]}" if mv.description else ""))
            for mv in versions
        ]


class VerdictForm(forms.Form):
    verdict = forms.ChoiceField(choices=Verdict.choices)


class AddToDatasetForm(forms.Form):
    split = forms.ChoiceField(choices=Split.choices, initial=Split.TRAIN, label="Into the")
