"""Face landmarks per frame with mediapipe's face mesh (468 points, models bundled in the 0.10.21 wheel).

Tracking mode (the mesh follows the face from frame to frame, re-detecting only when it loses it) is about 2x
cheaper than detecting every frame. The single-face mesh cannot be told which face to follow, so a face detector
first looks at three frames of the clip; if it sees more than one face, the clip goes through a multi-face mesh
that keeps the largest face and then follows it (the face nearest the last pick), never switching speakers. A face
far from the one followed (more than an eye distance away, a tenth more for each frame since it was last seen) is
not taken, even when it is the only one in the frame: that frame counts as one without the face
(``far_faces_skipped``), and registration fills it in from its neighbours.

Orientation: both the detector and the mesh take an upside-down face for an upright one (measured on GRID clips
turned 180 degrees: the "mouth" lands on the eyes and forehead), while a face on its side is found and meshed at
its angle. The detector scores the upright view higher (0.90-0.98 against 0.55-0.77 upside down, on 7 GRID clips
of 3 speakers), so the middle frame is scored as it is and turned by half; the clip is meshed in the better view
and the points are mapped back to the source frame, where registration turns the face upright. A mesh that
disagrees with the detector about where the eyes and mouth are is rejected as ``implausible face geometry``.

:class:`Detectors` holds the graphs of one worker: built once, the mesh reset between clips, so no tracking state
leaks from one clip into the next (the landmarks equal a new graph's exactly, tests/test_prep_speed.py), for
~1.2 ms instead of ~22 ms to build a mesh and a detector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avprep.stages.errors import ClipError

# Mesh indices (mediapipe canonical face model).
LEFT_EYE_OUTER, LEFT_EYE_INNER, RIGHT_EYE_INNER, RIGHT_EYE_OUTER = 33, 133, 362, 263
NOSE_BRIDGE, NOSE_BASE, MOUTH_LEFT, MOUTH_RIGHT = 197, 2, 61, 291
# The stable points of the canonical 68-point recipe (eye corners, nose, mouth corners), on the mesh.
STABLE = (LEFT_EYE_OUTER, LEFT_EYE_INNER, RIGHT_EYE_INNER, RIGHT_EYE_OUTER, NOSE_BRIDGE, NOSE_BASE, MOUTH_LEFT,
          MOUTH_RIGHT)
LEFT_EYE = (33, 160, 158, 133, 153, 144)
RIGHT_EYE = (362, 385, 387, 263, 373, 380)
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
LIPS = LIPS_OUTER + LIPS_INNER
# What a sample stores with landmarks="subset": registration points, eyes and lips (not the full 468).
SUBSET = tuple(dict.fromkeys(STABLE + LEFT_EYE + RIGHT_EYE + LIPS))
NUM_POINTS = 468


@dataclass
class Landmarks:
    points: np.ndarray  # float32 (T, 468, 2) source pixels; NaN rows where no face was found
    max_faces: int  # most faces the detector saw in the frames it checked
    turns: int = 0  # quarter turns (counter-clockwise) that showed the face upright to the mesh
    far_faces_skipped: int = 0  # frames whose only (or nearest) face was too far from the one followed

    @property
    def valid(self) -> np.ndarray:
        return ~np.isnan(self.points[:, 0, 0])


# A NormalizedLandmarkList serialises each landmark as 17 bytes: tag 0x0a, length 15, then x, y, z as tagged
# little-endian float32s. Reading those with numpy costs ~0.02 ms a frame against ~0.37 ms for 468 Python
# attribute reads (27 ms of a 75-frame clip). proto3 omits a float that is exactly 0 and could add visibility or
# presence, so any other layout falls back to the attribute loop.
_RECORD = np.dtype([("tag", "u1"), ("size", "u1"), ("x_tag", "u1"), ("x", "<f4"), ("y_tag", "u1"), ("y", "<f4"),
                    ("z_tag", "u1"), ("z", "<f4")])  # 17 bytes, unaligned: a view of the bytes, no copy
_SPAN = NUM_POINTS * _RECORD.itemsize
# The fixed bytes of every record (offset, value), checked as strided bytes slices: ~10x cheaper than numpy
# comparisons on the record fields.
_LAYOUT = tuple((offset, bytes([value]) * NUM_POINTS)
                for offset, value in ((0, 0x0A), (1, 15), (2, 0x0D), (7, 0x15), (12, 0x1D)))


def _parse_xy(data: bytes) -> np.ndarray | None:
    """Normalised (x, y) of the first 468 landmarks of a serialised list, or None if the layout is not the plain one."""
    if len(data) < _SPAN or len(data) % _RECORD.itemsize:
        return None
    if any(data[offset:_SPAN:_RECORD.itemsize] != expected for offset, expected in _LAYOUT):
        return None
    rec = np.frombuffer(data, _RECORD, count=NUM_POINTS)
    xy = np.empty((NUM_POINTS, 2), np.float32)
    xy[:, 0], xy[:, 1] = rec["x"], rec["y"]
    return xy


def _to_pixels(serialised: bytes, width: int, height: int) -> np.ndarray:
    xy = _parse_xy(serialised)
    if xy is None:
        from mediapipe.framework.formats import landmark_pb2

        face = landmark_pb2.NormalizedLandmarkList.FromString(serialised)
        xy = np.array([(p.x, p.y) for p in face.landmark[:NUM_POINTS]], np.float32)
    xy *= np.array([width, height], np.float32)
    return xy


# SolutionBase.process() spends 0.2-0.4 ms of Python a call around the graph (a new namedtuple class every call,
# proto objects built from bytes we only parse again): 15-29 ms of a 75-frame clip, 8-13% of the call (make
# bench-prep). The mesh is fed the way process() feeds it (one SRGB image packet on "image", timestamps 33 333 us
# apart) and its output read as the serialised protos. These are mediapipe 0.10.21 internals (the pinned
# version); a solution without them goes through process().
_FRAME_STEP_US = 33333


def _has_lean_path(solution, output: str) -> bool:
    try:
        from mediapipe.python._framework_bindings import _packet_creator, _packet_getter  # noqa: F401
    except ImportError:
        return False
    return (list(getattr(solution, "_input_stream_type_info", None) or {}) == ["image"]
            and output in (getattr(solution, "_output_stream_type_info", None) or {})
            and all(hasattr(solution, name) for name in ("_graph", "_graph_outputs", "_simulated_timestamp")))


def _serialised_outputs(solution, frame: np.ndarray, output: str, lean: bool) -> list[bytes]:
    """The serialised protos a solution's ``output`` stream gives for one RGB frame (empty: nothing found)."""
    if not lean:
        found = getattr(solution.process(frame), output)
        return [f.SerializeToString() for f in found or []]
    from mediapipe.python._framework_bindings import _packet_creator, _packet_getter, image_frame

    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"the face mesh takes RGB frames (H, W, 3), got {frame.shape}")
    solution._graph_outputs.clear()
    solution._simulated_timestamp += _FRAME_STEP_US
    packet = _packet_creator._create_image_from_pixel_data(
        image_frame.ImageFormat.SRGB, np.ascontiguousarray(frame), True).at(solution._simulated_timestamp)
    solution._graph.add_packet_to_input_stream(stream="image", packet=packet)
    solution._graph.wait_until_idle()
    out = solution._graph_outputs.get(output)
    if out is None or out.is_empty():
        return []
    return _packet_getter._get_serialized_proto_list(out)


def on_calling_thread(solution_class: type) -> type:
    """``solution_class`` (a mediapipe solution) with its graph run on the thread that feeds it.

    A solution's graph gets a pool of threads (one per core) by default, and every frame passes through ~50
    calculators scheduled across them; fed one frame at a time, the pool only hands work from thread to thread. The
    graph config's ``ApplicationThreadExecutor`` runs every calculator inside the caller's add-packet and
    wait-until-idle calls instead: the same outputs (tests/test_prep_speed.py) for 0.78-0.79x the CPU
    (scripts/bench_mesh_threads.py, three runs of 30 GRID clips), and one thread per worker. The override is a
    mediapipe 0.10.21 internal; a solution without it keeps its pool."""

    class OnCallingThread(solution_class):
        def _initialize_graph_interface(self, *args, **kwargs):
            config = super()._initialize_graph_interface(*args, **kwargs)
            defaults = [e for e in config.executor if not e.name]  # the canonical config holds an empty one
            executor = defaults[0] if defaults else config.executor.add()
            executor.type = "ApplicationThreadExecutor"
            return config

    OnCallingThread.__name__ = OnCallingThread.__qualname__ = f"{solution_class.__name__}OnCallingThread"
    return OnCallingThread


class Detectors:
    """The face detector and face meshes of one worker process, reused from clip to clip, run on its thread."""

    def __init__(self, min_confidence: float = 0.5):
        import mediapipe as mp

        self._mesh_class = on_calling_thread(mp.solutions.face_mesh.FaceMesh)
        self.min_confidence = min_confidence
        self.detector = on_calling_thread(mp.solutions.face_detection.FaceDetection)(
            model_selection=0, min_detection_confidence=0.5)
        self._meshes: dict[int, object] = {}
        self.lean: dict[int, bool] = {}  # per mesh: fed through the graph directly (see _serialised_outputs)

    def mesh(self, max_faces: int):
        """A tracking mesh for up to ``max_faces`` faces with no state from earlier clips."""
        mesh = self._meshes.get(max_faces)
        if mesh is None:
            mesh = self._meshes[max_faces] = self._mesh_class(
                static_image_mode=False,
                max_num_faces=max_faces,
                refine_landmarks=False,
                min_detection_confidence=self.min_confidence,
                min_tracking_confidence=self.min_confidence,
            )
            self.lean[max_faces] = _has_lean_path(mesh, "multi_face_landmarks")
        else:
            try:
                # reset() restarts the graph run: the next frame starts with a fresh detection, as a new graph does
                # (~1.2 ms after a clip, against ~22 ms to build a mesh and a detector).
                mesh.reset()
            except Exception:  # noqa: BLE001 - a graph a failed clip left broken: build a new one
                del self._meshes[max_faces]
                return self.mesh(max_faces)
        return mesh

    def close(self) -> None:
        self.detector.close()
        for mesh in self._meshes.values():
            mesh.close()
        self._meshes.clear()

    def __enter__(self) -> Detectors:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class _Face:
    score: float
    eyes: np.ndarray  # (2, 2) pixels: the subject's right eye, then the left
    mouth: np.ndarray  # (2,) pixels


def _faces(detector, frame: np.ndarray) -> list[_Face]:
    height, width = frame.shape[:2]
    faces = []
    for d in detector.process(frame).detections or []:
        kp = np.array([(p.x * width, p.y * height) for p in d.location_data.relative_keypoints[:4]], np.float32)
        faces.append(_Face(float(d.score[0]), kp[:2], kp[3]))
    return faces


def quarter_turn(frames: np.ndarray, turns: int) -> np.ndarray:
    """Frames (T, H, W, 3) turned ``turns`` x 90 degrees counter-clockwise (np.rot90), contiguous."""
    return np.ascontiguousarray(np.rot90(frames, turns, axes=(1, 2))) if turns % 4 else frames


def unturn_points(points: np.ndarray, turns: int, height: int, width: int) -> np.ndarray:
    """Pixel coordinates (..., 2) in frames turned by :func:`quarter_turn` back to the source frame (H x W). Pixel
    centres at whole numbers, as mediapipe's landmarks times the frame size behave (a half turn maps column i to
    W - 1 - i; tests/test_prep_geometry.py measures it on real meshes)."""
    x, y = points[..., 0], points[..., 1]
    turns %= 4
    if turns == 1:
        x, y = width - 1 - y, x
    elif turns == 2:
        x, y = width - 1 - x, height - 1 - y
    elif turns == 3:
        x, y = y, height - 1 - x
    return np.stack([x, y], axis=-1).astype(points.dtype)


def upright_turns(detector, frame: np.ndarray, margin: float = 0.05) -> tuple[int, list[_Face]]:
    """Quarter turns (0 or 2) that show the face in ``frame`` upright, and the faces detected in that view.

    Only a half turn is tried: a face on its side is found with its roll (the mesh then follows it at any angle,
    measured on GRID clips turned 90 degrees either way), but an upside-down one is taken for an upright one. The
    view whose best detection scores higher wins, the frame as it is unless the half turn beats it by ``margin``
    (upright scored 0.20 or more above upside down on the 7 GRID clips measured)."""
    seen = [_faces(detector, quarter_turn(frame[None], turns)[0]) for turns in (0, 2)]
    scores = [max((f.score for f in faces), default=0.0) for faces in seen]
    if scores[1] > scores[0] + margin:
        return 2, seen[1]
    return 0, seen[0]


def face_eye_distance(detector, frame: np.ndarray) -> float | None:
    """Pixels between the eye centres of the largest face the detector finds in one RGB frame (None: no face)."""
    faces = _faces(detector, frame)
    return max((float(np.linalg.norm(f.eyes[0] - f.eyes[1])) for f in faces), default=None)


def _eye_distance(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[LEFT_EYE_OUTER] - points[RIGHT_EYE_OUTER]))


# How far the face followed may be from where it was last seen, in its eye distances: one, and a tenth more per
# frame since (a head moves well under an eye distance in 40 ms; one that was lost a while may have moved).
FOLLOW_LIMIT, FOLLOW_LIMIT_PER_FRAME = 1.0, 0.1


def follow(candidates: list[np.ndarray], last: np.ndarray | None, gap: int = 1) -> np.ndarray | None:
    """The face to take in a frame from the meshes found there: with none followed yet the largest, else the one
    nearest the face followed (last seen ``gap`` frames ago) if it lies within ``FOLLOW_LIMIT`` (+
    ``FOLLOW_LIMIT_PER_FRAME`` per frame of the gap) of that face's eye distance; else None: a lone face far away is
    someone else, or a false detection, not the speaker who jumped."""
    if not candidates:
        return None
    if last is None:
        areas = [np.prod(c.max(0) - c.min(0)) for c in candidates]
        return candidates[int(np.argmax(areas))]
    last_centre = last.mean(0)
    nearest = min(candidates, key=lambda c: float(np.sum((c.mean(0) - last_centre) ** 2)))
    limit = _eye_distance(last) * (FOLLOW_LIMIT + FOLLOW_LIMIT_PER_FRAME * max(0, gap - 1))
    return nearest if float(np.linalg.norm(nearest.mean(0) - last_centre)) <= limit else None


def plausible(mesh_points: np.ndarray, face: _Face, tolerance: float = 0.35) -> bool:
    """Whether a mesh (468, 2) puts the eyes and mouth where the detector saw them, within ``tolerance`` of the
    detector's eye distance (measured on 66 frames of 22 GRID clips of s1, s2, s23: at most 0.10, median 0.07; the
    same meshes moved by half an eye distance are 0.51 or more away)."""
    scale = float(np.linalg.norm(face.eyes[0] - face.eyes[1]))
    if scale < 1e-3:
        return False
    mesh_eyes = np.stack([mesh_points[list(LEFT_EYE)].mean(0), mesh_points[list(RIGHT_EYE)].mean(0)])
    mesh_mouth = mesh_points[list(LIPS)].mean(0)
    errors = np.linalg.norm(np.vstack([mesh_eyes, mesh_mouth[None]]) - np.vstack([face.eyes, face.mouth[None]]), axis=1)
    return bool(errors.max() <= tolerance * scale)


def detect_landmarks(frames: np.ndarray, min_confidence: float = 0.5, detectors: Detectors | None = None) -> Landmarks:
    """Mesh landmarks of the (largest) face in each RGB frame of a clip, in source pixels. Raises ClipError.

    ``detectors``: a worker's reusable graphs; None builds (and closes) a set for this call.
    """
    if detectors is None:
        with Detectors(min_confidence) as own:
            return detect_landmarks(frames, min_confidence, own)
    height, width = frames.shape[1:3]
    middle = len(frames) // 2
    turns, middle_faces = upright_turns(detectors.detector, frames[middle])
    view = quarter_turn(frames, turns)
    view_w, view_h = view.shape[2], view.shape[1]
    seen = {t: middle_faces if t == middle else _faces(detectors.detector, view[t])
            for t in sorted({0, middle, len(frames) - 1})}
    faces_seen = max(len(f) for f in seen.values())
    max_faces = 1 if faces_seen <= 1 else min(faces_seen, 4)
    points = np.full((len(frames), NUM_POINTS, 2), np.nan, np.float32)
    checked = disagreed = 0
    mesh = detectors.mesh(max_faces)
    lean = detectors.lean[max_faces]
    if view.dtype != np.uint8:
        raise ValueError(f"the face mesh takes uint8 RGB frames, got {view.dtype}")
    chosen = None
    chosen_at = -1
    far = 0
    for t, frame in enumerate(view):
        found = _serialised_outputs(mesh, frame, "multi_face_landmarks", lean)
        if not found:
            continue
        candidates = [_to_pixels(f, view_w, view_h) for f in found]
        faces_seen = max(faces_seen, len(candidates))
        taken = follow(candidates, chosen, t - chosen_at)
        if taken is None:
            far += 1
            continue
        chosen, chosen_at = taken, t
        if seen.get(t):
            # The detection nearest the chosen mesh is the same face; the mesh must agree with it.
            face = min(seen[t], key=lambda f: float(np.sum((f.mouth - chosen[list(LIPS)].mean(0)) ** 2)))
            checked += 1
            disagreed += not plausible(chosen, face)
        points[t] = chosen
    if checked and disagreed * 2 >= checked:
        raise ClipError("implausible face geometry",
                        f"the mesh puts eyes or mouth away from the detector's in {disagreed} of {checked} "
                        "checked frames")
    if turns:
        points = unturn_points(points, turns, height, width)
    return Landmarks(points=points, max_faces=faces_seen, turns=turns, far_faces_skipped=far)
