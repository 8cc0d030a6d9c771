"""The subset of Lucene query syntax MusicBrainz search users write, parsed to a small tree.

Supported: ``field:value``, ``field:"a phrase"``, ``field:(grouped words)``, bare words and
phrases (default field), ``AND``/``OR``/``NOT`` and ``&&``/``||``/``!``, ``+``/``-``
prefixes, parentheses, ranges ``[a TO b]`` / ``{a TO b}``, backslash escapes (as
musicbrainzngs sends them), and a trailing ``~`` or ``^n`` (accepted and ignored). Adjacent
clauses without an operator are OR'ed, as in MusicBrainz's search. AND binds tighter than OR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["And", "Node", "Not", "Or", "QuerySyntaxError", "Range", "Should", "Term", "parse"]


class QuerySyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Term:
    field: str | None  # None: the default field
    text: str
    phrase: bool = False


@dataclass(frozen=True)
class Range:
    field: str | None
    low: str
    high: str


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class Should:
    """Inside an And: adds to the score of what the other children match, filters nothing."""

    child: Node


Node = Term | Range | And | Or | Not | Should

_SPECIAL = set('+-&|!(){}[]^"~*?:\\/')
_MAX_DEPTH = 32
_MAX_TOKENS = 2000


@dataclass
class _Tok:
    kind: str  # word, phrase, lparen, rparen, and, or, not, plus, minus, colon, range
    value: str = ""


# The operators spelled by punctuation, and their token kinds. No two share a first
# character, and none starts a phrase or a range, so their order here does not matter.
_OPERATORS: Final = (
    ("(", "lparen"),
    (")", "rparen"),
    ("&&", "and"),
    ("||", "or"),
    ("!", "not"),
    ("+", "plus"),
    ("-", "minus"),
)


def _operator_at(q: str, i: int) -> tuple[str, str] | None:
    return next((op for op in _OPERATORS if q.startswith(op[0], i)), None)


def _tokenize(q: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(q)
    while i < n:
        ch = q[i]
        if ch.isspace():
            i += 1
        elif (op := _operator_at(q, i)) is not None:
            toks.append(_Tok(op[1]))
            i += len(op[0])
        elif ch == '"':
            j = i + 1
            buf = []
            while j < n and q[j] != '"':
                if q[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(q[j])
                j += 1
            toks.append(_Tok("phrase", "".join(buf)))
            i = j + 1
            i = _skip_modifiers(q, i)
        elif ch in "[{":
            close = "]" if ch == "[" else "}"
            j = q.find(close, i)
            if j < 0:
                raise QuerySyntaxError("unclosed range")
            toks.append(_Tok("range", q[i + 1 : j]))
            i = j + 1
        else:
            j = i
            buf = []
            while j < n:
                c = q[j]
                if c == "\\" and j + 1 < n:
                    buf.append(q[j + 1])
                    j += 2
                    continue
                if c.isspace() or c in '()"[]{}' or (c == ":" and buf):
                    break
                if c in "~^" and buf:
                    j = _skip_modifiers(q, j)
                    break
                buf.append(c)
                j += 1
            word = "".join(buf)
            if j < n and q[j] == ":" and word:
                toks.append(_Tok("field", word.lower()))
                j += 1
            elif word in ("AND", "OR", "NOT"):
                toks.append(_Tok(word.lower()))
            elif word:
                toks.append(_Tok("word", word))
            elif j == i:  # a lone special character: skip it
                j += 1
            i = j
        if len(toks) > _MAX_TOKENS:
            raise QuerySyntaxError("query too long")
    return toks


def _skip_modifiers(q: str, i: int) -> int:
    while i < len(q) and q[i] in "~^":
        i += 1
        while i < len(q) and q[i] in "0123456789.":
            i += 1
    return i


class _Parser:
    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.pos = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def query(self, field: str | None, depth: int) -> Node | None:
        """A sequence of clauses; implicit and explicit OR between AND-groups."""
        if depth > _MAX_DEPTH:
            raise QuerySyntaxError("query nested too deeply")
        groups: list[list[Node]] = [[]]
        required: list[Node] = []
        excluded: list[Node] = []
        pending_and = False
        while (tok := self.peek()) is not None and tok.kind != "rparen":
            if tok.kind == "or":
                self.take()
                pending_and = False
                continue
            if tok.kind == "and":
                self.take()
                pending_and = True
                continue
            modifier = ""
            if tok.kind in ("plus", "minus", "not"):
                modifier = self.take().kind
                if self.peek() is None:
                    break
            clause = self.clause(field, depth)
            if clause is None:
                continue
            if modifier in ("minus", "not"):
                excluded.append(clause)
                continue
            if modifier == "plus":
                required.append(clause)
                continue
            if pending_and and groups[-1]:
                groups[-1].append(clause)
            else:
                groups.append([clause])
            pending_and = False
        alternatives: list[Node] = []
        for g in groups:
            if g:
                alternatives.append(g[0] if len(g) == 1 else And(tuple(g)))
        node: Node | None
        if len(alternatives) > 1:
            node = Or(tuple(alternatives))
        elif alternatives:
            node = alternatives[0]
        else:
            node = None
        if required:
            node = And((*required, Should(node)) if node is not None else tuple(required))
        if excluded:
            base = node if node is not None else Term(field, "*")
            node = And((base, *(Not(e) for e in excluded)))
        return node

    def clause(self, field: str | None, depth: int) -> Node | None:
        tok = self.take()
        if tok.kind == "field":
            nxt = self.peek()
            if nxt is None:
                return None
            return self.clause(tok.value, depth)
        if tok.kind == "lparen":
            inner = self.query(field, depth + 1)
            closing = self.peek()
            if closing is not None and closing.kind == "rparen":
                self.take()
            return inner
        if tok.kind == "rparen":
            return None
        if tok.kind == "phrase":
            return Term(field, tok.value, phrase=True)
        if tok.kind == "range":
            low, sep, high = tok.value.partition(" TO ")
            if not sep:
                raise QuerySyntaxError("a range is [low TO high]")
            return Range(field, low.strip(), high.strip())
        if tok.kind == "word":
            return Term(field, tok.value)
        return None  # a dangling operator


def parse(q: str) -> Node | None:
    """The query tree, or None for a query with no terms."""
    parser = _Parser(_tokenize(q))
    node = parser.query(None, 0)
    while parser.peek() is not None:  # unbalanced ")": read on
        parser.take()
        more = parser.query(None, 0)
        if more is not None:
            node = more if node is None else Or((node, more))
    return node
