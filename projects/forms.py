from django import forms

from core.errors import id_in_range
from projects.models import PROJECT_NAME_PATTERN, Label, Role, Split

PROJECT_NAME_RULES = "Letters, digits, '-' and '_', starting with a letter or digit; for example circuit-boards-line-2."


class ProjectForm(forms.Form):
    name = forms.CharField(
        max_length=255,
        help_text=PROJECT_NAME_RULES,
        widget=forms.TextInput(
            attrs={
                # Browsers compile `pattern` in Unicode-sets mode, where a bare "-" in a class is an error.
                "pattern": PROJECT_NAME_PATTERN.replace("_-]", r"_\-]"),
                "autocomplete": "off",
                # Shown by the browser beside its own "match the requested format", so that the
                # rules are in the bubble that points at the field, not only below it.
                "title": PROJECT_NAME_RULES,
                "aria-describedby": "id_name_help",
            }
        ),
    )
    description = forms.CharField(required=False, max_length=1000, widget=forms.Textarea(attrs={"rows": 2}))


class ProjectUpdateForm(forms.Form):
    description = forms.CharField(required=False, max_length=1000, widget=forms.Textarea(attrs={"rows": 2}))


class ProjectDeleteForm(forms.Form):
    confirm_name = forms.CharField(label="Type the project's name to confirm", max_length=255)


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.EDITOR)


class IdListField(forms.Field):
    """The repeated `ids` values of a form (checkboxes, or a script's FormData) as integers."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value):
        try:
            ids = [int(v) for v in value or []]
        except (TypeError, ValueError):
            raise forms.ValidationError("Image ids are numbers.") from None
        if not all(id_in_range(i) for i in ids):
            raise forms.ValidationError("Image ids are positive numbers below 2⁶³.")
        return ids

    def validate(self, value):
        if not value and self.required:
            raise forms.ValidationError("Select at least one image first.")


class ImageFilterForm(forms.Form):
    """The label grid's filters, from the query string; anything unknown shows every image."""

    label = forms.ChoiceField(choices=[("", "All labels")] + Label.choices, required=False)
    split = forms.ChoiceField(choices=[("", "Both datasets")] + Split.choices, required=False)
    page = forms.IntegerField(min_value=1, required=False)

    def filters(self) -> dict:
        if not self.is_valid():
            return {"label": "", "split": "", "page": 1}
        return {**self.cleaned_data, "page": self.cleaned_data["page"] or 1}


class ImagesLabelForm(forms.Form):
    ids = IdListField()
    label = forms.ChoiceField(choices=Label.choices)


class ImagesMoveForm(forms.Form):
    ids = IdListField()
    split = forms.ChoiceField(choices=Split.choices)


class ImagesDeleteForm(forms.Form):
    ids = IdListField()


class MaskClassField(forms.CharField):
    """The class a black-and-white mask marks, by name (colour masks say it with their colours)."""

    def __init__(self, **kwargs):
        super().__init__(
            required=False,
            max_length=64,
            label="Class of a black-and-white mask",
            help_text="Only for a black-and-white mask in a project with several classes.",
            **kwargs,
        )


class ImageUploadForm(forms.Form):
    """One image per request: the upload page's script sends each file on its own."""

    file = forms.FileField(allow_empty_file=True)  # the service explains an empty file in words
    label = forms.ChoiceField(choices=Label.choices, required=False)
    split = forms.ChoiceField(choices=Split.choices, required=False)
    mask = forms.FileField(required=False, allow_empty_file=True)
    mask_class = MaskClassField()


class ZipImportForm(forms.Form):
    file = forms.FileField(label="Zip file")
    split = forms.ChoiceField(choices=Split.choices, initial=Split.TRAIN, label="Into the", widget=forms.RadioSelect)


class MaskForm(forms.Form):
    mask = forms.FileField(
        label="Defect mask (PNG of the image's size: white on black, or each class in its colour on white)",
        allow_empty_file=True,  # the service explains an empty file in words
    )
    mask_class = MaskClassField()


class AnomalyClassForm(forms.Form):
    name = forms.CharField(max_length=64, widget=forms.TextInput(attrs={"placeholder": "crack", "autocomplete": "off"}))
    color = forms.CharField(
        max_length=7, required=False, label="Colour", widget=forms.TextInput(attrs={"type": "color"})
    )


class AnomalyClassDeleteForm(forms.Form):
    masks_expected = forms.IntegerField(min_value=0, max_value=2**31, widget=forms.HiddenInput)
