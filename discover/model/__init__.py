"""What the sampler and the learner share about the model itself: where its weights are
(store.py), teacher-forced log-probs (logprobs.py), a prompt's keys/values computed once per
group (shared_prefix.py), and oneDNN linears on CPU (cpu_linear.py)."""
