from django import forms

from projects.models import Split


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files from one input (a folder chosen in the browser): a list of them."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"multiple": True, "webkitdirectory": True}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        if isinstance(data, (list, tuple)):
            return [super(MultipleFileField, self).clean(item, initial) for item in data]
        return [super().clean(data, initial)] if data else []


class ImportForm(forms.Form):
    split = forms.ChoiceField(
        label="Into", choices=[(Split.TRAIN, "Training dataset"), (Split.TEST, "Test dataset")], initial=Split.TRAIN
    )
    manifest = forms.FileField(
        label="Manifest", required=False, help_text="A Ground Truth manifest (.manifest, one JSON line per image)."
    )
    images = forms.FileField(
        label="Images (zip)",
        required=False,
        help_text="A zip of the images (and masks) the manifest names, matched by the end of their paths.",
    )
    folder = MultipleFileField(
        label="…or the folder of images",
        required=False,
        help_text="Instead of a zip: choose the folder holding the images (and masks) the manifest names.",
    )
    s3_uri = forms.CharField(
        label="…or a manifest on S3",
        required=False,
        max_length=1100,
        help_text="s3://bucket/key.manifest, read with the server's AWS credentials, as are the images it names.",
    )

    def clean(self):
        data = super().clean()
        if not data.get("manifest") and not data.get("s3_uri"):
            raise forms.ValidationError("Choose a manifest file, or give the s3:// URI of one.")
        if data.get("manifest") and data.get("s3_uri"):
            raise forms.ValidationError("Give a manifest file or an s3:// URI, not both.")
        if data.get("manifest") and not data.get("images") and not data.get("folder"):
            raise forms.ValidationError("Add the zip, or the folder, of the images the manifest names.")
        return data


class PackageForm(forms.Form):
    version = forms.TypedChoiceField(label="Model version", coerce=int)

    def __init__(self, *args, versions=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].choices = [(mv.version, f"Version {mv.version}") for mv in versions]
