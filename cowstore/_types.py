"""What kind of value a stored or heap value is, as the tools name it."""
from ._cowstore import DictBase, ListBase, SetBase


def is_ndarray(value):
    """A numpy array (without importing numpy: a store without arrays never needs it)."""
    return type(value).__name__ == "ndarray" and hasattr(value, "dtype")


def is_container(value):
    return isinstance(value, (DictBase, ListBase, SetBase))


def type_name(value):
    """What ls and du call a value's type: dict/list/set (frozen ones with a
    prefix), ndarray, or the Python type's name."""
    for base, name in ((DictBase, "dict"), (ListBase, "list"), (SetBase, "set")):
        if isinstance(value, base):
            return ("frozen" if type(value).__name__.startswith("Frozen") else "") + name
    return "None" if value is None else type(value).__name__
