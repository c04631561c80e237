"""Compatibility shim: Qwen-VL processors without a video processor when torchvision is absent.

transformers builds video processors only with torchvision, and torchvision cannot be installed
beside the CPU torch build we use (DESIGN §5). Qwen2.5-VL processors still demand a video processor,
so on such machines we let that one sub-processor be ``None``. Images and text are unaffected; asking
for video input then fails inside transformers. Where torchvision exists this does nothing.
"""

from __future__ import annotations

import importlib

_installed = False


def install_video_processor_shim() -> bool:
    """Install the shim once; return True when it is active (torchvision missing)."""
    global _installed
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        return False
    if _installed:
        return True
    from transformers import processing_utils

    video_processing_auto = importlib.import_module("transformers.models.auto.video_processing_auto")

    original_check = processing_utils.ProcessorMixin.check_argument_for_proper_class

    def check_argument_for_proper_class(self, argument_name, argument):
        modality = processing_utils._get_modality_for_attribute(argument_name)
        if argument is None and modality == "video_processor":
            return None
        return original_check(self, argument_name, argument)

    def no_video_processor(cls, *args, **kwargs):
        return None

    processing_utils.ProcessorMixin.check_argument_for_proper_class = check_argument_for_proper_class
    video_processing_auto.AutoVideoProcessor.from_pretrained = classmethod(no_video_processor)
    _installed = True
    return True
