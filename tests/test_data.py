"""Real datasets with fixed, seeded, hashed splits; teachers with cached logits."""

import pytest
import torch

from danas_bench.core.pairs import TEACHERS, check_pair
from danas_bench.training import data, teachers


@pytest.mark.parametrize("name,shape", [("mnist1d", (1, 40)), ("digits", (1, 8, 8)), ("mnist-5k", (1, 28, 28))])
def test_splits_are_fixed_disjoint_and_standardised(name, shape):
    ds = data.load(name)
    assert ds.shape == shape and ds.num_classes == 10
    assert set(ds.split_hashes) == {"train", "valid", "test"}
    assert len(set(ds.split_hashes.values())) == 3
    assert abs(float(ds.x["train"].mean())) < 1e-3 and abs(float(ds.x["train"].std()) - 1) < 1e-2
    for split in ("train", "valid", "test"):
        assert len(ds.x[split]) == len(ds.y[split]) > 0
        assert set(ds.y[split].unique().tolist()) <= set(range(10))


def test_split_hashes_are_reproducible():
    h = data.load("digits").split_hashes
    data.load.cache_clear()
    assert data.load("digits").split_hashes == h


def test_fashion_mnist_missing_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("DANAS_FASHION_MNIST_DIR", str(tmp_path))
    monkeypatch.setattr(data, "FASHION_DIRS", (tmp_path / "nope",))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.fashion_dir()


def test_fashion_mnist_missing_is_not_available(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "FASHION_DIRS", (tmp_path / "nope",))
    monkeypatch.delenv("DANAS_FASHION_MNIST_DIR", raising=False)
    assert not data.available("fashion-mnist")
    assert data.available("digits")
    with pytest.raises(ValueError, match="unknown dataset"):
        data.available("mnist")


@pytest.mark.skipif(
    not data.available("fashion-mnist"), reason="dataset-fashion-mnist not installed (.ci/run installs it)"
)
def test_fashion_mnist_reads_the_debian_package():
    ds = data.load("fashion-mnist")
    assert ds.shape == (1, 28, 28) and ds.sizes() == {"train": 60000, "valid": 5000, "test": 5000}


def test_unknown_dataset_lists_the_choices(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="mnist1d"):
        data.load("cifar11")
    # tier L has loaders; without the binary archive the error says where to put it (tests/test_tier_l.py)
    monkeypatch.setenv("DANAS_DATA", str(tmp_path))
    monkeypatch.setattr(data, "CIFAR_DIRS", ())
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-bin"):
        data.load("cifar10")


@pytest.mark.parametrize("dataset", ["mnist1d", "digits"])
def test_shipped_teachers_have_logits_on_every_split(dataset):
    ds = data.load(dataset)
    accs = {}
    for fam in TEACHERS[dataset]:
        lg = teachers.logits(dataset, fam)
        for split in ("train", "valid", "test"):
            assert lg[split].shape == (len(ds.y[split]), 10)
        acc = (lg["test"].argmax(1) == ds.y["test"]).float().mean().item()
        assert acc == pytest.approx(teachers.info(dataset, fam)["accuracy"]["test"], abs=1e-6)
        accs[fam] = acc
    assert max(accs.values()) > 0.9  # a real teacher, not a stub
    for fam in TEACHERS[dataset]:  # the stored weights reproduce the cached logits (eval mode: no dropout)
        model = teachers.load_model(dataset, fam)
        with torch.no_grad():
            out = model(ds.x["test"][:50])
        torch.testing.assert_close(out, teachers.logits(dataset, fam)["test"][:50], rtol=1e-4, atol=1e-4)


def test_unknown_teacher_lists_the_choices():
    with pytest.raises(ValueError, match="resnet, vgg, mlp, none"):  # current, then retired, then none
        check_pair("digits", "vit")


def test_an_ensemble_teacher_is_its_members_mean_softmax(tmp_path):
    """resnet_ens: member i trains exactly as the single model of seed i would (the ensemble's softmax equals
    the mean of those single models' softmax), and the stored weights reproduce the cached logits."""
    from safetensors.torch import load_file

    ds = data.load("digits")
    quiet = lambda *a: None  # noqa: E731
    mp = pytest.MonkeyPatch()
    mp.setitem(teachers.ENSEMBLES, "resnet_ens", ("resnet", 2))  # two members keep the test short
    mp.setitem(TEACHERS, "digits", (*TEACHERS["digits"], "resnet_ens"))
    try:
        info = teachers.train(
            "digits", "resnet_ens", teachers.TeacherRecipe(1, seed=3), out=tmp_path / "ens", log=quiet
        )
        for seed in (3, 4):
            teachers.train(
                "digits", "resnet", teachers.TeacherRecipe(1, seed=seed), out=tmp_path / str(seed), log=quiet
            )
        model = teachers.make("resnet_ens", ds).eval()
    finally:
        mp.undo()
    assert info["members"] == {"family": "resnet", "seeds": [3, 4]}
    single = [load_file(str(tmp_path / str(s) / "resnet.logits.safetensors"))["test"].softmax(1) for s in (3, 4)]
    ens = load_file(str(tmp_path / "ens" / "resnet_ens.logits.safetensors"))["test"]
    torch.testing.assert_close(ens.softmax(1), (single[0] + single[1]) / 2, rtol=1e-4, atol=1e-5)
    model.load_state_dict(load_file(str(tmp_path / "ens" / "resnet_ens.safetensors")))
    with torch.no_grad():
        torch.testing.assert_close(model(ds.x["test"][:20]), ens[:20], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (1, 40)])
def test_vgg_teacher_fits_every_input_shape(shape):
    """The VGG family flattens its last map into a dense head, so its width depends on the input size."""
    ds = data.Dataset("x", {"train": torch.zeros(2, *shape)}, {"train": torch.zeros(2, dtype=torch.long)}, 10)
    model = teachers.make("vgg", ds).eval()
    assert model(torch.randn(3, *shape)).shape == (3, 10)
    assert not any(isinstance(m, teachers.Block) for m in model.modules())  # no residual blocks
