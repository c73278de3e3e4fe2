"""The training engine: trainer loop, checkpoints, distributed setup."""

from avtrain.engine.trainer import (  # noqa: F401
                                    Trainer,
                                    TrainResult,
                                    autocast_dtype,
                                    build_optimizer,
                                    build_scheduler,
                                    select_device,
                                    to_device,
                                    train,
)
