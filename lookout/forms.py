from django import forms

from projects.models import Split


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
        if data.get("manifest") and not data.get("images"):
            raise forms.ValidationError("Add the zip of the images the manifest names.")
        return data


class PackageForm(forms.Form):
    version = forms.TypedChoiceField(label="Model version", coerce=int)

    def __init__(self, *args, versions=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].choices = [(mv.version, f"Version {mv.version}") for mv in versions]
