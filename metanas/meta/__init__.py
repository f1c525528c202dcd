"""Meta-learning: the inner loop (one task adapts ``(w, alpha)``), the outer loop (MAML, FOMAML, Reptile over a
meta-batch), how a warm start adapts (:class:`metanas.meta.adaptation.Adaptation`), the warm start itself and
its checkpoint file."""
