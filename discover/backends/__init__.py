"""Sampling backends: one file per provider behind base.py's `Policy` protocol and factory.

hf.py samples the embedded model with transformers (CPU), vllm.py with vLLM generator actors
(GPU), openai.py from an OpenAI-compatible endpoint, null.py re-runs the parent's program (no
model: the ablation's floor).
"""
