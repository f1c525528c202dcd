"""The meta-training task stream: batches drawn ahead on a thread (as on a GPU) are the batches drawn in place, and
the state a checkpoint saves is the generator's before the batch drawn ahead, so a resumed run draws the same ones."""

import torch

from metanas.data import get_tasksets, load_family
from metanas.training.loop import TaskStream

TASKS = get_tasksets(load_family("digits-5way")).test  # offline: shipped with scikit-learn


def _stream(prefetch: bool, seed: int = 3) -> TaskStream:
    return TaskStream(TASKS, 4, torch.Generator().manual_seed(seed), torch.device("cpu"), slice(1, 3),
                      prefetch=prefetch)


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_drawing_ahead_gives_the_same_batches_and_the_rows_of_this_rank():
    plain, ahead = _stream(False), _stream(True)
    try:
        for _ in range(4):
            a, b = plain.next(), ahead.next()
            assert a[0].shape[0] == 2  # rows 1..2 of a meta-batch of 4
            assert _same(a, b)
    finally:
        ahead.close()


def test_a_stream_resumed_from_its_saved_state_goes_on_with_the_next_batch():
    ahead = _stream(True)
    try:
        for _ in range(3):
            ahead.next()
        ahead._ahead.result()  # batch 4 is drawn: the generator itself has moved past it
        state = ahead.get_state()  # what a checkpoint after step 3 saves, while batch 4 is drawn ahead
        expected = ahead.next()
    finally:
        ahead.close()
    resumed = _stream(True, seed=99)
    resumed.set_state(state)
    try:
        assert _same(resumed.next(), expected)
    finally:
        resumed.close()
