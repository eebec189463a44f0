from django import forms
from django.contrib.auth.forms import UserCreationForm


class FirstAdminForm(UserCreationForm):
    email = forms.EmailField(required=False, help_text="Optional.")

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        required=False,
        label="Token name",
        help_text="What the token is for, so that you can tell your tokens apart: for example line-2-camera.",
    )
