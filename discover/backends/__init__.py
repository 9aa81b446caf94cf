"""Sampling backends: one file per provider behind base.py's `Policy` protocol; factory.py
makes the one the [policy] section names.

hf.py samples the embedded model with transformers (CPU), vllm.py with vLLM generator actors
(GPU), openai.py from an OpenAI-compatible endpoint, null.py re-runs the parent's program (no
model: the ablation's floor).
"""
