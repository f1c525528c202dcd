"""The data sets rendered here, offline: fonts (printed letters from matplotlib's TrueType faces, split by script)
and glyphs (procedural pen strokes, a validation source)."""

import unicodedata

import torch

from metanas.data import class_splits, get_tasksets, load_dataset, load_family
from metanas.data import fonts, glyphs


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


def test_glyphs_are_deterministic_classes_split_for_validation(tmp_path):
    a = glyphs.load_glyphs(28)
    n = sum(glyphs.SPLIT) * glyphs.IMAGES_PER_CLASS
    assert a.images.shape == (n, 1, 28, 28) and torch.bincount(a.labels).tolist() == [glyphs.IMAGES_PER_CLASS] * 600
    for c, i in ((0, 0), (431, 7), (599, 19)):  # drawn again from its seed: the same image, on any machine
        assert (glyphs.drawing(c, i) == a.images[c * glyphs.IMAGES_PER_CLASS + i, 0].numpy()).all()
    border = torch.cat([a.images[..., 0, :], a.images[..., -1, :]], -1).float().mean()
    assert border < 5 and a.images.float().mean() > 10  # strokes high on 0, like Omniglot after its inversion
    # a class is one glyph: on raw pixels, an image is nearer its own class's other drawings than other glyphs
    x = a.images.float().flatten(1).view(sum(glyphs.SPLIT), glyphs.IMAGES_PER_CLASS, -1)[:50]
    first, rest = x[:, 0], x[:, 1:]
    own = (rest - first[:, None]).norm(dim=-1).mean()
    other = (rest.roll(1, 0) - first[:, None]).norm(dim=-1).mean()
    assert own < 0.95 * other  # measured: 0.88 (the pen width, turn and offset move many pixels)
    family = load_family("glyphs-5way")
    assert (family.dataset, family.split, family.split_sizes) == ("glyphs", "standard", "400/100/100")
    train, val, test = class_splits(family, load_dataset(family))
    assert (train, val, test) == (list(range(400)), list(range(400, 500)), list(range(500, 600)))
    # a validation source of a mixture: the mixture validates on the glyphs' validation classes and its source's
    (tmp_path / "mix.yaml").write_text("dataset: mixture\nsources: [omniglot-5way]\nvalidation_sources: [glyphs-5way]\n")
    mix = get_tasksets(load_family(str(tmp_path / "mix.yaml")), queries=2)
    assert mix.validation.names == ["omniglot-5way", "glyphs-5way"]
    own = {a.images[i].numpy().tobytes() for c in val for i in a.indices_per_class[c].tolist()}
    gen = torch.Generator().manual_seed(0)
    while (drawn := mix.validation.sample_source(gen))[0] != 1:  # until a validation task of the glyphs (source 1)
        pass
    task = drawn[1]
    assert all((x * 255).round().to(torch.uint8).numpy().tobytes() in own for x in torch.cat([task[0], task[2]]))
