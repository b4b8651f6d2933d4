"""Users' subclasses of the containers, copied and pickled as subclasses of
dict, list and set are.

The package's own classes copy and pickle in C and hold no attributes.  A
user's subclass may add attributes (its ``__dict__``) and an ``__init__``
whose signature is its own, so, as for the builtins' subclasses:

- ``copy.copy``, ``copy.deepcopy`` and pickling keep the class and the
  attributes (``deepcopy`` copies them deeply), and rebuild through the
  class's ``__new__`` and the base's initialiser, never the subclass's
  ``__init__``;
- what makes a new container from one (``copy()``, a slice, ``|``, ``+``,
  ``*``, the set algebra) gives the package's own type, as ``dict`` gives a
  ``dict`` for ``dict_subclass | {}``.

The container modules call ``adopt`` from ``__init_subclass__``; the
package's own classes are left to their C methods.
"""
import copy as _copy

_OWN_MODULES = ("cowstore._dict", "cowstore._list", "cowstore._set")
#: Where the package's classes and their C bases are defined.
_PACKAGE_MODULES = _OWN_MODULES + ("cowstore._cowstore",)


def own_type(obj):
    """The package's class that obj is an instance of (CowDict, FrozenList...)."""
    for cls in type(obj).__mro__:
        if cls.__module__ in _OWN_MODULES and not cls.__name__.startswith("_"):
            return cls
    raise TypeError(f"{type(obj).__name__} is not a cowstore container")


def is_own(cls):
    """Whether cls is one of the package's classes (no user's subclass)."""
    return cls.__module__ in _OWN_MODULES


def rebuild(cls, value):
    """An instance of cls holding value (O(1) for a cowstore container), made
    by cls.__new__ and the base's initialiser."""
    obj = cls.__new__(cls)
    obj._init(value)
    return obj


def state(obj):
    """An instance's state for pickle and copy, as ``object.__getstate__``
    gives it (its ``__dict__``, its slots' values) or the class's own
    ``__getstate__``; None for the package's classes, which have none."""
    return None if is_own(type(obj)) else obj.__getstate__()


def set_state(obj, state):
    """Gives obj state as pickle's BUILD does: through the class's
    ``__setstate__``, else as a ``__dict__`` and slot values."""
    if state is None:
        return
    setstate = getattr(obj, "__setstate__", None)
    if setstate is not None:
        setstate(state)
        return
    slots = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
    if state:
        obj.__dict__.update(state)
    for name, value in (slots or {}).items():
        setattr(obj, name, value)


def _subclass_copy(self):
    new = rebuild(type(self), self)
    set_state(new, state(self))
    return new


def _subclass_deepcopy(self, memo):
    new = rebuild(type(self), self)
    memo[id(self)] = new
    set_state(new, _copy.deepcopy(state(self), memo))
    return new


def _subclass_reduce(self):
    # By value: a store reference would come back as the package's type.
    from ._parcel import by_value
    return by_value(self)


def _subclass_reduce_ex(self, protocol):
    from ._parcel import reduce_ex
    if type(self).__reduce__ is not _subclass_reduce:
        return self.__reduce__()            # the subclass's own, as object.__reduce_ex__ does
    return reduce_ex(self, protocol, self.__reduce__)


_METHODS = {"__copy__": _subclass_copy, "__deepcopy__": _subclass_deepcopy,
            "__reduce__": _subclass_reduce, "__reduce_ex__": _subclass_reduce_ex}


def adopt(cls):
    """Gives a user's subclass the methods above, where neither it nor a
    user's class between it and the package's defines its own."""
    if cls.__module__ in _OWN_MODULES:
        return
    for name, method in _METHODS.items():
        if not any(name in vars(c) for c in cls.__mro__
                   if c.__module__ not in _PACKAGE_MODULES and c is not object):
            setattr(cls, name, method)
