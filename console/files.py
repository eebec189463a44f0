import mimetypes

from django.http import FileResponse, Http404


def storage_file_response(field, *, download_name: str = "") -> FileResponse:
    """Stream a stored file (image, thumbnail, heatmap) to a client that passed an access check.

    Callers check access first; this only turns a FieldFile into a response. Files are served
    through views, never from a public media URL, so that per-project access applies to them.
    """
    if not field:
        raise Http404
    try:
        handle = field.open("rb")
    except FileNotFoundError:
        raise Http404 from None
    content_type = mimetypes.guess_type(field.name)[0] or "application/octet-stream"
    response = FileResponse(handle, content_type=content_type, filename=download_name or None)
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response
