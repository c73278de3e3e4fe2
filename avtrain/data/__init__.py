"""Data module: avprep shards (webdataset) -> decoded, augmented, padded batches (see :mod:`avtrain.data.pipeline`)."""

from avtrain.data.pipeline import (  # noqa: F401
                                   MEL_PER_FRAME,
                                   ClipLoader,
                                   build_dataset,
                                   build_loader,
                                   collate,
                                   denormalise_mel,
                                   denormalise_video,
                                   loader_workers,
                                   normalise_mel,
                                   preprocessing_record,
                                   read_index,
                                   split_shards,
                                   split_size,
                                   vocabulary,
)
