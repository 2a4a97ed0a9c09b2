"""RViz markers of a grounding result lifted to 3-D with depth (see vision.projection).

Each array starts with DELETEALL so RViz shows only the newest grounding. Colours match the
annotated image (vision.annotate.color_for), so an object has the same colour in both views.
"""

from __future__ import annotations

from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from internvla_policy.vision.annotate import color_for
from internvla_policy.vision.geometry import GroundingResult
from internvla_policy.vision.projection import DepthProjector

POINT_DIAMETER_M = 0.03
LINE_WIDTH_M = 0.01
TEXT_HEIGHT_M = 0.04


def grounding_markers(
    result: GroundingResult, projector: DepthProjector, header: Header
) -> tuple[MarkerArray, int]:
    """Markers for every item that has valid depth, and how many items had none (and were left out).

    header: stamp of the grounded frame and frame_id of the depth camera's optical frame.
    """
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    missing = 0

    def add(kind: int, ns: str, label: str, points, text_at=None) -> None:
        color = _rgba(label)
        marker = Marker(header=header, ns=ns, id=len(markers), type=kind, action=Marker.ADD, color=color)
        marker.pose.orientation.w = 1.0
        marker.lifetime = Duration()
        marker.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in points]
        width = POINT_DIAMETER_M if kind == Marker.SPHERE_LIST else LINE_WIDTH_M
        marker.scale.x = marker.scale.y = marker.scale.z = width
        markers.append(marker)
        if label and text_at is not None:
            text = Marker(
                header=header,
                ns=f"{ns}/labels",
                id=len(markers),
                type=Marker.TEXT_VIEW_FACING,
                action=Marker.ADD,
                color=color,
                text=label,
            )
            # Optical frame: y points down, so the label floats just above its item.
            text.pose.position = Point(
                x=float(text_at[0]), y=float(text_at[1] - TEXT_HEIGHT_M), z=float(text_at[2])
            )
            text.pose.orientation.w = 1.0
            text.scale.z = TEXT_HEIGHT_M
            markers.append(text)

    for box in result.boxes:
        outline = projector.box_outline(box)
        if outline is None:
            missing += 1
        else:
            add(Marker.LINE_STRIP, "boxes", box.label, outline, text_at=outline[0])
    for keypoint in result.points:
        xyz = projector.point(keypoint.point)
        if xyz is None:
            missing += 1
        else:
            add(Marker.SPHERE_LIST, "points", keypoint.label, [xyz], text_at=xyz)
    for trace in result.traces:
        lifted = [xyz for xyz in (projector.point(p) for p in trace.points) if xyz is not None]
        if len(lifted) < 2:
            missing += 1
        else:
            add(Marker.LINE_STRIP, "traces", trace.label, lifted, text_at=lifted[0])
    return MarkerArray(markers=markers), missing


def _rgba(label: str) -> ColorRGBA:
    r, g, b = color_for(label)
    return ColorRGBA(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=1.0)
