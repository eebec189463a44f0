from django import forms

from projects.models import PROJECT_NAME_PATTERN


class ProjectForm(forms.Form):
    name = forms.CharField(
        max_length=255,
        help_text="Letters, digits, '-' and '_'; for example circuit-boards-line-2.",
        widget=forms.TextInput(attrs={"pattern": PROJECT_NAME_PATTERN, "autocomplete": "off"}),
    )
    description = forms.CharField(required=False, max_length=1000, widget=forms.Textarea(attrs={"rows": 2}))
