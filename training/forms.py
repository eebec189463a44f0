from django import forms

from engine.backbones import DEFAULT_BACKBONE
from training.services import backbone_choices


class TrainForm(forms.Form):
    description = forms.CharField(
        required=False,
        max_length=1000,
        widget=forms.TextInput(attrs={"placeholder": "For example: added 10 photos of cracked cookies"}),
        help_text="Optional: what is new in this version, to recognise it later.",
    )
    backbone = forms.ChoiceField(
        choices=backbone_choices(),
        initial=DEFAULT_BACKBONE,
        help_text="The pretrained network that looks at the photos.",
    )


class ThresholdForm(forms.Form):
    threshold = forms.FloatField(min_value=0.0, max_value=1.0)


class CompareForm(forms.Form):
    v = forms.TypedMultipleChoiceField(coerce=int, required=False)

    def __init__(self, *args, versions: list[int], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["v"].choices = [(v, f"Version {v}") for v in versions]

    def clean_v(self):
        chosen = sorted(set(self.cleaned_data["v"]))
        if len(chosen) < 2:
            raise forms.ValidationError("Choose at least two versions to compare.")
        return chosen
