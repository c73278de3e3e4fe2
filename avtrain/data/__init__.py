"""Data module: avprep shards (webdataset) -> decoded, augmented, padded batches of the fields a task asks for.

catalogue.py (index, ledgers, splits), clips.py (one clip), augment.py, collate.py (padding, masks), loader.py (the
epoch's pipeline, workers, ranks), fields.py (what a task reads), mel_stats.py, bad_samples.py, verify.py (shard
checksums). The module is told its fields; it never imports a task.
"""

from avbridge.sample import MEL_PER_FRAME  # noqa: F401
from avtrain.data.catalogue import (  # noqa: F401
    check_fields,
    preprocessing_record,
    read_index,
    split_shards,
    split_size,
    vocabulary,
)
from avtrain.data.clips import ClipLoader, denormalise_mel, denormalise_video, normalise_mel  # noqa: F401
from avtrain.data.collate import collate  # noqa: F401
from avtrain.data.fields import Fields  # noqa: F401
from avtrain.data.loader import build_dataset, build_loader, loader_workers  # noqa: F401
