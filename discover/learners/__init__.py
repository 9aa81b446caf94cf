"""Learners: one LoRA policy-gradient step per search step (docs/METHOD.md, phase 5, learn).

config.py holds the learner's settings (LearnerConfig: the config file's [learner] section, as
every learner takes it); base.py declares what the loop calls, factory.py makes a learner from
that section; peft.py learns in-process on the sampler's own model (CPU), trl.py in a Ray actor
with its own copy beside vLLM generators (GPU).
"""
