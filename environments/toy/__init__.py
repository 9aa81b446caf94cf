from environments.toy.env import ToyEnvironment

__all__ = ["ToyEnvironment"]
