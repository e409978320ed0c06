"""Every construct the built-in Python grammar covers (tests/test_python_grammar.py)."""

from __future__ import annotations

import os.path as osp, sys
from . import sibling
from ..pkg.mod import (alpha as a,
                       beta,)
from ... import gamma
from collections import *

GLOBAL_CONST: int = 0x_ff + 0o17 - 0b1010 * 1_000 // 3 % 7
ratio = 1.5e-3 + .25 + 10. + 3j + 2.5J
text = 'single' "double" r'raw\d' u"unicode" f'{name!r:>10}' f"{{}} {obj.attr[0]} {call()}" '\n\x41\u00e9'
data = b'bytes' rb"\x00" B"\t"
doc = """triple
quoted 'string' with "quotes"
"""
raw_doc = r'''raw
triple\d'''
x = y = 0
a, *rest = items if False else ()
first, (second, third) = pairs[0]
counter += 1
matrix[1:2, ::3] -= 2
total: float
flag: bool = not x and y or z
value = -x ** -y + ~z << 2 >> 1 & 3 | 4 ^ 5 @ m
check = 1 < x <= 2 != y == z > w >= v is not None is u in s not in t
pick = (lambda: 0) if x else lambda a, b=1, *args, c, d=2, **kw: a + b
squares = [i * i for i in range(10) if i % 2 for _ in (0,)]
table = {k: v for k, v in pairs}
uniq = {x for x in items}
gen = sum(i for i in range(3))
merged = {**base, 'key': [1, 2, *more], "set": {1, 2}}
empty = (), [], {}
single = (1,)
nested = f(a, *args, key=value, *more, **kwargs, last=1)
sliced = seq[:], seq[1:], seq[::-1], seq[a:b:c], seq[...]
joined = ("implicit"
          "concatenation"
          )
continued = 1 + \
    2
obj.attr.method(arg)[0].other = None; pass


@decorator
@decorators.with_args(1, key=True)
async def coroutine(first, second: int = 2, *, third=None) -> None:
    pass


def function(a, b: int, c=3, *args: str, d, e: float = 1.0, **kwargs) -> dict[str, int]:
    """Docstring."""
    global GLOBAL_CONST
    result = await fetch(a) if a else None
    if not args:
        return
    elif a is None:
        raise ValueError("no a") from None
    else:
        assert b > 0, "b must be positive"
    for i, (k, v) in enumerate(kwargs.items()):
        if i:
            continue
        break
    else:
        pass
    while c:
        c -= 1
    else:
        del a, kwargs[b]
    try:
        risky()
    except (KeyError, IndexError) as exc:
        print(exc)
    except ValueError:
        pass
    except:
        raise
    else:
        yield b
    finally:
        cleanup()
    with open(a) as handle, lock:
        data = yield from handle
    def inner():
        nonlocal result
        result = 1

        # a comment at another indentation

        return result
    return inner


class Base:
    pass


class Child(Base, metaclass=Meta):
    attr = 1

    def method(self, *, key=None):
        try:
            return self.attr
        finally:
            self.attr = key
    @property
    def value(self): return self._value


if __name__ == "__main__":
    function(1, 2, d=4)
