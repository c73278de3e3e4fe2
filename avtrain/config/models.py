"""One registered recipe schema per model: the components it reads (and the choices it accepts for each) beside the
shared sections, and its checks across sections. A recipe holds exactly these sections; ``model`` selects the schema.

A model is a :class:`Recipe` subclass and a task, registered in avtrain.registry: the built-in ones below, another
package's through ``register_task`` and an entry point (docs/training.md, "Adding a task").
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from avtrain.config.components import (
    BiGRUBackendConf,
    ConvAudioFrontendConf,
    DCTCNConf,
    LipReadingConf,
    MemoryConf,
    MSTCNConf,
    MTLAMConf,
    MTLAMMemoryConf,
    ResNetFrontendConf,
    SentenceCTCConf,
    SpeechConf,
    TwoTowerConf,
)
from avtrain.config.recipe import Recipe
from avtrain.registry import register_model

VISUAL = {"resnet18": ResNetFrontendConf}
AUDIO = {"conv2d": ConvAudioFrontendConf}

# The default choice of each model component when a recipe names none (memory: bridge also for MTLAM, so that a
# recipe that forgets ``memory: mtlam`` is told so rather than silently reading bridge settings).
DEFAULT_CHOICES = {"visual_frontend": "resnet18", "audio_frontend": "conv2d", "memory": "bridge", "backend": "bigru",
                   "temporal": "dctcn"}


class LipReadingRecipe(Recipe):
    """Word-level lip reading with the associative bridge (memory_conf.num_slots 0 = the baseline)."""
    MODEL_COMPONENTS = {"visual_frontend": VISUAL, "audio_frontend": AUDIO, "memory": {"bridge": MemoryConf},
                        "backend": {"bigru": BiGRUBackendConf}, "model": {"lipreading": LipReadingConf}}
    COMPILABLE = True

    model: Literal["lipreading"] = "lipreading"
    visual_frontend: str = "resnet18"
    visual_frontend_conf: dict[str, Any] = Field(default_factory=dict)
    audio_frontend: str = "conv2d"
    audio_frontend_conf: dict[str, Any] = Field(default_factory=dict)
    memory: str = "bridge"
    memory_conf: dict[str, Any] = Field(default_factory=dict)
    backend: str = "bigru"
    backend_conf: dict[str, Any] = Field(default_factory=dict)


class MTLAMRecipe(Recipe):
    """MTLAM lip reading: front-ends, DC-TCN/MS-TCN temporal model, multi-level lip-audio memories."""
    MODEL_COMPONENTS = {"visual_frontend": VISUAL, "audio_frontend": AUDIO, "memory": {"mtlam": MTLAMMemoryConf},
                        "temporal": {"dctcn": DCTCNConf, "mstcn": MSTCNConf}, "model": {"mtlam": MTLAMConf}}
    COMPILABLE = True

    model: Literal["mtlam"] = "mtlam"
    visual_frontend: str = "resnet18"
    visual_frontend_conf: dict[str, Any] = Field(default_factory=dict)
    audio_frontend: str = "conv2d"
    audio_frontend_conf: dict[str, Any] = Field(default_factory=dict)
    memory: str = "mtlam"
    memory_conf: dict[str, Any] = Field(default_factory=dict)
    temporal: str = "dctcn"
    temporal_conf: dict[str, Any] = Field(default_factory=dict)


class SpeechRecipe(Recipe):
    """The bridging speech model: its own visual and audio modules (model_conf), the associative bridge, Tacotron 2."""
    MODEL_COMPONENTS = {"memory": {"bridge": MemoryConf}, "model": {"speech": SpeechConf}}

    model: Literal["speech"] = "speech"
    memory: str = "bridge"
    memory_conf: dict[str, Any] = Field(default_factory=dict)

    def check(self) -> None:
        want = 3 if self.data.color == "rgb" else 1
        if self.model_conf["in_channels"] != want:
            raise ValueError(f"model_conf.in_channels is {self.model_conf['in_channels']} but data.color "
                             f"{self.data.color!r} gives {want} channel(s)")
        memory = self.memory_conf
        if memory["num_slots"] > 0 and memory["variant"] == "official" and not self.model_conf["audio_path"]:
            # the official variant detaches the audio feature inside the memory: only the audio path trains the
            # audio module, so DDP would stop on its second step and one process would never train it
            raise ValueError("memory_conf.variant official with model_conf.audio_path: false leaves the audio module "
                             "without gradients: keep the audio path, use variant paper, or num_slots 0")


class SentenceCTCRecipe(Recipe):
    """Sentence lip reading with CTC over characters (LipNet's objective): the word model's front, a BiGRU per frame."""
    MODEL_COMPONENTS = {"visual_frontend": VISUAL, "backend": {"bigru": BiGRUBackendConf},
                        "model": {"sentence_ctc": SentenceCTCConf}}
    COMPILABLE = True

    model: Literal["sentence_ctc"] = "sentence_ctc"
    visual_frontend: str = "resnet18"
    visual_frontend_conf: dict[str, Any] = Field(default_factory=dict)
    backend: str = "bigru"
    backend_conf: dict[str, Any] = Field(default_factory=dict)


class TwoTowerRecipe(Recipe):
    """The two-tower model (Ephrat et al. 2017): everything it has is in model_conf."""
    MODEL_COMPONENTS = {"model": {"two_tower": TwoTowerConf}}
    COMPILABLE = True

    model: Literal["two_tower"] = "two_tower"

    def check(self) -> None:
        if self.augment != "none" or self.augment_conf.get("crop") or self.data.video_size or self.data.color != "gray":
            raise ValueError("model two_tower reads optical flow aligned with its gray frames: use augment: none "
                             "without crop, no data.video_size and data.color gray (a crop, flip or resize of the "
                             "frames would have to be applied to the flow too)")


# the built-in models (avtrain.registry: other packages add theirs with register_task and an entry point)
register_model("lipreading", LipReadingRecipe, "avtrain.tasks.lipreading.task:LipReadingTask")
register_model("mtlam", MTLAMRecipe, "avtrain.tasks.lipreading.task:MTLAMTask")
register_model("speech", SpeechRecipe, "avtrain.tasks.speech.task:BridgingSpeechTask")
register_model("two_tower", TwoTowerRecipe, "avtrain.tasks.speech.task:TwoTowerTask")
register_model("sentence_ctc", SentenceCTCRecipe, "avtrain.tasks.lipreading.sentence:SentenceCTCTask")
DEFAULT_MODEL = "lipreading"
# every model component any schema knows, for telling "not this model's" from "unknown"
MODEL_SECTIONS = ("visual_frontend", "audio_frontend", "memory", "backend", "temporal")
