"""Shipping a task: adapt a warm start to a folder of support images and export the task's discrete network as a
``torch.export`` program that predicts without metanas's training code."""
