"""The training engine: trainer loop, checkpoints, distributed setup."""

from avtrain.engine.trainer import (TrainResult, Trainer, autocast_dtype, build_optimizer,  # noqa: F401
                                    build_scheduler, select_device, to_device, train)
