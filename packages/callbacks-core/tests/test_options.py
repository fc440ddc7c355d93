"""``trainer_callbacks.core.options``: the shared checks and a callback's options declared once."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from trainer_callbacks.core import (
    CallbackOptions,
    CallbackSpec,
    Choice,
    ConfigurationError,
    Either,
    Flag,
    Integer,
    ListOf,
    OptionProblem,
    OrNone,
    PerKey,
    Real,
    Text,
    check_value,
    option,
)
from trainer_callbacks.core.options import declared_options, options_markdown, signature_mismatches
from trainer_callbacks.core.spec import options_from_callable


def problem(check: Any, value: Any) -> str:
    with pytest.raises(ConfigurationError) as info:
        check_value("Cb", "x", value, check)
    return str(info.value)


# ---- the checks -----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["no", "false", "True", 0, 1, 1.0, None, [True]])
def test_a_flag_is_a_real_bool(value: Any) -> None:
    message = problem(Flag(), value)
    assert message.startswith(f"Cb(x={value!r}): give True or False")
    assert Flag()(True) is True and Flag()(False) is False


def test_a_flag_given_text_says_why_text_is_not_read() -> None:
    assert "bool('no') is True" in problem(Flag(), "no")


def test_integers_accept_integer_likes_and_store_int() -> None:
    np = pytest.importorskip("numpy")
    check = Integer(minimum=0)
    for value in (3, np.int64(3), np.uint16(3), np.array(3)):
        stored = check(value)
        assert stored == 3 and type(stored) is int
    assert problem(check, -1) == "Cb(x=-1): give an integer >= 0"
    assert problem(check, 1.5) == "Cb(x=1.5): give an integer >= 0"
    assert problem(check, 3.0) == "Cb(x=3.0): give an integer >= 0"  # a float is not silently truncated
    assert problem(check, "3") == "Cb(x='3'): give an integer >= 0"
    assert problem(check, True) == "Cb(x=True): give an integer >= 0; a bool is not a number"
    assert problem(check, np.bool_(True)).endswith("a bool is not a number")
    assert problem(Integer(1, 9, meaning="a count"), 10) == "Cb(x=10): give an integer in [1, 9] (a count)"


def test_reals_accept_any_real_number_and_store_float() -> None:
    np = pytest.importorskip("numpy")
    check = Real(0.0, 1.0, open_min=True, open_max=True)
    for value in (0.5, np.float32(0.5), np.float64(0.5), np.array(0.5), np.float16(0.5)):
        stored = check(value)
        assert stored == 0.5 and type(stored) is float
    assert Real()(np.int64(2)) == 2.0 and type(Real()(np.int64(2))) is float
    # the message that contradicted itself ("factor=np.float32(0.5): must be in (0, 1)") cannot happen:
    # a refused value is outside the range, or not a number
    assert problem(check, 1.0) == "Cb(x=1.0): give a finite number in (0, 1)"
    assert problem(check, np.float32(0.0)) == "Cb(x=np.float32(0.0)): give a finite number in (0, 1)"
    assert problem(check, True).endswith("a bool is not a number")
    assert problem(check, "0.5") == "Cb(x='0.5'): give a finite number in (0, 1)"
    assert problem(check, np.array([0.5, 0.5])).startswith("Cb(x=array([0.5, 0.5])): give")  # not a scalar


def test_reals_refuse_nan_always_and_infinity_unless_allowed() -> None:
    assert "finite" in problem(Real(), math.inf)
    assert "Cb(x=nan)" in problem(Real(finite=False), math.nan)
    assert Real(minimum=0, finite=False)(math.inf) == math.inf
    assert problem(Real(minimum=0, finite=False), -math.inf) == "Cb(x=-inf): give a number >= 0"


def test_zero_dimensional_torch_tensors_are_numbers() -> None:
    torch = pytest.importorskip("torch")
    assert Real()(torch.tensor(0.25)) == 0.25 and type(Real()(torch.tensor(0.25))) is float
    assert Integer()(torch.tensor(4)) == 4 and type(Integer()(torch.tensor(4))) is int
    assert problem(Integer(), torch.tensor(True)).endswith("a bool is not a number")
    assert problem(Real(), torch.tensor(True)).endswith("a bool is not a number")
    problem(Real(), torch.tensor([0.25, 0.5]))  # not a scalar


def test_choice_compares_types_too() -> None:
    check = Choice((1, "a"), "what they mean")
    assert check(1) == 1 and check("a") == "a"
    assert problem(check, True) == "Cb(x=True): use one of 1, 'a' (what they mean)"
    assert problem(check, 1.0).startswith("Cb(x=1.0): use one of")


def test_text_is_a_non_empty_string() -> None:
    assert Text()("eval_loss") == "eval_loss"
    for value in ("", "  ", " eval_loss", 3, None):
        assert "non-empty string" in problem(Text(), value)


def test_or_none_reads_as_one_fix() -> None:
    check = OrNone(Integer(minimum=1))
    assert check(None) is None and check(2) == 2
    assert problem(check, 0) == "Cb(x=0): give None or an integer >= 1"


def test_per_key_names_the_entry() -> None:
    np = pytest.importorskip("numpy")
    check = PerKey(Integer(minimum=0))
    assert check({"eval_loss": np.int64(2), "eval_f1": None}) == {"eval_loss": 2, "eval_f1": None}
    assert problem(check, {"eval_loss": -1}) == "Cb(x['eval_loss']=-1): give an integer >= 0"
    assert problem(check, {1: 2}).startswith("Cb(x[1]=2): the keys of the mapping are metric names")
    assert check(np.int64(4)) == 4


def test_list_of_and_either() -> None:
    check = Either((Real(minimum=0), ListOf(Real(minimum=0), "one per group")))
    assert check(1) == 1.0 and check((1, 2)) == [1.0, 2.0]
    assert problem(check, [0.1, -1]) == "Cb(x[1]=-1): give a finite number >= 0"
    assert problem(check, []) == "Cb(x=[]): give a non-empty list (one per group)"
    assert problem(check, -1) == "Cb(x=-1): give a finite number >= 0"


def test_a_custom_check_raises_option_problem_and_gets_the_same_message() -> None:
    def even(value: Any) -> int:
        if value % 2:
            raise OptionProblem("give an even number")
        return int(value)

    assert problem(even, 3) == "Cb(x=3): give an even number"
    with pytest.raises(ConfigurationError, match=r"^Metric\('f1'\)\.patience=3: give an even number$"):
        check_value("", "Metric('f1').patience", 3, even)


# ---- declaring options --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SpikeOptions(CallbackOptions):
    factor: float = option(2.0, "a loss above factor x the average is a spike (> 1)", Real(1, open_min=True))
    stop: bool = option(False, "stop at the first | spike", Flag())
    pattern: str | None = option(None, "saved upper-case", OrNone(Text()), save=lambda stored, given: given.upper())
    hidden: int = option(0, "kept under another name", Integer(0), attribute="_hidden")


class Spike:
    declared_options = SpikeOptions

    def __init__(self, factor: float = 2.0, stop: bool = False, pattern: str | None = "x", hidden: int = 0) -> None:
        options = SpikeOptions.parse(self, locals())
        options.assign(self)
        self.saved = options.saved()


def test_parse_checks_assigns_and_saves() -> None:
    np = pytest.importorskip("numpy")
    spike = Spike(factor=np.float32(3.5), stop=True, pattern="ab", hidden=np.int64(4))
    assert (spike.factor, spike.stop, spike.pattern, spike._hidden) == (3.5, True, "ab", 4)  # type: ignore[attr-defined]
    assert type(spike.factor) is float and not hasattr(spike, "hidden")  # type: ignore[attr-defined]
    assert spike.saved == {"factor": 3.5, "stop": True, "pattern": "AB", "hidden": 4}
    with pytest.raises(ConfigurationError, match=r"^Spike\(stop='no'\): give True or False"):
        Spike(stop="no")  # type: ignore[arg-type]


def test_a_constructor_that_drifts_from_its_declaration_fails_at_once() -> None:
    class Forgot:
        def __init__(self, factor: float = 2.0, extra: int = 1) -> None:
            SpikeOptions.parse(self, locals())

    with pytest.raises(TypeError, match="does not pass option"):
        Forgot()

    class Extra:
        def __init__(self, factor: float = 2.0, stop: bool = False, pattern: Any = None, hidden: int = 0, x: int = 1):
            SpikeOptions.parse(self, locals())

    with pytest.raises(TypeError, match=r"argument\(s\) x are not declared in SpikeOptions"):
        Extra()


def test_signature_mismatches_names_each_difference() -> None:
    # Spike's signature defaults pattern to "x" while SpikeOptions says None
    assert signature_mismatches(Spike) == ["pattern: default 'x' in the signature, None declared"]

    class Good:
        declared_options = SpikeOptions

        def __init__(
            self, factor: float = 2.0, stop: bool = False, pattern: str | None = None, hidden: int = 0
        ) -> None: ...

    assert signature_mismatches(Good) == []


def test_mutable_defaults_are_refused() -> None:
    with pytest.raises(TypeError, match="immutable"):
        option([], "a list")


def test_specs_come_from_the_declaration_and_a_subclass_with_its_own_init_falls_back() -> None:
    specs = options_from_callable(Spike)
    assert [s.name for s in specs] == ["factor", "stop", "pattern", "hidden"]
    assert specs[0].type == "float" and specs[0].default == 2.0 and specs[0].doc.startswith("a loss above")
    assert declared_options(Spike) is SpikeOptions

    class Inherits(Spike):
        pass

    assert declared_options(Inherits) is SpikeOptions

    class OwnInit(Spike):
        """Another constructor.

        Args:
            level (int): its own option.
        """

        def __init__(self, level: int = 1) -> None: ...

    assert declared_options(OwnInit) is None
    (level,) = options_from_callable(OwnInit)
    assert (level.name, level.doc) == ("level", "its own option.")


def test_markdown_table_escapes_pipes() -> None:
    table = options_markdown(CallbackSpec("spike", "spikes", Spike).option_specs())
    lines = table.splitlines()
    assert lines[0] == "| option | type | default | meaning |"
    assert lines[3] == "| `stop` | `bool` | `False` | stop at the first \\| spike |"
    assert lines[4].startswith("| `pattern` | `str \\| None` | `None` |")
