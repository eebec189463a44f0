from django import forms
from django.contrib.auth.forms import UserCreationForm


class FirstAdminForm(UserCreationForm):
    email = forms.EmailField(required=False, help_text="Optional.")

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")
