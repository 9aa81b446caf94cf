from environments.ahc039.env import AHC039Environment

__all__ = ["AHC039Environment"]
