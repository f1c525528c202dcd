"""Meta-Dataset episodes: the statistics of many episodes against the reference's rules (ways range and
uniformity, the query rule, the support size with its beta draw and caps, imbalance, at least one shot), the
Omniglot alphabet hierarchy, the fixed-way-and-shot setup, seeding, mixtures and bucketing.

Synthetic ClassDatasets have known class sizes; image i carries its index in two pixels, so a task's pixels
name its source images. Real Omniglot is read from $METANAS_DATA.
"""

import dataclasses
import math
from collections import Counter

import numpy as np
import pytest
import torch

from metanas.core.errors import MetanasError
from metanas.data import ClassDataset, MixtureTaskDataset, TaskDataset, get_tasksets, load_dataset, load_family
from metanas.data.episodes import (
    EpisodeDataset, MetaDatasetEpisodes, bucket_tasks, family_hierarchy, omniglot_alphabets, sample_num_support_per_class,
    sample_support_set_size, task_shape,
)
from metanas.data.families import EpisodeRules
from metanas.data.sampler import ConsecutiveLabels, KShots, LoadData, NWays, RemapLabels, Task
from metanas.data.splits import class_splits

VARIABLE = EpisodeRules(hierarchy="none")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def sized(sizes):
    """A ClassDataset whose class c has sizes[c] images; image i holds i in pixels (0, 0) and (0, 1)."""
    n = sum(sizes)
    index = torch.arange(n)
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = (index // 256).to(torch.uint8), (index % 256).to(torch.uint8)
    labels = torch.arange(len(sizes)).repeat_interleave(torch.tensor(sizes))
    return ClassDataset(images, labels, [f"c{i}" for i in range(len(sizes))])


def image_ids(x):
    """The synthetic image index behind each image of x [M, 1, 4, 4] (values in [0, 1])."""
    v = (x[:, 0, 0, :2] * 255).round().long()
    return (v[:, 0] * 256 + v[:, 1]).tolist()


def same(s, t):
    return all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(s, t))


def descriptions(ds, rules=VARIABLE, n=2000, seed=0, **kw):
    sampler, g = MetaDatasetEpisodes(ds, rules, **kw), gen(seed)
    return [sampler(range(sampler.num_classes), g) for _ in range(n)]


# ---------- ways ----------

@pytest.mark.parametrize("classes, high", [(30, 30), (80, 50)])
def test_ways_are_uniform_from_5_to_the_fewer_of_50_and_the_classes(classes, high):
    eps = descriptions(sized([20] * classes), n=4000)
    ways = Counter(len(d) for d in eps)
    assert min(ways) == 5 and max(ways) == high
    assert all(len({c for c, _, _ in d}) == len(d) for d in eps)  # distinct classes
    expected = 4000 / (high - 4)
    assert all(0.6 * expected < ways[w] < 1.4 * expected for w in range(5, high + 1)), ways


def test_classes_are_drawn_uniformly():
    eps = descriptions(sized([20] * 60), n=2000)
    counts = Counter(c for d in eps for c, _, _ in d)
    mean = sum(counts.values()) / 60
    assert len(counts) == 60 and all(0.75 * mean < k < 1.25 * mean for k in counts.values())


# ---------- queries ----------

def test_queries_are_the_fewer_of_10_and_half_the_smallest_chosen_class():
    sizes = [3, 5, 9, 13] + [22 + c % 20 for c in range(36)]  # a few small classes among 22 to 41 images
    eps = descriptions(sized(sizes), n=1500)
    seen = set()
    for d in eps:
        q = {q for _, _, q in d}
        assert len(q) == 1  # balanced query sets
        assert q.pop() == min(10, min(sizes[c] for c, _, _ in d) // 2)
        seen.add(d[0][2])
    assert {1, 2, 4, 6, 10} <= seen  # the smallest class binds in some episodes, the cap of 10 in others


def test_fixed_shots_leave_the_smallest_class_less_the_shots_for_queries():
    sizes = [8 + c % 10 for c in range(30)]
    eps = descriptions(sized(sizes), EpisodeRules(shots=3, hierarchy="none"), n=300)
    for d in eps:
        assert all(s == 3 for _, s, _ in d)
        assert d[0][2] == min(10, min(sizes[c] for c, _, _ in d) - 3)


# ---------- support set size ----------

def test_the_support_size_is_one_beta_per_episode_times_each_class_contribution():
    """N classes with 10 images left each: S = N * (floor(10 beta) + 1) with one beta per episode, a multiple
    of the ways, the multiple uniform on 1..10."""
    g, multiples = gen(), Counter()
    for n in [5, 17, 50] * 1000:
        size = sample_support_set_size(torch.full((n,), 10), 100, 500, g)
        assert size % n == 0
        multiples[size // n] += 1
    assert sorted(multiples) == list(range(1, 11))
    assert all(200 < k < 400 for k in multiples.values()), multiples


def test_the_support_size_is_capped_at_500_and_each_class_contributes_at_most_100():
    """Episodes split the support size S over their classes (flooring loses less than one shot a class), so
    the shots of an episode sum to at most S and more than S - ways."""
    big = descriptions(sized([300] * 80), n=1500)
    totals = [sum(s for _, s, _ in d) for d in big]
    assert max(totals) <= 500 and all(t >= len(d) for t, d in zip(totals, big))
    assert 0.3 < sum(t > 450 for t in totals) / len(totals) < 0.95  # the cap of 500 binds often
    # a cap of 10,000: S = 5 * (floor(100 beta) + 1) as each class contributes at most 100 of its 290 images
    fixed = descriptions(sized([300] * 10), EpisodeRules(ways=5, max_support=10_000, hierarchy="none"), n=1500)
    totals = [sum(s for _, s, _ in d) for d in fixed]
    assert 5 <= min(totals) and max(totals) <= 500 and max(totals) > 450


def test_at_least_one_shot_per_class_and_never_more_than_a_class_has_left():
    sizes = [2 + (11 * c) % 60 for c in range(50)]
    for d in descriptions(sized(sizes), n=1500):
        assert all(1 <= s <= sizes[c] - q for c, s, q in d)


# ---------- imbalance ----------

def test_shots_follow_class_sizes():
    """Classes of 30 and 120 images (20 and 110 left after 10 queries): a big class gets about four times the
    shots of a small one, in proportion to its images."""
    sizes = [30, 120] * 30
    small, big = [], []
    for d in descriptions(sized(sizes), n=3000):
        for c, s, _ in d:
            (big if sizes[c] == 120 else small).append(s)
    ratio = (sum(big) / len(big)) / (sum(small) / len(small))
    assert 3 < ratio < 5, ratio


def test_class_weights_spread_shots_by_at_most_four_to_one():
    """Equal classes: shots differ only by the log-weights, U(log 0.5, log 2), so by a factor up to 4 (floored),
    and they do differ."""
    spread = 0
    for d in descriptions(sized([120] * 60), n=1500):
        shots = [s for _, s, _ in d]
        assert max(shots) - 1 < 4 * min(shots)
        spread += max(shots) > 2 * min(shots)
    assert spread > 300


def test_the_reference_formulas_on_the_same_draws():
    """sample_support_set_size and sample_num_support_per_class against the reference's numpy lines
    (google-research/meta-dataset, data/sampling.py), fed the same uniform draws."""
    for seed in range(50):
        g = gen(seed)
        images = torch.randint(2, 400, (int(torch.randint(5, 51, (), generator=g)),), generator=g)
        q = min(10, int(images.min()) // 2)
        remaining = images - q
        beta = float(torch.rand((), generator=gen(seed + 1000), dtype=torch.float64))
        size = sample_support_set_size(remaining, 100, 500, gen(seed + 1000))
        rem = remaining.numpy()
        assert size == np.minimum(np.floor(beta * np.minimum(100, rem) + 1).sum(), 500)
        u = torch.rand(len(images), generator=gen(seed + 2000), dtype=torch.float64).numpy()
        shots = sample_num_support_per_class(images, remaining, size, math.log(0.5), math.log(2), gen(seed + 2000))
        weights = images.numpy() * np.exp(math.log(0.5) + (math.log(2) - math.log(0.5)) * u)
        want = np.minimum(np.floor(weights / weights.sum() * (size - len(images))).astype("int32") + 1, rem)
        assert shots.tolist() == want.tolist() and int(shots.sum()) <= size


# ---------- episodes as tasks ----------

def test_an_episode_is_a_class_major_task_of_its_description():
    ds = sized([5 + (3 * c) % 40 for c in range(30)])
    episodes = MetaDatasetEpisodes(ds, VARIABLE)
    data = EpisodeDataset(ds, episodes)
    for seed in range(30):
        description = episodes(range(30), gen(seed))
        task = data.sample(gen(seed))
        shots = torch.tensor([s for _, s, _ in description])
        assert torch.equal(task.support_y, torch.arange(len(description)).repeat_interleave(shots))
        assert torch.equal(task.query_y, torch.arange(len(description)).repeat_interleave(description[0][2]))
        support, query = image_ids(task.support_x), image_ids(task.query_x)
        assert not set(support) & set(query) and len(set(support + query)) == len(support + query)
        for y, i in zip(task.support_y.tolist() + task.query_y.tolist(), support + query):
            assert int(ds.labels[i]) == description[y][0]


def test_the_fixed_way_and_shot_setup_is_the_fixed_task_of_the_same_seed():
    ds = sized([20] * 40)
    fixed = TaskDataset(ds, [NWays(ds, 5), KShots(ds, 6), LoadData(ds), RemapLabels(ds), ConsecutiveLabels(ds)], 1, 5)
    md = EpisodeDataset(ds, MetaDatasetEpisodes(ds, EpisodeRules(ways=5, shots=1, queries=5)))
    assert (md.ways, md.shots, md.queries) == (5, 1, 5)
    for seed in range(10):
        a, b = fixed.sample(gen(seed)), md.sample(gen(seed))
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    batch = md.sample_batch(4, gen())
    assert batch.support_x.shape == (4, 5, 1, 4, 4) and batch.query_x.shape == (4, 25, 1, 4, 4)


def test_a_range_of_shots_is_drawn_per_episode_the_same_for_every_class():
    eps = descriptions(sized([20] * 40), EpisodeRules(ways=5, shots=(1, 5), queries=5), n=500)
    seen = Counter()
    for d in eps:
        assert len(d) == 5 and len({s for _, s, _ in d}) == 1 and all(q == 5 for _, _, q in d)
        seen[d[0][1]] += 1
    assert sorted(seen) == [1, 2, 3, 4, 5]


def test_the_same_seed_gives_the_same_episode_whatever_the_global_rng():
    ds = sized([5 + c for c in range(40)])
    data = EpisodeDataset(ds, MetaDatasetEpisodes(ds, VARIABLE))
    torch.manual_seed(1)
    np.random.seed(1)
    a = [data.sample(gen(7)) for _ in range(3)]
    torch.manual_seed(2)
    np.random.seed(2)
    b = [data.sample(gen(7)) for _ in range(3)]
    assert all(same(s, t) for s, t in zip(a, b))
    g, h = gen(7), gen(7)
    for _ in range(5):  # a generator's sequence of episodes, as a resumed run redraws it
        assert same(data.sample(g), data.sample(h))
    assert not same(data.sample(gen(8)), a[0])


# ---------- hierarchy ----------

@pytest.fixture(scope="module")
def omniglot_md():
    return get_tasksets(load_family("omniglot-md"))


def test_omniglot_episodes_draw_an_alphabet_first(omniglot_md):
    train = omniglot_md.train
    groups = omniglot_alphabets(train.dataset)
    per_alphabet = Counter(groups)
    g, alphabets = gen(), Counter()
    for _ in range(2500):
        d = train.episodes(range(train.num_classes), g)
        chosen = {groups[c] for c, _, _ in d}
        assert len(chosen) == 1, chosen  # one alphabet per episode
        alphabet = chosen.pop()
        assert 5 <= len(d) <= min(50, per_alphabet[alphabet])
        alphabets[alphabet] += 1
    # the alphabet is uniform, not in proportion to its characters (they range from 14 to 55 here)
    assert len(alphabets) == len(per_alphabet) and min(per_alphabet.values()) < 20 < 40 < max(per_alphabet.values())
    mean = 2500 / len(per_alphabet)
    assert all(0.6 * mean < k < 1.4 * mean for k in alphabets.values()), alphabets
    task = train.sample(gen(3))  # and a real episode: 20 images a character, so 10 queries each
    ways = int(task.query_y.max()) + 1
    assert len(task.query_y) == 10 * ways and ways <= len(task.support_y) <= 10 * ways


def test_a_hierarchy_with_a_small_group_or_fixed_ways_is_refused():
    ds = sized([20] * 12)
    with pytest.raises(MetanasError, match="fewer than min_ways"):
        MetaDatasetEpisodes(ds, VARIABLE, hierarchy=[0] * 8 + [1] * 4)
    with pytest.raises(MetanasError, match="fixed ways"):
        MetaDatasetEpisodes(ds, EpisodeRules(ways=5, hierarchy="none"), hierarchy=[0] * 12)
    eps = descriptions(ds, hierarchy=[0] * 6 + [1] * 6, n=200)
    assert all(len({c // 6 for c, _, _ in d}) == 1 and 5 <= len(d) <= 6 for d in eps)


def test_dag_nodes_give_their_classes_capped_at_max_ways():
    ds = sized([20] * 100)
    nodes = [list(range(3)), list(range(10, 17)), list(range(100))]  # the first spans too few classes
    eps = descriptions(ds, nodes=nodes, n=300)
    kinds = Counter(len(d) for d in eps)
    assert set(kinds) == {7, 50} and all(set(c for c, _, _ in d) == set(range(10, 17)) for d in eps if len(d) == 7)


# ---------- families, mixtures, batches ----------

def test_family_yaml_episodes_key():
    md = load_family("omniglot-md")
    assert isinstance(md.episodes, EpisodeRules) and (md.ways, md.shots, md.queries) == (50, 1, 10)
    assert load_family("omniglot-5way").episodes == "fixed"
    fixed = get_tasksets(md, ways=5, shots=1, queries=15)  # overrides fix the ways, shots and queries
    task = fixed.train.sample(gen())
    assert fixed.train.episodes._groups is None  # auto: no alphabet with fixed ways
    ds = fixed.train.dataset
    assert family_hierarchy(EpisodeRules(), "md-omniglot", ds) == omniglot_alphabets(ds)  # Meta-Dataset's reader
    assert family_hierarchy(EpisodeRules(), "fonts", ds) is None
    assert task.support_x.shape[0] == 5 and task.query_x.shape[0] == 75


def test_family_yaml_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    for text, match in [("episodes: meta-dataset\nways: 5\n", "ways: goes with episodes: fixed"),
                        ("episodes: {sampler: meta-dataset, max_way: 5}\n", "unknown episodes key 'max_way'"),
                        ("episodes: random\n", "episodes must be one of fixed, meta-dataset"),
                        ("episodes: {ways: 5, hierarchy: alphabet}\n", "cannot go with fixed ways"),
                        ("episodes: {shots: [3, 1]}\n", "shots must be null")]:
        path.write_text(text)
        with pytest.raises(MetanasError, match=match):
            load_family(str(path))
    path.write_text("dataset: fonts\nepisodes: {sampler: meta-dataset, hierarchy: alphabet}\n")
    with pytest.raises(MetanasError, match="no alphabets"):
        get_tasksets(load_family(str(path)))


def test_fixed_families_draw_the_tasks_they_drew_before():
    family = load_family("omniglot-5way")
    data = load_dataset(family)
    ds = data.subset(class_splits(family, data)[0])
    before = TaskDataset(ds, [NWays(ds, 5), KShots(ds, 16), LoadData(ds), RemapLabels(ds), ConsecutiveLabels(ds)], 1, 15)
    train = get_tasksets(family).train
    assert type(train) is TaskDataset
    a, b = before.sample_batch(3, gen(5)), train.sample_batch(3, gen(5))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    md = get_tasksets(dataclasses.replace(family, episodes=EpisodeRules(ways=5, shots=1, queries=15))).train
    assert all(torch.equal(x, y) for x, y in zip(md.sample(gen(5)), train.sample(gen(5))))


def test_a_mixture_draws_its_source_per_episode():
    mix = get_tasksets(load_family("omniglot-glyphs-fonts-md")).train
    assert isinstance(mix, MixtureTaskDataset) and all(isinstance(s, EpisodeDataset) for s in mix.sources)
    g, sources, shapes = gen(), [], set()
    for _ in range(300):
        i, task = mix.sample_source(g)
        sources.append(i)
        shapes.add(task_shape(task))
    counts = Counter(sources)
    assert set(counts) == {0, 1, 2} and all(60 < k < 140 for k in counts.values()), counts
    assert sum(a != b for a, b in zip(sources, sources[1:])) > 150  # switches source from episode to episode
    assert len(shapes) > 100
    h = gen()
    assert [mix.sample_source(h)[0] for _ in range(300)] == sources
    with pytest.raises(MetanasError, match="bucket_tasks"):
        mix.sample_batch(8, gen())


def test_buckets_stack_tasks_of_one_shape_and_keep_every_task():
    ds = sized([20] * 40)
    data = EpisodeDataset(ds, MetaDatasetEpisodes(ds, EpisodeRules(shots=(1, 2), queries=2, max_ways=6,
                                                                   hierarchy="none")))
    g = gen()
    tasks = [data.sample(g) for _ in range(40)]
    # the same support and query sizes with other ways: two tasks of 12 support and 12 query images
    a = Task(torch.zeros(12, 1, 4, 4), torch.arange(6).repeat_interleave(2), torch.zeros(12, 1, 4, 4),
             torch.arange(6).repeat_interleave(2))
    b = Task(torch.zeros(12, 1, 4, 4), torch.arange(4).repeat_interleave(3), torch.zeros(12, 1, 4, 4),
             torch.arange(4).repeat_interleave(3))
    tasks += [a, b]
    buckets = bucket_tasks(tasks)
    assert sorted(i for ix, _ in buckets for i in ix) == list(range(len(tasks)))
    for ix, batch in buckets:
        assert batch.support_x.shape[0] == len(ix) and len({task_shape(tasks[i]) for i in ix}) == 1
        for j, i in enumerate(ix):
            assert all(torch.equal(field[j], tasks[i][f]) for f, field in enumerate(batch))
    assert 1 < len(buckets) < len(tasks) - 2
    assert not any(len(tasks) - 2 in ix and len(tasks) - 1 in ix for ix, _ in buckets)  # other ways, other bucket
    fixed = EpisodeDataset(ds, MetaDatasetEpisodes(ds, EpisodeRules(ways=5, shots=1, queries=5)))
    assert len(bucket_tasks([fixed.sample(g) for _ in range(6)])) == 1
