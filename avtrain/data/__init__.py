"""Data module: avprep shards (webdataset) -> decoded, augmented, padded batches (see :mod:`avtrain.data.pipeline`)."""

from avtrain.data.pipeline import (MEL_PER_FRAME, ClipLoader, build_dataset, build_loader, collate,  # noqa: F401
                                   denormalise_mel, denormalise_video, loader_workers, normalise_mel,
                                   preprocessing_record, read_index, split_shards, split_size, vocabulary)
