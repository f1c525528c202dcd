"""Execution policies: how a supernet runs its choice points (a softmax mixture of every op, or one Gumbel-sampled
path). A policy never touches a search space, and a space never names a policy (NNI's execution modules)."""
