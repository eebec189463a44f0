from django import forms

from training.services import BACKBONES, DEFAULT_BACKBONE


class TrainForm(forms.Form):
    description = forms.CharField(required=False, max_length=1000, widget=forms.TextInput())
    backbone = forms.ChoiceField(choices=list(BACKBONES.items()), initial=DEFAULT_BACKBONE)
