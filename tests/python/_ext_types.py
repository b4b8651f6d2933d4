"""Classes the extension-leaf tests store by reference: importable by path
("_ext_types:Color"), so a fresh process can read them back."""
import collections
import dataclasses
import enum
import numbers
import uuid
from fractions import Fraction


class Color(enum.Enum):
    RED = 1
    BLUE = "blue"


Point = collections.namedtuple("Point", "x y")


@dataclasses.dataclass(frozen=True)
class FrozenRow:
    id: int
    note: object = None


@dataclasses.dataclass
class Row:
    id: int
    tags: list = dataclasses.field(default_factory=list)


class Money:
    """A class of the user's own, stored through cowstore.register."""

    def __init__(self, amount, currency):
        self.amount, self.currency = amount, currency

    def __eq__(self, other):
        return isinstance(other, Money) and (self.amount, self.currency) == (other.amount,
                                                                              other.currency)

    def __hash__(self):
        return hash((self.amount, self.currency))


class Opaque:
    """Storable only through the pickle fallback."""

    def __init__(self, x):
        self.x = x

    def __eq__(self, other):
        return isinstance(other, Opaque) and self.x == other.x

    __hash__ = None


def money_to_data(m):
    return (m.amount, m.currency)


def money_from_data(data):
    return Money(*data)


# ---- values an audit found stored and then unreadable, or changed ----------

class NanEnum(enum.Enum):
    N = float("nan")


class TupleEnum(tuple, enum.Enum):
    A = (1, 2)


class Parsed(collections.namedtuple("Parsed", "x")):
    """A namedtuple whose own __new__ takes other arguments than its fields."""
    __slots__ = ()

    def __new__(cls, text):
        return super().__new__(cls, int(text))


class Loose(collections.namedtuple("Loose", "x")):
    """A namedtuple subclass without __slots__ = (): instances get a __dict__."""


@dataclasses.dataclass(frozen=True)
class Holder:
    x: object


@dataclasses.dataclass
class Derived:
    a: int
    later: int = dataclasses.field(init=False)

    def __post_init__(self):
        self.extra = self.a * 2


@dataclasses.dataclass(frozen=True, eq=False)
class ByIdentity:
    x: int


class SubFraction(Fraction):
    """Equal to the Fraction and int it holds: pickled, it would be a key apart."""


class SubUUID(uuid.UUID):
    """Equal to the UUID it holds."""


@dataclasses.dataclass
class NewWants:
    """A dataclass whose own __new__ wants an argument: it cannot be rebuilt
    without calling __init__ (copy.copy fails on it too)."""
    x: int

    def __new__(cls, x):
        return super().__new__(cls)


@dataclasses.dataclass
class HashedByIdentity:
    """Equal by value, hashed by identity: a rebuilt one hashes anew."""
    x: int
    __hash__ = object.__hash__


class SubFrozenSet(frozenset):
    """Equal to the frozenset it holds."""


class SubSet(set):
    """Equal to the set it holds."""


class Meters(numbers.Real):
    """A number of the user's own, equal to the float it holds (as numpy's
    scalars are: np.int64(1) == 1)."""

    def __init__(self, x):
        self.x = x

    def __eq__(self, other):
        return float(self) == other

    def __hash__(self):
        return hash(self.x)

    def __float__(self):
        return float(self.x)

    __abs__ = __add__ = __ceil__ = __floor__ = __floordiv__ = __le__ = __lt__ = None
    __mod__ = __mul__ = __neg__ = __pos__ = __pow__ = __radd__ = __rfloordiv__ = None
    __rmod__ = __rmul__ = __round__ = __rpow__ = __rtruediv__ = __truediv__ = None
    __trunc__ = None


@dataclasses.dataclass(frozen=True)
class Tagged:
    """A key whose second field takes no part in its equality and hash."""
    id: int
    note: object = dataclasses.field(default=None, compare=False)


class Level(enum.Enum):
    """Members whose values are JSON scalars other than strings."""
    LOW = 3
    HALF = 2.5
    ON = True
    UNSET = None


class Pair(enum.Enum):
    """A member whose value, a tuple, is no JSON key."""
    AB = ("a", "b")


class Unkeyed:
    """Compared and hashed by identity; pickled by value (a copy reads back)."""
