"""avprep: audio-visual speech corpora to verified, resumable WebDataset shards.

Importing the package is light; the detector (mediapipe) and OpenCV load only in the stages that use them.
"""

from avbridge import __version__

__all__ = ["__version__"]
