"""Learners: one LoRA policy-gradient step per search step (ALGORITHM.md, steps 6-7).

base.py declares what the loop calls and makes a learner from the [learner] section; peft.py
learns in-process on the sampler's own model (CPU), trl.py in a Ray actor with its own copy
beside vLLM generators (GPU).
"""
