"""The committed fixtures/ data is what fixtures/make_fixtures.py makes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from pytest_modelgate.data import from_folder

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def test_digit_folder_matches_its_generator(tmp_path):
    spec = importlib.util.spec_from_file_location("make_fixtures",
                                                  FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make_digits(tmp_path)
    committed, fresh = from_folder(FIXTURES / "digits"), from_folder(tmp_path)
    assert committed.class_names == ("one", "seven", "zero")
    assert (len(committed.train), len(committed.test)) == (45, 15)
    for a, b in ((committed.train, fresh.train), (committed.test, fresh.test)):
        assert a.ids == b.ids
        np.testing.assert_array_equal(a.labels, b.labels)
