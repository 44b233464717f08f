"""Parse XSPEC model expressions such as ``constant*tbabs*(powerlaw + bbodyrad)``.

The grammar is XSPEC's: ``+`` adds, ``*`` multiplies, parentheses group, and a component name
directly followed by ``(`` multiplies what the parentheses hold (``phabs(powerlaw)``).  A
component used twice gets a numbered label (``powerlaw``, ``powerlaw_2``), which is how its
parameters are addressed (``powerlaw_2.PhoIndex``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ModelError

_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(.))")


@dataclass(frozen=True)
class Term:
    """One additive component times the multiplicative components that act on it."""

    multiplicative: tuple[str, ...]
    additive: str | None


def _tokenize(text: str) -> list[str]:
    tokens = []
    for name, op in _TOKEN.findall(text):
        if name:
            tokens.append(name)
        elif op.strip():
            if op not in "+*()":
                raise ModelError(f"unexpected character '{op}' in model expression '{text}'; use names, +, * and ()")
            tokens.append(op)
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.names: list[str] = []  # component names in order of appearance

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected=None):
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            want = f"'{expected}'" if expected else "a component name or '('"
            raise ModelError(f"model expression '{self.text}' is incomplete: expected {want}")
        self.pos += 1
        return tok

    def expr(self):
        node = [self.product()]
        while self.peek() == "+":
            self.take("+")
            node.append(self.product())
        return ("add", node) if len(node) > 1 else node[0]

    def product(self):
        node = [self.factor()]
        while self.peek() in ("*", "("):
            if self.peek() == "*":
                self.take("*")
            node.append(self.factor())
        return ("mul", node) if len(node) > 1 else node[0]

    def factor(self):
        tok = self.take()
        if tok == "(":
            node = self.expr()
            self.take(")")
            return node
        if tok in "+*)":
            raise ModelError(f"unexpected '{tok}' in model expression '{self.text}'")
        self.names.append(tok)
        return ("comp", len(self.names) - 1)

    def parse(self):
        if not self.tokens:
            raise ModelError("empty model expression; give e.g. 'tbabs*powerlaw'")
        node = self.expr()
        if self.peek() is not None:
            raise ModelError(f"unexpected '{self.peek()}' in model expression '{self.text}'")
        return node


def parse_expression(text: str, kind_of) -> tuple[list[str], list[str], list[Term]]:
    """Parse ``text``; ``kind_of(name)`` returns 'additive' or 'multiplicative'.

    Returns the component names and their labels in order of appearance, and the expression
    expanded into a sum of :class:`Term`.
    """
    parser = _Parser(text)
    tree = parser.parse()
    names = parser.names
    labels, seen = [], {}
    for n in names:
        key = n.lower()
        seen[key] = seen.get(key, 0) + 1
        labels.append(key if seen[key] == 1 else f"{key}_{seen[key]}")
    kinds = [kind_of(n) for n in names]

    def expand(node) -> list[tuple[tuple[str, ...], str | None]]:
        tag, arg = node
        if tag == "comp":
            lab = labels[arg]
            return [((), lab)] if kinds[arg] == "additive" else [((lab,), None)]
        parts = [expand(child) for child in arg]
        if tag == "add":
            return [t for p in parts for t in p]
        out = [((), None)]
        for p in parts:
            new = []
            for m1, a1 in out:
                for m2, a2 in p:
                    if a1 is not None and a2 is not None:
                        raise ModelError(
                            f"model '{text}' multiplies two additive components ({a1} and {a2}); "
                            "only multiplicative components may multiply"
                        )
                    new.append((m1 + m2, a1 if a1 is not None else a2))
            out = new
        return out

    terms = []
    expanded = expand(tree)
    if len(expanded) == 1 and expanded[0][1] is None:
        # a purely multiplicative model (e.g. "tbabs") is valid as a factor of a composition
        return names, labels, [Term(expanded[0][0], None)]
    for mult, add in expanded:
        if add is None:
            raise ModelError(
                f"model '{text}' has a term with no additive component ({'*'.join(mult)}); "
                "multiplicative components must act on an additive one, e.g. tbabs*powerlaw"
            )
        terms.append(Term(mult, add))
    return names, labels, terms
