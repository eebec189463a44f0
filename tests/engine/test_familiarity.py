"""Photos unlike the training photos, told apart on real photos: the cookie fixtures, and other
products from the shared sets."""

import numpy as np
import pytest
from PIL import Image

from engine.familiarity import Familiarity, ImageStats, embedding, image_stats
from engine.features import FeatureExtractor

from .conftest import load_set


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor("lite0", 256, 2.0)


@pytest.fixture(scope="module")
def cookies(extractor):
    """A familiarity fitted on 20 normal + 10 anomalous cookies, as training fits it."""
    train = load_set("cookies", normal=20, anomaly=10)
    embeddings = np.stack([embedding(extractor(s.image)) for s in train])
    return Familiarity.fit([image_stats(s.image) for s in train], embeddings)


def assess(familiarity, extractor, image):
    return familiarity.assess(image_stats(image), embedding(extractor(image)))


def test_unseen_photos_of_the_same_product_are_familiar_defects_included(cookies, extractor):
    for sample in load_set("cookies", normal=10, anomaly=5, offset=30):
        assert not assess(cookies, extractor, sample.image).unlike, sample.key


@pytest.mark.shared_data
def test_a_photo_of_another_product_is_unlike_in_content(cookies, extractor):
    for sample in load_set("aliens", normal=3, anomaly=0) + load_set("ball_screw", normal=2, anomaly=0):
        result = assess(cookies, extractor, sample.image)
        assert "content" in result.reasons, sample.key
        assert "what it shows differs from every training photo" in result.message


def test_a_photo_framed_differently_is_unlike_in_content(cookies, extractor):
    image = load_set("cookies", normal=1, anomaly=0, offset=40)[0].image
    h, w = image.shape[:2]
    zoomed_out = np.full((2 * h, 2 * w, 3), 128, np.uint8)
    zoomed_out[h // 2 : h // 2 + h, w // 2 : w // 2 + w] = image
    small = np.asarray(Image.fromarray(zoomed_out).resize((w, h)))
    assert "content" in assess(cookies, extractor, small).reasons


def test_size_proportions_and_brightness_are_judged_against_the_training_photos(cookies, extractor):
    image = load_set("cookies", normal=1, anomaly=0, offset=41)[0].image
    h, w = image.shape[:2]
    huge = cookies.assess(ImageStats(width=w * 8, height=h * 8, brightness=image_stats(image).brightness))
    assert huge.reasons == ["size"] and f"{w * 8}×{h * 8} px, the training photos {w}×{h} px" in huge.message
    portrait = assess(cookies, extractor, np.ascontiguousarray(np.rot90(image)))
    assert "aspect" in portrait.reasons and "(portrait)" in portrait.message
    dark = assess(cookies, extractor, (image * 0.35).astype(np.uint8))
    assert "brightness" in dark.reasons and "darker" in dark.message


def test_without_embeddings_only_size_proportions_and_brightness_count():
    stats = [ImageStats(width=768, height=576, brightness=120 + i) for i in range(10)]
    familiarity = Familiarity.fit(stats)
    assert not familiarity.assess(ImageStats(768, 576, 125), np.ones(8, np.float32)).unlike
    assert familiarity.assess(ImageStats(6000, 4000, 125)).reasons == ["size"]
    assert not familiarity.assess(ImageStats(6000, 4000, None)).reasons == ["brightness"]


def test_too_few_training_photos_judge_nothing():
    familiarity = Familiarity.fit([ImageStats(768, 576, 120)] * 4)
    assert not familiarity.assess(ImageStats(60, 4000, 5)).unlike


@pytest.mark.shared_data
def test_a_saved_familiarity_judges_as_the_fitted_one(cookies, extractor):
    loaded = Familiarity.from_json(cookies.to_json(), cookies.tensors())
    for sample in load_set("aliens", normal=1, anomaly=0) + load_set("cookies", normal=1, anomaly=0, offset=35):
        e = embedding(extractor(sample.image))
        assert (
            loaded.assess(image_stats(sample.image), e).reasons == cookies.assess(image_stats(sample.image), e).reasons
        )


@pytest.mark.shared_data
def test_a_trained_model_says_which_photos_are_unlike_its_training_photos_and_keeps_it_when_saved():
    from engine import AnomalyModel, train

    result = train(train=load_set("cookies", normal=20, anomaly=10))
    loaded = AnomalyModel.from_files(result.model.to_files())
    unseen = load_set("cookies", normal=2, anomaly=1, offset=30)
    for model in (result.model, loaded):
        for sample in unseen:
            assert not model.predict(sample.image).familiarity.unlike, sample.key
        alien = model.predict(load_set("aliens", normal=1, anomaly=0)[0].image)
        assert "content" in alien.familiarity.reasons
