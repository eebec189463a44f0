from django import forms
from django.contrib.auth.forms import UserCreationForm

from projects.models import Role


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


class PasswordFields(forms.Form):
    """Two password fields that must match; the strength rules run in the service."""

    password1 = forms.CharField(
        label="Password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    password2 = forms.CharField(
        label="The same password again", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )

    def clean(self):
        data = super().clean()
        if data.get("password1") and data.get("password1") != data.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        return data


class AccountCreateForm(PasswordFields):
    username = forms.CharField(max_length=150, help_text="Letters, digits and @ . + - _ only.")
    email = forms.EmailField(required=False, help_text="Optional.")
    is_admin = forms.BooleanField(required=False, label="Kenpin admin (manages people; sees Django's /admin)")
    field_order = ["username", "email", "password1", "password2", "is_admin"]


class InvitationForm(forms.Form):
    """An invitation link; one role choice per project (fields `project_<id>`)."""

    email = forms.EmailField(required=False, help_text="Optional: whom it is for; it fills in their form.")
    days = forms.IntegerField(min_value=1, max_value=30, initial=7, label="Valid for (days)")
    make_admin = forms.BooleanField(required=False, label="Make them a Kenpin admin")

    def __init__(self, *args, projects=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.projects = list(projects)
        choices = [("", "Not a member")] + [(value, label) for value, label in Role.choices]
        for project in self.projects:
            self.fields[f"project_{project.pk}"] = forms.ChoiceField(
                choices=choices, required=False, label=project.name
            )

    def project_fields(self):
        return [self[f"project_{project.pk}"] for project in self.projects]

    def grants(self) -> list:
        return [
            (project, self.cleaned_data[f"project_{project.pk}"])
            for project in self.projects
            if self.cleaned_data.get(f"project_{project.pk}")
        ]


class WelcomeForm(PasswordFields):
    username = forms.CharField(max_length=150, help_text="What you will sign in with: letters, digits and @ . + - _.")
    email = forms.EmailField(required=False, help_text="Optional.")
    field_order = ["username", "email", "password1", "password2"]


class NewPasswordForm(PasswordFields):
    pass
