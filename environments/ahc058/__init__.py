from environments.ahc058.env import AHC058Environment

__all__ = ["AHC058Environment"]
