import datetime as dt
import random

import pytest

from streams.identity import IdKind, InvalidIdentity, birth_date, classify, luhn_digit, make_person, mask


def test_luhn_digit_of_known_numbers():
    assert luhn_digit("811218987") == 6  # the Tax Agency's published example 811218-9876
    assert luhn_digit("212000014") == 2  # Stockholms kommun 212000-0142


def test_classifies_person_coordination_and_organisation():
    assert classify("198112189876") is IdKind.PERSON
    assert classify(make_person(dt.date(1990, 5, 17), 123, coordination=True)) is IdKind.COORDINATION
    assert classify("2120000142") is IdKind.ORGANISATION
    assert birth_date(make_person(dt.date(1990, 5, 17), 123, coordination=True)) == dt.date(1990, 5, 17)


@pytest.mark.parametrize("number, message", [
    ("198112189875", "check digit"), ("19811218987", "11 digits"), ("198113189876", "real date"),
    ("2120000143", "check digit"), ("2110000142", "third digit"), ("19811218-9876", "digits only"),
])
def test_rejects_with_the_reason(number, message):
    with pytest.raises(InvalidIdentity, match=message):
        classify(number)


def test_generated_numbers_are_valid():
    rng = random.Random(3)
    for _ in range(500):
        born = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randint(0, 30000))
        assert classify(make_person(born, rng.randint(0, 999))) is IdKind.PERSON


def test_mask_never_contains_the_number():
    masked = mask("198112189876")
    assert "198112189876" not in masked and "8112189876" not in masked
    assert masked == mask("198112189876") != mask("198112189884")


@pytest.mark.parametrize("number", ["198112189876", "2120000142", "198112189875", "2110000142", "19811218-9876",
                                    "", 198112189876, None])
def test_classify_is_memoised_without_changing_its_answer(number):
    def answer():
        try:
            return classify(number)
        except InvalidIdentity as exc:
            return ("invalid", str(exc))

    first = answer()
    assert answer() == first  # a cached answer, valid or not, is the same (and a fresh exception)
    if isinstance(first, tuple):
        with pytest.raises(InvalidIdentity) as one:
            classify(number)
        with pytest.raises(InvalidIdentity) as two:
            classify(number)
        assert one.value is not two.value
