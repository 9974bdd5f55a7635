"""Fixtures of the MEO tests (implemented in meo_helpers)."""

from meo_helpers import echo_image, underlay

__all__ = ["echo_image", "underlay"]
