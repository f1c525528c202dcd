"""Performance estimation: adapt a warm start to many seeded tasks and score their query sets; statistics
(confidence intervals, paired differences), the choice of adaptation, a domain's alpha, set encoders, and
comparisons of several warm starts on the same tasks."""
