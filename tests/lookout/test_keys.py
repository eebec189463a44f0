"""Secrets of AWS-style access keys are sealed: unreadable without the server's key, bound to
their key id, and still readable after a rotation that keeps the old key in the fallbacks."""

from lookout import keys


def test_a_sealed_secret_opens_only_with_its_key_id(settings):
    sealed = keys.seal("s3cret", access_key_id="AKKPAAAA")
    assert "s3cret" not in sealed
    assert keys.open_sealed(sealed, access_key_id="AKKPAAAA") == "s3cret"
    assert keys.open_sealed(sealed, access_key_id="AKKPBBBB") is None


def test_rotating_the_secret_key_needs_the_old_one_in_the_fallbacks(settings):
    settings.SECRET_KEY = "old-key"
    sealed = keys.seal("s3cret", access_key_id="AKKPAAAA")
    settings.SECRET_KEY = "new-key"
    assert keys.open_sealed(sealed, access_key_id="AKKPAAAA") is None
    settings.SECRET_KEY_FALLBACKS = ["old-key"]
    assert keys.open_sealed(sealed, access_key_id="AKKPAAAA") == "s3cret"


def test_a_dedicated_key_takes_over_from_the_secret_key(settings):
    settings.KENPIN_ACCESS_KEY_ENCRYPTION_KEY = "dedicated"
    sealed = keys.seal("s3cret", access_key_id="AKKPAAAA")
    settings.SECRET_KEY = "changed"
    assert keys.open_sealed(sealed, access_key_id="AKKPAAAA") == "s3cret"
    settings.KENPIN_ACCESS_KEY_ENCRYPTION_KEY = "another"
    assert keys.open_sealed(sealed, access_key_id="AKKPAAAA") is None


def test_access_key_ids_and_secrets_look_like_aws_ones():
    key_id, secret = keys.new_access_key_id(), keys.new_secret()
    assert key_id.startswith("AKKP") and len(key_id) == 20 and key_id.isupper()
    assert len(secret) == 40 and keys.new_secret() != secret
