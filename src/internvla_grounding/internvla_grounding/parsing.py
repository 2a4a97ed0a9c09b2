"""Turn a model's grounding answer into boxes, points and traces in source-image pixels.

Real answers are messy: code fences, prose around the JSON, single quotes, trailing commas,
Python tuples, JSON cut off by the token limit, wrong types, absurd numbers. The parser reads
every bracketed value it can find with a small tolerant reader (it never uses eval), interprets
what has a grounding shape, maps coordinates to the source image, and says in the status what it
dropped and why instead of guessing. No answer text makes it raise (only bad image sizes,
which are the caller's error).

Rules that decide what is kept (documented here because users will ask):
- Coordinates are the Qwen2.5-VL convention: pixels of the image as the processor resized it
  (model_size), or 0..1000 normalised when asked. They are scaled to the source image.
- A coordinate within 10% of the image outside it is clipped to the border (models overshoot by
  a pixel or two); further out, the item is dropped. Box corners given in the wrong order are
  swapped; a box with no area left is dropped.
- Items cut off by the end of the answer are dropped; an item whose geometry is complete but
  whose label was cut keeps its geometry and loses the label.
- A plain [x1, y1, x2, y2] is a box and [x, y] a point; a list of [x, y] pairs is a trace when a
  trace was asked for and separate points otherwise.
"""

from __future__ import annotations

import enum
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from internvla_policy.vision.geometry import Box2D, GroundingResult, Keypoint2D, ParseStatus, Point2D, Trace2D

from .prompts import GroundingKind

MAX_ANSWER_CHARS = 20_000
MAX_DEPTH = 16  # real answers nest 3 or 4 deep; the cap bounds the work on pathological text
CLIP_SLACK = 0.1
_MAX_MESSAGE_CHARS = 600

BOX_KEYS = ("bbox_2d", "bbox", "box_2d", "box")
POINT_KEYS = ("point_2d", "point", "keypoint")
TRACE_KEYS = ("trace", "trace_2d", "trajectory", "path", "points")
LABEL_KEYS = ("label", "name", "object", "category")
SCORE_KEYS = ("score", "confidence")


class CoordinateConvention(enum.Enum):
    """How the answer's numbers relate to the image the model saw (the node's `coordinates` parameter)."""

    PIXELS = "pixels"  # pixels of the processor-resized image (Qwen2.5-VL)
    NORMALIZED_1000 = "normalized_1000"  # 0..1000 on both axes (Qwen2-VL and many grounding datasets)


def parse_answer(
    answer: str,
    source_size: tuple[int, int],
    model_size: tuple[int, int] | None = None,
    convention: CoordinateConvention = CoordinateConvention.PIXELS,
    kind: GroundingKind | None = None,
) -> GroundingResult:
    """Parse one answer for a source image of source_size (width, height).

    model_size (width, height) is the processor-resized image the pixel coordinates refer to;
    it is required for CoordinateConvention.PIXELS and ignored for NORMALIZED_1000. kind is the
    kind that was asked for; it only decides how an ambiguous list of [x, y] pairs is read.
    """
    width, height = (int(v) for v in source_size)
    if convention is CoordinateConvention.NORMALIZED_1000:
        extent = (1000.0, 1000.0)
    elif model_size is None:
        raise ValueError("model_size is required for pixel coordinates")
    else:
        extent = (float(model_size[0]), float(model_size[1]))
    if width <= 0 or height <= 0 or min(extent) <= 0:
        raise ValueError(f"image sizes must be positive, got source {source_size} and model {extent}")
    interpreter = _Interpreter(_Frame(width, height, extent), kind)
    return interpreter.run(answer)


@dataclass(frozen=True)
class _Frame:
    """Maps the model's coordinates to source pixels, clipping small overshoots."""

    width: int
    height: int
    extent: tuple[float, float]

    def point(self, x: float, y: float) -> Point2D | None:
        mapped = []
        for value, extent, size in ((x, self.extent[0], self.width), (y, self.extent[1], self.height)):
            if not -CLIP_SLACK * extent <= value <= (1 + CLIP_SLACK) * extent:  # also rejects NaN
                return None
            mapped.append(min(max(value / extent * size, 0.0), float(size)))
        return Point2D(*mapped)


@dataclass
class _Item:
    label: str = ""
    score: float = 1.0


@dataclass
class _Report:
    """Geometry kept so far and why anything else was dropped."""

    boxes: list[Box2D] = field(default_factory=list)
    points: list[Keypoint2D] = field(default_factory=list)
    traces: list[Trace2D] = field(default_factory=list)
    problems: Counter = field(default_factory=Counter)

    def drop(self, why: str) -> None:
        self.problems[why] += 1

    def message(self) -> str:
        parts = [why if n == 1 else f"{why} (x{n})" for why, n in self.problems.items()]
        text = "; ".join(parts)
        return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 3] + "..."


class _Interpreter:
    def __init__(self, frame: _Frame, kind: GroundingKind | None) -> None:
        self.frame = frame
        self.kind = kind
        self.report = _Report()
        self.structured = False  # saw JSON-like structure (not only parenthesised prose asides)

    def run(self, answer: str) -> GroundingResult:
        if len(answer) > MAX_ANSWER_CHARS:
            self.report.drop(f"answer longer than {MAX_ANSWER_CHARS} characters, the rest was not read")
            answer = answer[:MAX_ANSWER_CHARS]
        for value in _scan(answer):
            if isinstance(value, _Cut):
                self.report.drop("the answer ends inside unfinished JSON (truncated)")
            self.value(value, top_level=True)
        report = self.report
        if report.boxes or report.points or report.traces:
            status = ParseStatus.PARTIAL if report.problems else ParseStatus.OK
        elif report.problems:
            status = ParseStatus.FAILED
        elif self.structured or not answer.strip():
            status = ParseStatus.EMPTY
            report.drop("the answer holds no boxes, points or traces")
        else:
            status = ParseStatus.FAILED
            report.drop("no JSON or coordinate list found in the answer")
        return GroundingResult(
            self.frame.width,
            self.frame.height,
            tuple(report.boxes),
            tuple(report.points),
            tuple(report.traces),
            status,
            report.message(),
        )

    # Shapes -------------------------------------------------------------------------------

    def value(self, value, top_level: bool = False) -> None:
        if isinstance(value, dict):
            self.structured = True
            self.mapping(value)
        elif isinstance(value, list):
            self.structured = self.structured or not (top_level and isinstance(value, _Tuple))
            self.sequence(value, top_level)

    def sequence(self, items: list, top_level: bool) -> None:
        cut = isinstance(items, _Cut)
        if all(_is_number(v) for v in items):
            if items and not cut:  # a cut coordinate list is dropped; the truncation is reported once
                self.plain_coordinates(items, _Item(), top_level)
            return
        complete = [v for v in items if not isinstance(v, _Cut)]
        pairs_only = all(isinstance(v, list) for v in items) and all(_is_pair(v) for v in complete)
        if self.kind is GroundingKind.TRACE and complete and pairs_only:
            if cut:
                self.report.drop("a trace cut off by the end of the answer")
            else:
                self.trace(complete, _Item())
            return
        for item in items:  # cut items too: an object may be cut after its complete coordinates
            if isinstance(item, (list, dict)):
                self.value(item)
            elif not isinstance(items, _Tuple):
                self.report.drop(f"a list element that is not a coordinate list or object: {_brief(item)}")

    def plain_coordinates(self, numbers: list, item: _Item, top_level: bool) -> None:
        if len(numbers) == 4:
            self.box(numbers, item)
        elif len(numbers) == 2:
            self.point(numbers, item)
        elif not (top_level and isinstance(numbers, _Tuple)):
            # A parenthesised aside in prose such as "(1)" is not an answer; a bracketed list is.
            self.report.drop(
                f"a coordinate list of length {len(numbers)} is neither a point [x, y] "
                "nor a box [x1, y1, x2, y2]"
            )

    def mapping(self, obj: dict) -> None:
        keys = {str(k).lower(): v for k, v in obj.items()}
        item = _Item(self.label(keys), self.score(keys))
        geometry = False
        for key in BOX_KEYS:
            if key in keys:
                geometry = True
                self.geometry(keys[key], item, self.box, 4, key)
                break
        for key in POINT_KEYS:
            if key in keys:
                geometry = True
                self.geometry(keys[key], item, self.point, 2, key)
                break
        for key in TRACE_KEYS:
            if key in keys:
                geometry = True
                self.trace_value(keys[key], item, key)
                break
        if geometry:
            return
        nested = [v for v in keys.values() if isinstance(v, (list, dict))]
        if nested:  # e.g. {"objects": [...]}
            for v in nested:
                self.value(v)
        elif not isinstance(obj, _Cut):
            self.report.drop(f"an object without bbox_2d, point_2d or trace: {_brief(obj)}")

    def geometry(self, value, item: _Item, build, arity: int, key: str) -> None:
        if isinstance(value, _Cut):
            self.report.drop(f"{key} cut off by the end of the answer")
        elif isinstance(value, list) and value and all(_is_number_list(v, arity) for v in value):
            for v in value:  # several boxes/points under one label
                build(v, item)
        elif _is_number_list(value, arity):
            build(value, item)
        else:
            self.report.drop(f"{key} is not {arity} numbers: {_brief(value)}")

    def trace_value(self, value, item: _Item, key: str) -> None:
        if isinstance(value, _Cut):
            self.report.drop(f"{key} cut off by the end of the answer")
        elif isinstance(value, list) and value and all(_is_pair(p) for p in value):
            if key == "points" and self.kind is not GroundingKind.TRACE:
                for p in value:
                    self.point(p, item)
            else:
                self.trace(value, item)
        else:
            self.report.drop(f"{key} is not a list of [x, y] points: {_brief(value)}")

    # Items ---------------------------------------------------------------------------------

    def box(self, numbers: list, item: _Item) -> None:
        x1, y1, x2, y2 = (float(v) for v in numbers)
        a = self.frame.point(min(x1, x2), min(y1, y2))
        b = self.frame.point(max(x1, x2), max(y1, y2))
        if a is None or b is None:
            self.report.drop("a box outside the image or not finite")
        elif a.x >= b.x or a.y >= b.y:
            self.report.drop("a box with no area")
        else:
            self.report.boxes.append(Box2D(a.x, a.y, b.x, b.y, item.label, item.score))

    def point(self, numbers: list, item: _Item) -> None:
        p = self.frame.point(float(numbers[0]), float(numbers[1]))
        if p is None:
            self.report.drop("a point outside the image or not finite")
        else:
            self.report.points.append(Keypoint2D(p, item.label, item.score))

    def trace(self, pairs: list, item: _Item) -> None:
        mapped = [self.frame.point(float(x), float(y)) for x, y in pairs]
        if any(p is None for p in mapped):
            self.report.drop("a trace with a point outside the image or not finite")
        elif len(mapped) < 2:
            self.report.drop("a trace with fewer than 2 points")
        else:
            self.report.traces.append(Trace2D(tuple(mapped), item.label, item.score))

    def label(self, keys: dict) -> str:
        for key in LABEL_KEYS:
            if key in keys:
                value = keys[key]
                if isinstance(value, _Cut):
                    self.report.drop("a label cut off by the end of the answer")
                elif isinstance(value, str):
                    return " ".join(value.split())
                else:
                    self.report.drop(f"a label that is not text: {_brief(value)}")
                return ""
        return ""

    def score(self, keys: dict) -> float:
        for key in SCORE_KEYS:
            if key in keys:
                value = keys[key]
                if _is_number(value) and 0.0 <= value <= 1.0:
                    return float(value)
                self.report.drop(f"a score that is not a number in [0, 1]: {_brief(value)}")
        return 1.0


def _is_number(v) -> bool:
    return isinstance(v, float)


def _is_number_list(v, arity: int) -> bool:
    return (
        isinstance(v, list) and not isinstance(v, _Cut) and len(v) == arity and all(_is_number(x) for x in v)
    )


def _is_pair(v) -> bool:
    return _is_number_list(v, 2)


def _brief(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# The tolerant reader --------------------------------------------------------------------------


class _Cut:
    """Marks a value the answer ended inside of; its content is what was read before the end."""


class _CutList(list, _Cut):
    pass


class _CutDict(dict, _Cut):
    pass


class _CutStr(str, _Cut):
    pass


class _Tuple(list):
    """A parenthesised sequence: counts as a coordinate list, but prose asides are not reported."""


class _CutTuple(_Tuple, _Cut):
    pass


class _SyntaxError(Exception):
    pass


_OPENERS = re.compile(r"[\[{(]")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_LITERALS = {
    "true": True,
    "false": False,
    "null": None,
    "none": None,
    "nan": math.nan,
    "infinity": math.inf,
    "inf": math.inf,
}
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _scan(text: str) -> Iterator:
    """Yield every top-level bracketed value in text, left to right.

    Where a value turns out malformed, reading restarts just after its opening bracket, so the
    well-formed objects inside a broken list are still found. Nesting is capped at MAX_DEPTH, so
    each character is read a bounded number of times.
    """
    pos = 0
    while True:
        match = _OPENERS.search(text, pos)
        if match is None:
            return
        reader = _Reader(text, match.start())
        try:
            value = reader.value(0)
        except _SyntaxError:
            pos = match.start() + 1
            continue
        yield value
        pos = reader.pos


class _Reader:
    """Recursive-descent reader for JSON plus Python-isms; the end of text closes what is open."""

    def __init__(self, text: str, pos: int) -> None:
        self.text = text
        self.pos = pos

    def _skip(self) -> str:
        text, n = self.text, len(self.text)
        while self.pos < n and text[self.pos] in " \t\r\n":
            self.pos += 1
        return text[self.pos] if self.pos < n else ""

    def value(self, depth: int):
        if depth > MAX_DEPTH:
            raise _SyntaxError
        char = self._skip()
        if char == "":
            raise _EndOfTextError
        if char == "{":
            return self._object(depth)
        if char in "[(":
            return self._array(depth, "]" if char == "[" else ")")
        if char in "\"'":
            return self._string(char)
        match = _NUMBER.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            return float(match.group())  # huge values become inf and are rejected later
        match = _WORD.match(self.text, self.pos)
        if match and match.group().lower() in _LITERALS:
            self.pos = match.end()
            return _LITERALS[match.group().lower()]
        raise _SyntaxError

    def _array(self, depth: int, closer: str) -> list:
        self.pos += 1
        cut = _CutList if closer == "]" else _CutTuple
        items: list = []
        need_comma = False
        while True:
            char = self._skip()
            if char == "":
                return cut(items)
            if char == closer:
                self.pos += 1
                return items if closer == "]" else _Tuple(items)
            if char == ",":
                self.pos += 1
                need_comma = False
                continue
            if need_comma:
                raise _SyntaxError
            try:
                items.append(self.value(depth + 1))
            except _EndOfTextError:
                return cut(items)
            if isinstance(items[-1], _Cut):
                return cut(items)
            need_comma = True

    def _object(self, depth: int) -> dict:
        self.pos += 1
        obj: dict = {}
        need_comma = False
        while True:
            char = self._skip()
            if char == "":
                return _CutDict(obj)
            if char == "}":
                self.pos += 1
                return obj
            if char == ",":
                self.pos += 1
                need_comma = False
                continue
            if need_comma:
                raise _SyntaxError
            key = self._key()
            if key is None or self._skip() == "":
                return _CutDict(obj)
            if self.text[self.pos] != ":":
                raise _SyntaxError
            self.pos += 1
            try:
                obj[key] = self.value(depth + 1)
            except _EndOfTextError:
                return _CutDict(obj)
            if isinstance(obj[key], _Cut):
                return _CutDict(obj)
            need_comma = True

    def _key(self) -> str | None:
        char = self.text[self.pos]
        if char in "\"'":
            key = self._string(char)
            return None if isinstance(key, _Cut) else key
        match = _WORD.match(self.text, self.pos)
        if not match:
            raise _SyntaxError
        self.pos = match.end()
        return match.group()

    def _string(self, quote: str) -> str:
        text, n = self.text, len(self.text)
        self.pos += 1
        out: list[str] = []
        while self.pos < n:
            char = text[self.pos]
            if char == quote:
                self.pos += 1
                return "".join(out)
            if char == "\\" and self.pos + 1 < n:
                escaped = text[self.pos + 1]
                if escaped == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[self.pos + 2 : self.pos + 6]):
                    out.append(chr(int(text[self.pos + 2 : self.pos + 6], 16)))
                    self.pos += 6
                    continue
                out.append(_ESCAPES.get(escaped, escaped))
                self.pos += 2
                continue
            if char == "\n" and quote == "'":
                raise _SyntaxError  # an apostrophe in prose, not a string
            out.append(char)
            self.pos += 1
        return _CutStr("".join(out))


class _EndOfTextError(_SyntaxError):
    """The text ended where a value should start: the enclosing container was cut off."""
