"""OpenEvolve's names that evaluators import (discover/folder_shims)."""
