import pytest

from reasoner.registry import Registry
from reasoner.tasks import PackError, get_pack


def test_registry_refuses_a_second_factory_and_lists_valid_names():
    reg = Registry("widget")

    @reg.register("a")
    def a():
        return 1

    assert reg.register("a")(a) is a  # registering the same factory again is harmless
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.register("a")(lambda: 2)
    reg.register("b")(lambda: 3)
    with pytest.raises(KeyError, match="unknown widget 'c'; valid: a, b"):
        reg.lookup("c")


def test_packs_raise_their_own_error_type():
    with pytest.raises(PackError, match="valid: arith, gsm8k, math"):
        get_pack("nope")
