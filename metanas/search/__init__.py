"""Discrete architecture search on a meta-learned supernet: the strategies (ask/tell on decision vectors), the
scorer (a child with inherited weights, adapted to seeded tasks) and the driver that runs them on one budget."""
