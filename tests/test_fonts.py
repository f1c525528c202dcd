"""The fonts data set: printed letters rendered offline from matplotlib's TrueType faces, split by script."""

import unicodedata

import torch

from metanas.data import class_splits, get_tasksets, load_dataset, load_family
from metanas.data import fonts


def test_letters_split_by_script_and_disjoint():
    train, val, test = fonts.split_classes()
    assert (len(train), len(val), len(test)) == (193, 68, 86)
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    scripts = [{unicodedata.name(chr(int(n[2:], 16))).split()[0] for n in names} for names in (train, val, test)]
    assert scripts == [{"LATIN"}, {"GREEK"}, {"CYRILLIC"}]
    assert fonts.describe("U+0416") == "Ж (CYRILLIC CAPITAL LETTER ZHE)"


def test_rendering_is_deterministic_with_strokes_high():
    fonts.load_fonts.cache_clear()
    a = fonts.load_fonts(28)
    fonts.load_fonts.cache_clear()
    b = fonts.load_fonts(28)
    assert torch.equal(a.images, b.images) and a.images.shape == (347 * fonts.IMAGES_PER_CLASS, 1, 28, 28)
    assert torch.bincount(a.labels).tolist() == [fonts.IMAGES_PER_CLASS] * 347
    border = torch.cat([a.images[..., 0, :], a.images[..., -1, :]], -1).float().mean()
    assert border < 5 and a.images.float().mean() > 10  # background 0, ink high (like Omniglot after inversion)
    # the renderings of one letter differ (16 faces, each with its own rotation, scale and offset)
    first = a.images[a.labels == 0].float()
    assert (first[1:] - first[0]).abs().mean() > 10


def test_fonts_family_uses_the_script_split():
    family = load_family("fonts-5way")
    assert (family.dataset, family.split, family.split_sizes) == ("fonts", "standard", "193/68/86")
    data = load_dataset(family)
    train, val, test = class_splits(family, data)
    names = lambda ids: {unicodedata.name(chr(int(data.class_names[c][2:], 16))).split()[0] for c in ids}
    assert (names(train), names(val), names(test)) == ({"LATIN"}, {"GREEK"}, {"CYRILLIC"})
    task = get_tasksets(family).test.sample(torch.Generator().manual_seed(0))
    assert task.support_x.shape == (5, 1, 28, 28) and task.query_x.shape == (75, 1, 28, 28)
